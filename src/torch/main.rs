//! The libtorch side of usctl. Everything that needs libtorch (the trainer and fine-tuning
//! evaluation) lives in this binary, so that `usctl` itself, and with it ingest, export and
//! reports, never loads libtorch and its CUDA libraries (about 0.6 s and 500 MiB of start-up).
//! `usctl train …` and `usctl eval …` run `usctl-torch train|eval …` from beside itself.

mod augment;
mod bench;
mod checkpoint;
mod dense;
mod finetune;
mod loader;
mod loss;
mod moco;
mod model;
mod optim;
mod rundir;
#[cfg(test)]
mod testkit;
mod train;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use usctl::args::StoreSel;
use usctl::config::{Overrides, TrainConfig};
use usctl::eval::config::{EvalConfig, EvalOverrides};

#[derive(Debug, Parser)]
#[command(name = "usctl", bin_name = "usctl", about = "usctl commands that run on libtorch", args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pretrain a ResNet-18 backbone on a store with USCL (contrastive + semi-supervised).
    // Negative numbers are values (`--lr -1` then fails validation by key, not parsing); the
    // float flags also take `-1e-3`, which clap's number check does not recognise.
    #[command(allow_negative_numbers = true)]
    Train(TrainArgs),
    /// Fine-tune and score a backbone on a labelled store with k-fold cross-validation by
    /// patient (linear, last3 or all layers); writes report.md, report.json and plots.
    #[command(allow_negative_numbers = true)]
    Eval(EvalArgs),
    /// Backbone features of given images (test helper: export round trips, torchvision parity).
    #[command(hide = true)]
    Features(FeaturesArgs),
    /// Loader throughput alone (benchmark helper).
    #[command(hide = true)]
    BenchLoader(BenchArgs),
    /// Training-step throughput on synthetic tensors in memory (benchmark helper).
    #[command(hide = true)]
    BenchStep(BenchArgs),
}

#[derive(Debug, Args)]
struct Knobs {
    /// Training config (TOML, docs/config.md); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Debug, Args)]
struct TrainArgs {
    #[command(flatten)]
    store: StoreSel,
    /// Run directory: config, provenance, metrics, checkpoints, loss curve.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint, exactly as if never interrupted.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    knobs: Knobs,
    /// No progress bar or per-epoch lines.
    #[arg(long, short)]
    quiet: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Stop after this many epochs as if interrupted (for testing --resume).
    #[arg(long, hide = true)]
    stop_after_epochs: Option<u32>,
}

#[derive(Debug, Args)]
struct EvalArgs {
    #[command(flatten)]
    store: StoreSel,
    /// The backbone: a checkpoint of `usctl train` (last/best.safetensors), an export, any
    /// torchvision-named ResNet-18 safetensors file, or "random".
    #[arg(long)]
    init: String,
    /// Output directory: eval.toml, folds.json, runs.jsonl, report.json, report.md, PNGs.
    #[arg(long)]
    out: PathBuf,
    /// Evaluation config (TOML, docs/eval.md); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Reuse the split of an earlier evaluation (its folds.json) instead of making one.
    #[arg(long)]
    folds_file: Option<PathBuf>,
    #[command(flatten)]
    overrides: EvalOverrides,
    /// Name of the initialisation in reports (default: the checkpoint's run directory).
    #[arg(long)]
    label: Option<String>,
    /// No per-fold lines.
    #[arg(long, short)]
    quiet: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FeaturesArgs {
    /// Weights: a checkpoint, an export, or any torchvision-named ResNet-18 safetensors file.
    #[arg(long)]
    weights: PathBuf,
    /// safetensors file with one tensor `x`: [N, 1 or 3, H, W], already normalised.
    #[arg(long)]
    input: PathBuf,
    /// safetensors file to write with one tensor `features`: [N, 512].
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct BenchArgs {
    #[arg(long)]
    store: Option<PathBuf>,
    #[command(flatten)]
    knobs: Knobs,
    /// Batches (loader) or steps (step) to time.
    #[arg(long, default_value_t = 10)]
    count: usize,
}

impl Knobs {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let mut c = match &self.config {
            Some(p) => TrainConfig::load(p)?,
            None => TrainConfig::default(),
        };
        c.apply(&self.overrides)?;
        c.validate()?;
        Ok(c)
    }
}

/// jemalloc's unprefixed malloc replaces glibc's for the whole process, libtorch included (see
/// Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (its `malloc_conf` symbol; MALLOC_CONF in the environment still
/// overrides). Never purging freed pages keeps each step's activation buffers mapped for the
/// next step (measured in docs/architecture.md: a fifth of the page faults, about +20 % images/s);
/// the price is that the process keeps its peak footprint until it exits.
#[no_mangle]
#[used]
pub static malloc_conf: &[u8; 36] = b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

fn main() -> ExitCode {
    usctl::store::reader::exit_clearly_on_sigbus();
    if std::env::args().nth(1).is_some_and(|a| a == "--version" || a == "-V") {
        println!("libtorch: {}", option_env!("USCTL_LIBTORCH_BUILD").unwrap_or("unknown"));
        // A real tensor operation: proves the library loads and runs, not only links.
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]).sum(tch::Kind::Float);
        println!("libtorch runs: {}", if t.double_value(&[]) == 6.0 { "yes" } else { "NO" });
        let cuda = tch::Cuda::is_available();
        println!("CUDA available: {}", if cuda { format!("yes ({} devices)", tch::Cuda::device_count()) } else { "no".into() });
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => run_train(a),
        Command::Eval(a) => run_eval(a),
        Command::Features(a) => features(a),
        Command::BenchLoader(a) => bench(a, true),
        Command::BenchStep(a) => bench(a, false),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", usctl::error::one_line(&e));
            ExitCode::from(2)
        }
    }
}

fn run_train(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let config = train::resolve_config(&a.out, a.knobs.config.as_deref(), &a.knobs.overrides, a.resume)?;
    let store = a.store.locate()?;
    if !a.quiet && !a.json {
        let pairs = format!("{:?}", config.pairs).to_lowercase();
        eprintln!(
            "training on {} → {} ({pairs} pairs, {} epochs, {} px, batch {})",
            store.display(),
            a.out.display(),
            config.epochs,
            config.image_size,
            config.batch_size
        );
    }
    let summary = train::train(train::TrainOptions {
        store,
        out: a.out.clone(),
        config,
        resume: a.resume,
        stop_after_epochs: a.stop_after_epochs,
        kill: None,
        progress: !a.quiet && !a.json,
        command_line: std::env::args().collect(),
    })
    .with_context(|| format!("training run {} stopped", a.out.display()))?;
    finish(a.json, a.quiet, &summary, |s| {
        format!(
            "{}: {} epochs, {} steps, {:.1} training images/s on {}; last training loss {}; best validation NT-Xent {} (epoch {})",
            s.run_dir,
            s.epochs_done,
            s.steps,
            s.train_images_per_s,
            s.device,
            s.last_train_loss.map_or("-".into(), |v| format!("{v:.4}")),
            s.best_val_nt_xent.map_or("-".into(), |v| format!("{v:.4}")),
            s.best_epoch.map_or("-".into(), |e| e.to_string()),
        )
    })
}

/// A command's outcome on stdout: the whole value as JSON with `--json`, one human line
/// otherwise, nothing with `--quiet`.
fn finish<T: serde::Serialize>(json: bool, quiet: bool, value: &T, line: impl FnOnce(&T) -> String) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else if !quiet {
        println!("{}", line(value));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_eval(a: EvalArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &a.config {
        Some(p) => EvalConfig::load(p)?,
        None => EvalConfig::default(),
    };
    config.apply(&a.overrides)?;
    config.validate()?;
    let store = a.store.locate()?;
    let init = (a.init != "random").then(|| PathBuf::from(&a.init));
    if !a.quiet && !a.json {
        eprintln!(
            "evaluating {} on {} → {} ({}, {}, {}-fold × {} seeds, {} epochs, {} px)",
            a.init,
            store.display(),
            a.out.display(),
            config.task.name(),
            if config.task.is_dense() { usctl::eval::dense::protocol_text(config.protocol) } else { config.protocol.describe() },
            config.folds,
            config.seeds,
            config.epochs,
            config.image_size
        );
    }
    let options = finetune::EvalOptions {
        store,
        init,
        label: a.label.clone(),
        out: a.out.clone(),
        config,
        folds_file: a.folds_file.clone(),
        progress: !a.quiet && !a.json,
        command_line: std::env::args().collect(),
    };
    let stopped = || format!("evaluation {} stopped", a.out.display());
    let markdown = a.out.join(usctl::eval::report::MARKDOWN);
    if options.config.task.is_dense() {
        let report = dense::evaluate(options).with_context(stopped)?;
        return finish(a.json, a.quiet, &report, |r| {
            let s = &r.summary;
            let f = |m: Option<usctl::eval::report::MeanSd>| m.map_or("–".into(), |m| m.to_string());
            format!(
                "{}: Dice {}, IoU {}, boundary F1 {}; box AP {}, mask AP {} ({} runs, {:.0} s); see {}",
                r.title,
                f(s.dice),
                f(s.iou),
                f(s.boundary_f1),
                f(s.box_ap),
                f(s.mask_ap),
                r.runs.len(),
                r.seconds,
                markdown.display()
            )
        });
    }
    let report = finetune::evaluate(options).with_context(stopped)?;
    finish(a.json, a.quiet, &report, |r| {
        format!(
            "{}: frame accuracy {}, balanced {}, macro-F1 {}, AUC {}; video accuracy {} ({} runs, {:.0} s); see {}",
            r.title,
            r.frame.accuracy,
            r.frame.balanced_accuracy,
            r.frame.macro_f1,
            r.frame.auc.map_or("–".into(), |m| m.to_string()),
            r.video.accuracy,
            r.runs.len(),
            r.seconds,
            markdown.display()
        )
    })
}

fn features(a: FeaturesArgs) -> anyhow::Result<ExitCode> {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = model::ResNet18::new(&vs.root());
    checkpoint::load_backbone(&vs, &a.weights)?;
    let (input, _) = checkpoint::read(&a.input)?;
    let x = input.get("x").with_context(|| format!("{} holds no tensor `x`", a.input.display()))?;
    let f = tch::no_grad(|| net.features(x, false));
    checkpoint::write(&a.out, &[("features".to_string(), f)], None)?;
    Ok(ExitCode::SUCCESS)
}

fn bench(a: BenchArgs, loader: bool) -> anyhow::Result<ExitCode> {
    let c = a.knobs.config()?;
    let t = if loader {
        let store = a.store.as_ref().context("--store is needed for bench-loader")?;
        let dir = usctl::store::locate(store, None, None)?;
        bench::loader(&dir, &c, c.loader_threads, a.count)?
    } else {
        bench::step(&c, a.count)?
    };
    println!("{}", serde_json::to_string(&t)?);
    Ok(ExitCode::SUCCESS)
}
