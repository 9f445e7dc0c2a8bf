//! Records the native library versions `usctl --version` reports, and embeds the run-time
//! search path for libtorch so the binary starts without LD_LIBRARY_PATH.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if env::var_os("CARGO_FEATURE_DECODE").is_some() {
        let v = pkg_version("libavcodec");
        let f = pkg_version("libavformat");
        let u = pkg_version("libavutil");
        let s = pkg_version("libswscale");
        println!("cargo:rustc-env=USCTL_FFMPEG_BUILD=libavcodec {v}, libavformat {f}, libavutil {u}, libswscale {s}");
    }
    if env::var_os("CARGO_FEATURE_TORCH").is_some() {
        torch();
    }
}

fn pkg_version(lib: &str) -> String {
    Command::new("pkg-config")
        .args(["--modversion", lib])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Asks the same Python that torch-sys uses (a virtualenv's `python` when VIRTUAL_ENV is set)
/// where libtorch lives. torch-sys links libtorch but gives the final binary no rpath, and the
/// linker's --as-needed drops libtorch_cuda because no symbol of it is referenced directly;
/// without it a CUDA build silently runs on the CPU.
fn torch() {
    let python = if env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
    let script = "import torch, os; print(torch.__version__); print(os.path.join(os.path.dirname(torch.__file__), 'lib'))";
    let out = Command::new(python).args(["-c", script]).output();
    let Ok(out) = out.filter_out_failure() else {
        println!("cargo:warning=could not ask {python} for torch; run `make setup` (it builds with the project venv)");
        println!("cargo:rustc-env=USCTL_LIBTORCH_BUILD=unknown");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let version = lines.next().unwrap_or("unknown").trim().to_string();
    let lib = PathBuf::from(lines.next().unwrap_or("").trim());
    println!("cargo:rustc-env=USCTL_LIBTORCH_BUILD={version}");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

trait FilterOutFailure {
    fn filter_out_failure(self) -> Result<std::process::Output, ()>;
}

impl FilterOutFailure for std::io::Result<std::process::Output> {
    fn filter_out_failure(self) -> Result<std::process::Output, ()> {
        match self {
            Ok(o) if o.status.success() => Ok(o),
            _ => Err(()),
        }
    }
}
