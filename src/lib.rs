//! usctl: raw ultrasound videos → versioned frame-cluster stores → (later issues) USCL
//! pretraining, evaluation and export. Data flows one way:
//! manifest → ingest → store → loader → trainer → checkpoint → eval/export.

pub mod error;
pub mod hash;
pub mod index;
pub mod ingest;
pub mod manifest;
pub mod store;
pub mod verify;

/// Native library versions this binary was built against, for `usctl --version` and provenance.
pub fn build_info() -> String {
    let ffmpeg = option_env!("USCTL_FFMPEG_BUILD").unwrap_or("not built in (feature `decode` off)");
    format!(
        "{}\nFFmpeg: {ffmpeg}\nstore format: {}",
        env!("CARGO_PKG_VERSION"),
        store::FORMAT_VERSION
    )
}
