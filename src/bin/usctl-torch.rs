//! The libtorch side of usctl. Everything that needs libtorch (the trainer, evaluation, export)
//! lives in this binary, so that `usctl` itself, and with it ingest, never loads libtorch and its
//! CUDA libraries (about 0.6 s and 500 MiB of start-up). `usctl` finds it beside itself.

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version") | Some("-V") => {
            println!("libtorch: {}", option_env!("USCTL_LIBTORCH_BUILD").unwrap_or("unknown"));
            // A real tensor operation: proves the library loads and runs, not only links.
            let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]).sum(tch::Kind::Float);
            println!("libtorch runs: {}", if t.double_value(&[]) == 6.0 { "yes" } else { "NO" });
            let cuda = tch::Cuda::is_available();
            println!("CUDA available: {}", if cuda { format!("yes ({} devices)", tch::Cuda::device_count()) } else { "no".into() });
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usctl-torch: no command yet besides --version; use `usctl`");
            std::process::ExitCode::from(2)
        }
    }
}
