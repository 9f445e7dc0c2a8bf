//! `usctl --version` reports the FFmpeg and libtorch it was built with, and libtorch really
//! loads (through usctl-torch's embedded rpath: no LD_LIBRARY_PATH needed).
mod common;
use common::*;

#[test]
fn version_reports_native_libraries() {
    let out = run(usctl().arg("--version").env_remove("LD_LIBRARY_PATH"));
    assert!(out.status.success());
    let t = text(&out);
    assert!(t.starts_with(&format!("usctl {}", env!("CARGO_PKG_VERSION"))), "{t}");
    assert!(t.contains("FFmpeg: libavcodec 59."), "{t}");
    assert!(t.contains(&format!("store format: {}", usctl::store::FORMAT_VERSION)), "{t}");
    if cfg!(feature = "torch") {
        assert!(t.contains("libtorch: 2.13.0"), "{t}");
        assert!(t.contains("libtorch runs: yes"), "{t}");
        assert!(t.contains("CUDA available: "), "{t}");
    }
}
