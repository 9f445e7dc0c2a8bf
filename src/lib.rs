//! usctl: raw ultrasound videos → versioned frame-cluster stores → USCL pretraining → downstream
//! evaluation and export. This library holds everything that does not need libtorch; the
//! libtorch side (model, losses, loader, trainer, fine-tuning) is the `usctl-torch` binary in
//! src/torch/, so that `usctl`, ingest, export and reports never load libtorch. Data flows one way:
//! manifest → ingest → store → loader → trainer → checkpoint → eval/export.

pub mod args;
pub mod audit;
pub mod augment;
pub mod config;
pub mod error;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod files;
pub mod hash;
pub mod ingest;
pub mod manifest;
pub mod phash;
pub mod plot;
pub mod sampler;
pub mod schedule;
pub mod seed;
pub mod store;

/// Native library versions this binary was built against, for `usctl --version` and provenance.
pub fn build_info() -> String {
    let ffmpeg = option_env!("USCTL_FFMPEG_BUILD").unwrap_or("not built in (feature `decode` off)");
    format!("{}\nFFmpeg: {ffmpeg}\nstore format: {}", env!("CARGO_PKG_VERSION"), store::FORMAT_VERSION)
}
