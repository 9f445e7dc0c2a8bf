//! Command-line types (clap derive) only; behaviour lives in the library.
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "usctl", about = "Raw ultrasound videos → versioned frame stores → pretrained backbones (USCL)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode the files a manifest names into a new (or reused) store version.
    Ingest(IngestArgs),
    /// Manifest tools (`usctl manifest pin`).
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Re-hash a store version and name every file or video whose bytes differ.
    Verify(StoreArgs),
    /// Describe a store version: counts per sub-dataset and class, problems recorded at ingest.
    Info(StoreArgs),
    /// Pretrain a ResNet-18 backbone on a store with USCL (runs `usctl-torch train`; see
    /// `usctl train --help`).
    #[command(disable_help_flag = true)]
    Train {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fine-tune and score a backbone with k-fold cross-validation on a labelled store (runs
    /// `usctl-torch eval`; see `usctl eval --help`).
    #[command(disable_help_flag = true)]
    Eval {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Find exact and near-duplicate videos, label conflicts, leakage across folds and stores, and
    /// differences between a manifest and the disk; writes a report and contact sheets.
    Audit(AuditArgs),
    /// Compare two store versions: parameters, classes, and videos added, removed, re-labelled,
    /// with other source bytes or frame counts (exit 0 identical, 1 different).
    Diff(DiffArgs),
    /// Write one store version as one compressed, self-verifying file (zstd tar), to carry it to
    /// another machine; only a version that passes `usctl verify` is packed.
    Pack(PackArgs),
    /// Check every file of a pack against its store.json and publish the version in a store
    /// (a version already there is left alone: exit 0).
    Unpack(UnpackArgs),
    /// Download the files a manifest pins into a folder, each verified against its size and
    /// sha256; resumes partial downloads (exit 0 all there, 1 some missing).
    Fetch(FetchArgs),
    /// Write a checkpoint's backbone alone with torchvision's ResNet-18 names, plus a model card.
    Export(ExportArgs),
    /// Put several evaluations side by side in one table (Markdown).
    Report(ReportArgs),
    /// Decode the manifest's files without storing anything (benchmark helper).
    #[command(hide = true)]
    DecodeOnly(IngestArgs),
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Manifest (TOML, docs/manifest-format.md).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Folder that the manifest's paths are relative to.
    #[arg(long)]
    pub raw: PathBuf,
    /// Store root; the version goes to STORE/<dataset>/<seq>-<id>/.
    #[arg(long)]
    pub store: PathBuf,
    /// Frames kept per second of video, by timestamp (e.g. 3, 2.5, 30000/1001).
    #[arg(long, default_value = "3")]
    pub fps: String,
    /// Stored frames are SIZE×SIZE grayscale (aspect kept, padded with black).
    #[arg(long, default_value_t = usctl::ingest::DEFAULT_SIZE)]
    pub size: u32,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar and no summary (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Build from the sources that are there: a source whose folder is absent or matches no file
    /// is reported as absent instead of stopping the ingest (it still stops when all are absent).
    #[arg(long)]
    pub skip_absent_sources: bool,
    /// Ingest files whose bytes differ from the manifest's pins, or that have no pin, instead of
    /// refusing; the summary lists them.
    #[arg(long)]
    pub accept_changed: bool,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Hash every file the manifest names under --raw (media and metadata CSVs) and write their
    /// size, sha256, download URL and licence into the manifest's generated [pinned] table.
    Pin(PinArgs),
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// The manifest to pin; its generated [pinned] table (at the end) is rewritten, the rest kept.
    #[arg(long)]
    pub manifest: PathBuf,
    /// The folder the manifest's paths are relative to: the copy whose bytes are pinned.
    #[arg(long)]
    pub raw: PathBuf,
    /// Compare the files with the pins already in the manifest and write nothing (exit 1 when
    /// they differ).
    #[arg(long)]
    pub check: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub sel: usctl::args::StoreSel,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// A store version to audit: a version folder, or a dataset folder (its newest version).
    /// Repeat it to audit several stores together (duplicates across them are leakage).
    #[arg(long, required = true)]
    pub store: Vec<PathBuf>,
    /// The manifest of the first store: compare it and the files under --raw with the store.
    #[arg(long, requires = "raw")]
    pub manifest: Option<PathBuf>,
    /// The folder the manifest's paths are relative to (with --manifest).
    #[arg(long, requires = "manifest")]
    pub raw: Option<PathBuf>,
    /// A folds.json written by `usctl eval` on the first store: report clusters and patients in
    /// more than one fold.
    #[arg(long)]
    pub folds: Option<PathBuf>,
    /// Output folder (default: <dataset folder>/audits/<version folder>[+<dataset>-<id>…]).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Largest Hamming distance (of 63 pHash bits) at which two frames match.
    #[arg(long, default_value_t = usctl::audit::matching::Rule::default().radius)]
    pub radius: u32,
    /// The same when the shorter video has fewer than 3 frames (still images).
    #[arg(long, default_value_t = usctl::audit::matching::Rule::default().still_radius)]
    pub still_radius: u32,
    /// Share of the shorter video's frames that must match in time order.
    #[arg(long, default_value_t = usctl::audit::matching::Rule::default().share)]
    pub share: f64,
    /// Print report.json on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first version: a version folder, or a dataset folder (its newest version).
    pub a: PathBuf,
    /// The second version, the same way.
    pub b: PathBuf,
    /// Print the differences as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PackArgs {
    #[command(flatten)]
    pub sel: usctl::args::StoreSel,
    /// The pack to write (e.g. covid-blues-0002.uspack), atomically.
    #[arg(long)]
    pub out: PathBuf,
    /// zstd compression level (1 fast … 19 small; 20–22 need much memory).
    #[arg(long, default_value_t = usctl::store::pack::DEFAULT_LEVEL, allow_hyphen_values = true)]
    pub level: i32,
    /// Overwrite an existing --out.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// A pack written by `usctl pack`, or `-` to read it from standard input (e.g. the pieces of a
    /// split pack: `cat x.uspack.* | usctl unpack - --store S`).
    pub pack: PathBuf,
    /// Store root; the version goes to STORE/<dataset>/<seq>-<id>/.
    #[arg(long)]
    pub store: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Manifest with a [pinned] table (schema 3, written by `usctl manifest pin`).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Folder the files go to, each at its pinned path (created when absent; partial downloads
    /// wait in DIR/.usctl-fetch/).
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
    /// Files downloaded at once.
    #[arg(long, default_value_t = usctl::fetch::DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Print the report (fetch report v1, docs/fetch.md) as JSON on stdout instead of the lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A checkpoint of `usctl train` (last.safetensors or best.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The backbone file to write (safetensors); the model card goes beside it as .json.
    #[arg(long)]
    pub out: PathBuf,
    /// An evaluation directory (`usctl eval --out`) whose summary goes into the model card.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Overwrite an existing --out and its model card (a .json that is not a usctl model card is
    /// never overwritten).
    #[arg(long)]
    pub force: bool,
    /// Print the model card as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Evaluation directories (`usctl eval --out`) or their report.json files.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Write the table to this file instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the numbers and paired comparisons as JSON to this file (classification reports).
    #[arg(long)]
    pub json: Option<PathBuf>,
}
