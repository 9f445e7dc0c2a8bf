//! Errors that say what happened, to which file, and what to do about it.
use std::path::PathBuf;
use thiserror::Error;

/// An error and its causes on one line, each said once: a cause whose text the message already
/// holds (messages here often include the OS error they wrap) is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}; check the path given to --manifest")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("manifest {path} is not valid: {message}; see docs/manifest-format.md")]
    Invalid { path: PathBuf, message: String },
    #[error("manifest {manifest}: cannot use metadata file {csv}: {message}; check the file and the `file`/`key_column`/`column` it is declared with")]
    Metadata { manifest: PathBuf, csv: PathBuf, message: String },
    #[error("raw data folder {path} cannot be resolved: {source}; pass the corpus folder with --raw")]
    Raw { path: PathBuf, source: std::io::Error },
    #[error("cannot pin {path}: {message}; check that the file is readable")]
    Pin { path: PathBuf, message: String },
    #[error("manifest {manifest}: {source_name} matches no file in {dir} ({patterns}){problems}; nothing would be ingested from it: fix `dir` or the patterns (case-sensitive, relative to `dir`, `*` does not cross '/'; see docs/manifest-format.md), or remove the source")]
    NothingMatched { manifest: PathBuf, source_name: String, dir: PathBuf, patterns: String, problems: String },
    /// Under `--skip-absent-sources`, when no source has a file.
    #[error("manifest {manifest}: every source is absent under {raw} ({absent}); nothing would be ingested: put at least one sub-dataset's files in its folder (the layout is in the manifest's comments), or pass the folder that holds them with --raw")]
    AllAbsent { manifest: PathBuf, raw: PathBuf, absent: String },
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("no store found at {path}: {why}; run `usctl ingest --store {path} ...` first, or pass the right --store")]
    NotFound { path: PathBuf, why: String },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store file {path} is damaged or not a usctl store: {message}; re-create it with `usctl ingest` (older versions are untouched)")]
    Corrupt { path: PathBuf, message: String },
    #[error("store file {path} does not match its version: {message}; published versions must never be edited: run `usctl verify` on the version to list everything that differs, then re-ingest with `usctl ingest` (a new version; the others stay as they are)")]
    Differs { path: PathBuf, message: String },
    #[error("store {path} has format version {found}, this usctl reads versions 1 to {expected}; re-ingest with this usctl or use a matching one")]
    FormatVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("{path}: {message}")]
    Ambiguous { path: PathBuf, message: String },
}

/// `usctl pack` and `usctl unpack` (docs/pack-format.md). Every refusal of a pack leaves the store
/// as it was: no temporary folder, no published version.
#[derive(Debug, Error)]
pub enum PackError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path} already exists; pass --force to overwrite it, or choose another --out")]
    Exists { path: PathBuf },
    #[error("--out {path} is inside the version folder {version}; published versions are never written to: choose an --out outside the store")]
    InsideVersion { path: PathBuf, version: PathBuf },
    #[error("--level {level} is not a zstd level ({min} to {max})")]
    Level { level: i32, min: i32, max: i32 },
    #[error("store version {path} does not pass `usctl verify` ({problems}); a damaged or unverifiable version is never packed: run `usctl verify --store {path}`, then re-ingest with `usctl ingest` and pack the new version")]
    Unverified { path: PathBuf, problems: String },
    #[error("pack {path} ends early ({message}): it is truncated, or damaged; nothing was unpacked: copy the whole file again")]
    Truncated { path: PathBuf, message: String },
    #[error("pack {path} is damaged: {message}; nothing was unpacked: copy it again, or make it again with `usctl pack`")]
    Damaged { path: PathBuf, message: String },
    #[error("pack {path} is refused: {message}; nothing was unpacked (a usctl pack holds PACK.json, then only the plain files of one version folder; docs/pack-format.md)")]
    Refused { path: PathBuf, message: String },
    #[error("pack {path} has format usctl-pack version {found}; this usctl reads version {expected}: unpack it with a usctl that reads it")]
    Version { path: PathBuf, found: u32, expected: u32 },
    #[error("{path} already holds version {id}, but its store.json differs from the one in pack {pack}; nothing was unpacked: compare them with `usctl diff`")]
    OtherBytes { path: PathBuf, id: String, pack: PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Why one input file produced no (or only some) frames. Never fatal to an ingest: the file is
/// reported with its path, the others are still ingested.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SourceError {
    #[error("listed in the manifest but not found; restore the file or remove it from the manifest")]
    Missing,
    #[error("file is empty (0 bytes); re-export or re-download it")]
    Empty,
    #[error("cannot read file: {0}")]
    Unreadable(String),
    #[error("not a video or image FFmpeg can open ({0}); check that the file is really a video")]
    NotMedia(String),
    #[error("contains no video stream (audio or data only)")]
    NoVideoStream,
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("not an image the image decoder can read ({0})")]
    BadImage(String),
    #[error("decoded no frames; the file may be truncated")]
    NoFrames,
    #[error("this usctl was built without FFmpeg (feature `decode`); rebuild with `make setup`")]
    NoDecoder,
}

#[derive(Debug, Error)]
pub enum IngestError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("raw data folder {path} cannot be read: {source}; pass the corpus folder with --raw")]
    Raw { path: PathBuf, source: std::io::Error },
    #[error("invalid ingest parameter: {0}")]
    Param(String),
    #[error("manifest {manifest}: {count} file(s) under {raw} differ from their pins: {listing}; nothing was ingested. If these bytes are the ones you want, pin them again (`usctl manifest pin --manifest {manifest} --raw {raw}`) or ingest them anyway with --accept-changed (the report lists them)")]
    Pins { manifest: PathBuf, raw: PathBuf, count: usize, listing: String },
    #[error("cannot start the worker pool: {0}")]
    Pool(String),
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}; check the path given to --config")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path} is not valid: {message}; see docs/config.md for every key and its default")]
    Parse { path: PathBuf, message: String },
    #[error("config value `{key}` {message}; change it in the config file or on the command line")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store {path} has {found} usable videos; training needs at least {needed} ({why})")]
    TooFewVideos { path: PathBuf, found: usize, needed: usize, why: String },
    #[error("run directory {path} already holds a run; pass --resume to continue it, or choose a new --out")]
    RunExists { path: PathBuf },
    #[error("cannot resume from {path}: {message}")]
    Resume { path: PathBuf, message: String },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("CUDA was requested (--device cuda) but libtorch sees no GPU; use --device cpu or auto")]
    NoCuda,
    #[error("libtorch: {0}")]
    Torch(String),
}

#[derive(Debug, Error)]
pub enum EvalError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Checkpoints, devices and libtorch, shared with the trainer.
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Folds(#[from] crate::eval::folds::FoldError),
    #[error("store {path} {message}")]
    Data { path: PathBuf, message: String },
    #[error("folds file {path}: {message}")]
    FoldsFile { path: PathBuf, message: String },
    /// The store of `exclude_overlap_with`.
    #[error("exclude_overlap_with {path}: {source}")]
    OtherStore { path: PathBuf, source: StoreError },
    #[error("fine-tuning diverged: the {what} loss became {value} at fold {fold}, seed {seed}, epoch {epoch}; lower --lr or check the store")]
    Diverged { what: &'static str, value: f64, fold: usize, seed: usize, epoch: u32 },
    #[error("evaluation directory {path} already holds a report; choose a new --out")]
    Exists { path: PathBuf },
    #[error("evaluation report {path}: {message}")]
    Report { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// `E::io(path)` for `map_err`: an OS error on `path` as the enum's `Io` variant.
macro_rules! io_at_path {
    ($($error:ident),*) => {$(
        impl $error {
            pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> $error {
                let path = path.into();
                move |source| $error::Io { path, source }
            }
        }
    )*};
}

io_at_path!(StoreError, TrainError, EvalError, ExportError, AuditError, PackError);

/// `usctl audit` could not run (exit code 2); what it found is not an error.
#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Inventory(#[from] crate::audit::inventory::InventoryError),
    #[error(transparent)]
    Sheet(#[from] crate::audit::sheet::SheetError),
    #[error(transparent)]
    Distributions(#[from] crate::audit::distributions::DistributionsError),
    #[error("folds file {path}: {message}")]
    Folds { path: PathBuf, message: String },
    #[error("{message}")]
    Usage { message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// `usctl fetch` could not start (exit code 2); files that fail to download are reported, not errors.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("manifest {path} has no [pinned] table, so there is nothing to fetch: run `usctl manifest pin --manifest {path} --raw <corpus folder>` first, on a machine that has the files")]
    NoPins { path: PathBuf },
    #[error("cannot write into {path}: {source}; give --into a folder you can write to (it is created when absent)")]
    Into { path: PathBuf, source: std::io::Error },
    #[error("another usctl fetch is writing into {dir} (it holds {lock}); wait for it to finish, or fetch into another folder")]
    Busy { dir: PathBuf, lock: PathBuf },
    #[error("--jobs must be at least 1")]
    Jobs,
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{path} already exists; pass --force to overwrite it, or choose another --out")]
    Exists { path: PathBuf },
    #[error("{path} is not a usctl model card, and the model card of --out would replace it; it is never overwritten, even with --force: move it away or choose another --out")]
    NotACard { path: PathBuf },
    #[error("--out {path} ends in .json, where its model card goes; give a .safetensors file")]
    JsonOut { path: PathBuf },
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_in_the_message_are_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = anyhow::Error::from(StoreError::Io { path: "s/store.json".into(), source: io }).context("ingest of m.toml failed");
        let line = one_line(&e);
        assert_eq!(line.matches("No such file").count(), 1, "{line}");
        assert!(line.starts_with("ingest of m.toml failed: I/O error on s/store.json"), "{line}");
    }
}
