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
    git_commit();
}

/// The commit the binary was built from, for each run's provenance ("-dirty" when the work tree
/// had changes; "unknown" outside a git checkout).
fn git_commit() {
    for f in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    let git = |args: &[&str]| {
        Command::new("git").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=USCTL_GIT_COMMIT={commit}");
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
    let out = Command::new(python).args(["-c", script]).output().ok().filter(|o| o.status.success());
    let Some(out) = out else {
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
    for arg in rpath_and_cuda(&lib) {
        println!("cargo:rustc-link-arg-bin=usctl-torch={arg}");
    }
    // usctl-torch's unit tests (its test harness) call libtorch too; they only need to find it.
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{}", lib.display());
}

/// Linker arguments for binaries that use libtorch. Only `usctl-torch` gets them: `usctl` and
/// the tests reference no libtorch symbol, so --as-needed keeps libtorch out of them.
fn rpath_and_cuda(lib: &std::path::Path) -> Vec<String> {
    let mut args = vec![format!("-Wl,-rpath,{}", lib.display())];
    if lib.join("libtorch_cuda.so").exists() {
        args.extend(["-Wl,--no-as-needed".into(), "-ltorch_cuda".into(), "-Wl,--as-needed".into()]);
    }
    args
}
