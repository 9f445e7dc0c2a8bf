//! The USCL training loop (paper Sect. 4, Algorithm 1): ResNet-18 f → projection g → NT-Xent,
//! plus λ·CE of the classifier h on the videos whose labels are kept. Short and plain: data comes
//! from the loader, losses from `loss`, the update from `optim`, files from `checkpoint`.
//!
//! A run directory holds config.toml (resolved), provenance.json, metrics.jsonl, last.safetensors,
//! best.safetensors (lowest validation NT-Xent), loss.png and summary.json.

use crate::checkpoint::{self, State};
use usctl::config::{DeviceChoice, HowOverrides, Overrides, TrainConfig};
use usctl::error::{ConfigError, TrainError};
use crate::loader::{Batch, Context, Job, Loader};
use crate::model::{init, Heads, ResNet18};
use crate::optim::{Adam, LossScale};
use usctl::sampler::{self, Clip, Fallbacks, Sampler};
use usctl::store::reader::Store;
use crate::loss;
use usctl::{plot, schedule, seed};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Tensor};

pub const CONFIG_FILE: &str = "config.toml";
pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const METRICS: &str = "metrics.jsonl";

impl From<loss::ShapeError> for TrainError {
    fn from(e: loss::ShapeError) -> Self {
        TrainError::Torch(e.to_string())
    }
}

pub struct TrainOptions {
    /// A store version directory (see `store::locate`).
    pub store: PathBuf,
    pub out: PathBuf,
    pub config: TrainConfig,
    pub resume: bool,
    /// Stop (as if interrupted) once this many epochs are complete; for tests of resume.
    pub stop_after_epochs: Option<u32>,
    pub progress: bool,
    pub command_line: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub run_dir: String,
    pub store_version: String,
    pub device: String,
    pub epochs_done: u32,
    pub steps: u64,
    pub train_videos: usize,
    pub val_videos: usize,
    pub labelled_videos: usize,
    pub last_train_loss: Option<f64>,
    pub best_val_nt_xent: Option<f64>,
    pub best_epoch: Option<u32>,
    pub train_images_per_s: f64,
    pub seconds: f64,
    pub fallbacks: Fallbacks,
    /// From /proc/self/status at the end: peak resident set, private and file-backed parts.
    pub peak_rss_mib: Option<f64>,
    pub rss_anon_mib: Option<f64>,
    pub rss_file_mib: Option<f64>,
}

/// The config a run uses: for a new run, the file (or defaults) with the overrides applied; for
/// `--resume`, the run's saved config, where only how it runs (device, threads) may change.
pub fn resolve_config(out: &Path, file: Option<&Path>, o: &Overrides, resume: bool) -> Result<TrainConfig, TrainError> {
    let saved = out.join(CONFIG_FILE);
    if resume {
        if file.is_some() {
            return Err(TrainError::Resume { path: out.into(), message: "--config cannot be combined with --resume: the run's own config.toml is used".into() });
        }
        if !saved.is_file() {
            return Err(TrainError::Resume { path: out.into(), message: format!("no {CONFIG_FILE} there; start the run without --resume") });
        }
        let changed = o.run.given();
        if !changed.is_empty() {
            let flags = changed.join(", ");
            return Err(TrainError::Resume { path: out.into(), message: format!("{flags} would change the run, and a resumed run continues exactly; start a new run with --out instead (only {} may change)", usctl::config::long_flags::<HowOverrides>().join(", ")) });
        }
        let mut c = TrainConfig::load(&saved)?;
        c.apply(&Overrides { how: o.how.clone(), ..Default::default() })?;
        c.validate()?;
        return Ok(c);
    }
    let mut c = match file {
        Some(f) => TrainConfig::load(f)?,
        None => TrainConfig::default(),
    };
    c.apply(o)?;
    c.validate()?;
    Ok(c)
}

pub(crate) fn pick_device(c: DeviceChoice) -> Result<Device, TrainError> {
    match c {
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(TrainError::NoCuda),
    }
}

/// The store's videos as clips, their split, and which labels the classification loss may use.
pub struct Split {
    pub clips: Vec<Clip>,
    pub classes: Vec<Option<i64>>,
    /// Source path of each clip's video.
    pub paths: Vec<String>,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub labelled: Vec<usize>,
}

pub fn split(store: &Store, c: &TrainConfig) -> Split {
    let usable: Vec<_> = store.videos.iter().filter(|v| v.frames_kept > 0).collect();
    let clips = usable.iter().map(|v| Clip { first_row: v.first_frame_row as usize, frames: v.frames_kept as usize }).collect();
    let classes: Vec<Option<i64>> = usable.iter().map(|v| v.class_index.map(i64::from)).collect();
    let groups: Vec<Option<String>> = usable.iter().map(|v| v.patient_id.clone()).collect();
    let (train, val) = sampler::split(c.seed, &groups, c.val_fraction);
    let with_class: Vec<usize> = train.iter().copied().filter(|&i| classes[i].is_some()).collect();
    let labelled = if c.lambda > 0.0 { sampler::labelled_subset(c.seed, &with_class, c.label_rate) } else { Vec::new() };
    let paths = usable.iter().map(|v| v.source_path.clone()).collect();
    Split { clips, classes, paths, train, val, labelled }
}

pub(crate) fn context(store: Store, c: &TrainConfig, sp: &Split, labels: Vec<Option<i64>>, train_clips: Vec<usize>, augment_in_loader: bool) -> Result<Context, TrainError> {
    let sampler = Sampler::new(c.pairs, &c.spg).map_err(|m| ConfigError::Invalid { key: "spg".into(), message: m })?;
    Ok(Context {
        store,
        clips: sp.clips.clone(),
        labels,
        train_clips,
        pairs: c.pairs,
        sampler,
        augment: c.augment.clone(),
        mix: c.spg.mix,
        seed: c.seed,
        image_size: c.image_size,
        augment_in_loader,
    })
}

pub(crate) struct Nets {
    backbone_vs: nn::VarStore,
    heads_vs: nn::VarStore,
    backbone: ResNet18,
    heads: Heads,
}

impl Nets {
    pub(crate) fn new(device: Device, seed: u64, classes: i64, c: &TrainConfig) -> Nets {
        let backbone_vs = nn::VarStore::new(device);
        let heads_vs = nn::VarStore::new(device);
        let backbone = ResNet18::new(&backbone_vs.root());
        let heads = Heads::new(&heads_vs.root(), classes, c.classifier_on);
        init::convolutions(&backbone_vs, &mut seed::stream(seed, "train-init", &[0]));
        init::linears(&heads_vs, &mut seed::stream(seed, "train-init", &[1]));
        Nets { backbone_vs, heads_vs, backbone, heads }
    }

    pub(crate) fn named(&self, trainable_only: bool) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (prefix, vs) in [("backbone", &self.backbone_vs), ("heads", &self.heads_vs)] {
            for (name, t) in vs.variables() {
                if !trainable_only || t.requires_grad() {
                    v.push((format!("{prefix}.{name}"), t));
                }
            }
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// The two loss terms of one batch (train mode or not).
pub(crate) struct Losses {
    pub(crate) total: Tensor,
    nt_xent: f64,
    ce: Option<f64>,
    labelled: usize,
}

pub(crate) fn forward(nets: &Nets, batch: &Batch, c: &TrainConfig, device: Device, train: bool, autocast: bool) -> Result<Losses, TrainError> {
    let n = batch.pairs() as i64;
    let x = batch.views(&c.augment, c.image_size, device);
    let (feats, z) = tch::autocast(autocast, || {
        let f = nets.backbone.features(&x, train);
        let z = nets.heads.project(&f);
        (f, z)
    });
    let nt = loss::nt_xent(&z.narrow(0, 0, n), &z.narrow(0, n, n), c.temperature)?;
    let rows: Vec<i64> = batch.labels.iter().enumerate().filter(|(_, &l)| l >= 0).map(|(i, _)| i as i64).collect();
    let mut total = if c.contrastive || !train { nt.shallow_clone() } else { nt.zeros_like() };
    let mut ce_value = None;
    if train && c.lambda > 0.0 && !rows.is_empty() {
        let idx: Vec<i64> = rows.iter().copied().chain(rows.iter().map(|r| r + n)).collect();
        let idx = Tensor::from_slice(&idx).to_device(device);
        let targets: Vec<i64> = rows.iter().chain(rows.iter()).map(|&r| batch.labels[r as usize]).collect();
        let logits = tch::autocast(autocast, || nets.heads.classify(&feats.index_select(0, &idx), &z.index_select(0, &idx)));
        let ce = loss::cross_entropy(&logits, &Tensor::from_slice(&targets).to_device(device))?;
        ce_value = Some(ce.double_value(&[]));
        total = total + ce * c.lambda;
    }
    Ok(Losses { nt_xent: nt.double_value(&[]), total, ce: ce_value, labelled: rows.len() })
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn proc_status_mib(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct Metrics {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl Metrics {
    /// Opens metrics.jsonl for appending, first dropping lines of epochs ≥ `from` (an
    /// interrupted epoch is replayed in full on resume).
    fn open(dir: &Path, from: u32) -> Result<Metrics, TrainError> {
        let path = dir.join(METRICS);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
            let keep: String = text
                .lines()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v.get("epoch")?.as_u64()).is_none_or(|e| e < from as u64))
                .map(|l| format!("{l}\n"))
                .collect();
            let tmp = dir.join(format!(".{METRICS}.tmp"));
            std::fs::write(&tmp, keep).map_err(TrainError::io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(TrainError::io(&path))?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(TrainError::io(&path))?;
        Ok(Metrics { file: std::io::BufWriter::new(file), path })
    }

    fn write(&mut self, v: serde_json::Value) -> Result<(), TrainError> {
        writeln!(self.file, "{v}").map_err(TrainError::io(&self.path))
    }

    fn flush(&mut self) -> Result<(), TrainError> {
        self.file.flush().map_err(TrainError::io(&self.path))
    }
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), TrainError> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap_or_default()).map_err(TrainError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(TrainError::io(path))
}

/// Runs (or resumes) a pretraining run; returns its summary (also written to summary.json).
pub fn train(o: TrainOptions) -> Result<Summary, TrainError> {
    let c = &o.config;
    let started = Instant::now();
    let device = pick_device(c.device)?;
    let threads = usctl::files::threads(c.threads);
    tch::set_num_threads(threads as i32);
    let store = Store::open(&o.store)?;
    let meta = store.meta.clone();
    let sp = split(&store, c);
    let need = if c.batch_size > 1 { 2 } else { 1 };
    let train_clips: Vec<usize> = if c.contrastive { sp.train.clone() } else { sp.labelled.clone() };
    if train_clips.len() < need {
        let why = if c.contrastive { "after holding out the validation videos".to_string() } else { "labelled videos kept by label_rate, with contrastive off".to_string() };
        return Err(TrainError::TooFewVideos { path: o.store.clone(), found: train_clips.len(), needed: need, why });
    }
    let mut labels: Vec<Option<i64>> = vec![None; sp.clips.len()];
    for &i in &sp.labelled {
        labels[i] = sp.classes[i];
    }
    let ctx = Arc::new(context(store, c, &sp, labels, train_clips.clone(), false)?);

    if !o.resume && (o.out.join(CONFIG_FILE).exists() || o.out.join(LAST).exists()) {
        return Err(TrainError::RunExists { path: o.out.clone() });
    }
    std::fs::create_dir_all(&o.out).map_err(TrainError::io(&o.out))?;
    let config_text = c.to_toml();
    let config_sha = usctl::hash::sha256_hex(config_text.as_bytes());
    let nets = Nets::new(device, c.seed, meta.classes.len() as i64, c);
    let mut adam = Adam::new(nets.named(true), c.weight_decay);
    let autocast = device.is_cuda() && c.mixed_precision;
    let mut state = State {
        format: checkpoint::FORMAT.into(),
        format_version: checkpoint::FORMAT_VERSION,
        epoch: 0,
        step: 0,
        adam_step: 0,
        seed: c.seed,
        best_val: None,
        best_epoch: None,
        loss_scale: LossScale::new(),
        store_version: meta.version_id.clone(),
        classes: meta.classes.clone(),
        config_sha256: config_sha.clone(),
    };
    let last = o.out.join(LAST);
    if o.resume && last.exists() {
        let (saved, s) = checkpoint::read(&last)?;
        let s = s.ok_or_else(|| TrainError::Resume { path: last.clone(), message: "it holds weights but no training state".into() })?;
        if s.store_version != meta.version_id {
            return Err(TrainError::Resume { path: o.out.clone(), message: format!("the run trained on store version {}, not {}; pass --version {}", s.store_version, meta.version_id, s.store_version) });
        }
        if s.config_sha256 != config_sha {
            return Err(TrainError::Resume { path: o.out.clone(), message: format!("{CONFIG_FILE} changed since the run started; restore it or start a new run") });
        }
        checkpoint::load_into(&nets.backbone_vs, &checkpoint::strip(&saved, "backbone"), &last)?;
        checkpoint::load_into(&nets.heads_vs, &checkpoint::strip(&saved, "heads"), &last)?;
        adam.load_state(&saved, s.adam_step).map_err(|m| TrainError::Resume { path: last.clone(), message: m })?;
        state = s;
    } else {
        let mut notes = Vec::new();
        if let Some(init) = &c.init {
            let extra = checkpoint::load_backbone(&nets.backbone_vs, Path::new(init))?;
            notes.push(format!("backbone initialised from {init} ({} tensors not used, e.g. {})", extra.len(), extra.first().map_or("none", |s| s.as_str())));
        }
        let cfg_path = o.out.join(CONFIG_FILE);
        std::fs::write(&cfg_path, &config_text).map_err(TrainError::io(&cfg_path))?;
        write_json(
            &o.out.join("provenance.json"),
            &json!({
                "usctl": env!("CARGO_PKG_VERSION"),
                "git_commit": option_env!("USCTL_GIT_COMMIT").unwrap_or("unknown"),
                "libtorch": option_env!("USCTL_LIBTORCH_BUILD").unwrap_or("unknown"),
                "store": { "dir": o.store.canonicalize().unwrap_or_else(|_| o.store.clone()).display().to_string(), "dataset": meta.dataset, "version_id": meta.version_id, "format_version": meta.format_version },
                "seed": c.seed,
                "config_sha256": config_sha,
                "command_line": o.command_line,
                "started_unix": now_unix(),
                "device": format!("{device:?}"),
                "threads": threads,
                "train_videos": train_clips.len(),
                "val_videos": sp.val.len(),
                "labelled_videos": sp.labelled.iter().map(|&i| &sp.paths[i]).collect::<Vec<_>>(),
                "notes": notes,
            }),
        )?;
    }
    let mut metrics = Metrics::open(&o.out, state.epoch)?;
    metrics.write(json!({"event": if o.resume { "resume" } else { "start" }, "from_epoch": state.epoch, "unix": now_unix(), "device": format!("{device:?}")}))?;

    let steps_per_epoch = sampler::epoch_batches(c.seed, 0, train_clips.len(), c.batch_size).len() as u64;
    let total_steps = steps_per_epoch * c.epochs as u64;
    let warmup = steps_per_epoch * c.warmup_epochs as u64;
    let val_jobs = val_jobs(&sp.val, c.batch_size);
    let stop = o.stop_after_epochs.unwrap_or(c.epochs).min(c.epochs);
    let mut fallbacks = Fallbacks::default();
    let (mut images, mut train_secs, mut last_loss) = (0u64, 0.0f64, None);
    let mut curve: Vec<(f64, f64)> = Vec::new();

    while state.epoch < stop {
        let epoch = state.epoch;
        let jobs: Vec<Job> = sampler::epoch_batches(c.seed, epoch, train_clips.len(), c.batch_size)
            .into_iter()
            .enumerate()
            .map(|(i, b)| Job::Train { epoch, index: i as u32, clips: b.into_iter().map(|k| train_clips[k]).collect() })
            .collect();
        let bar = progress(o.progress, jobs.len() as u64, epoch, c.epochs);
        let t0 = Instant::now();
        let (mut wait, mut sum, mut count, mut epoch_images) = (0.0f64, 0.0f64, 0usize, 0u64);
        let mut epoch_fb = Fallbacks::default();
        let mut loader = Loader::start(ctx.clone(), jobs, c.loader_threads, c.prefetch);
        let expected = loader.len();
        loop {
            let tw = Instant::now();
            let Some(batch) = loader.next() else { break };
            wait += tw.elapsed().as_secs_f64();
            let lr = schedule::lr_at(c.lr, state.step, total_steps, warmup);
            adam.zero_grad();
            let l = forward(&nets, &batch, c, device, true, autocast)?;
            let value = l.total.double_value(&[]);
            if !value.is_finite() {
                return Err(TrainError::Torch(format!("the loss became {value} at epoch {epoch}, step {}; lower --lr or check the store", state.step)));
            }
            if autocast {
                (&l.total * state.loss_scale.scale).backward();
                let finite = adam.grads_finite();
                if state.loss_scale.update(finite) {
                    adam.scale_grads(1.0 / state.loss_scale.scale);
                    adam.step(lr);
                }
            } else {
                l.total.backward();
                adam.step(lr);
            }
            state.step += 1;
            let n_img = 2 * batch.pairs() as u64;
            let dt = tw.elapsed().as_secs_f64();
            epoch_fb.add(batch.fallbacks);
            sum += value;
            count += 1;
            epoch_images += n_img;
            let x = epoch as f64 + count as f64 / expected.max(1) as f64;
            curve.push((x, value));
            metrics.write(json!({"epoch": epoch, "step": state.step, "lr": lr, "loss": value, "nt_xent": l.nt_xent, "ce": l.ce, "labelled": l.labelled, "pairs": batch.pairs(), "seconds": dt}))?;
            bar.set_message(format!("loss {value:.4} · {:.1} img/s", n_img as f64 / dt.max(1e-9)));
            bar.inc(1);
        }
        drop(loader);
        if count != expected {
            return Err(TrainError::Torch(format!("the loader delivered {count} of {expected} batches of epoch {epoch} (a loader thread failed; see the message above)")));
        }
        let secs = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let tv = Instant::now();
        let val = validate(&nets, &ctx, c, device, &val_jobs, autocast)?;
        let val_secs = tv.elapsed().as_secs_f64();
        state.epoch += 1;
        let improved = val.is_some_and(|v| state.best_val.is_none_or(|b| v < b));
        if improved {
            state.best_val = val;
            state.best_epoch = Some(state.epoch);
        }
        state.adam_step = adam.step;
        let mut tensors = nets.named(false);
        tensors.extend(adam.state());
        let tc = Instant::now();
        checkpoint::write(&last, &tensors, Some(&state))?;
        if improved {
            copy_atomic(&last, &o.out.join(BEST))?;
        }
        let checkpoint_secs = tc.elapsed().as_secs_f64();
        fallbacks.add(epoch_fb);
        images += epoch_images;
        train_secs += secs;
        last_loss = Some(sum / count.max(1) as f64);
        let ips = epoch_images as f64 / secs.max(1e-9);
        metrics.write(json!({"epoch": epoch, "event": "epoch_end", "train_loss": last_loss, "val_nt_xent": val, "best": improved, "seconds": secs, "images_per_s": ips, "loader_wait_s": wait, "val_seconds": val_secs, "checkpoint_seconds": checkpoint_secs, "fallbacks": epoch_fb}))?;
        metrics.flush()?;
        if o.progress {
            eprintln!(
                "epoch {:>3}/{}  loss {:.4}  val NT-Xent {}  {:.1} img/s  loader wait {:.1} s{}",
                state.epoch,
                c.epochs,
                last_loss.unwrap_or(f64::NAN),
                val.map_or("-".into(), |v| format!("{v:.4}")),
                ips,
                wait,
                if improved { "  (best)" } else { "" }
            );
        }
    }
    metrics.flush()?;
    if state.epoch >= c.epochs {
        let (train_curve, val_curve) = read_curve(&o.out.join(METRICS)).unwrap_or((curve, Vec::new()));
        let title = format!("{} · {} · {} epochs", meta.dataset, format!("{:?}", c.pairs).to_lowercase(), c.epochs);
        if let Err(e) = plot::loss_curve(&o.out.join("loss.png"), &title, &train_curve, &val_curve) {
            eprintln!("warning: no loss.png: {e}");
        }
    }
    let summary = Summary {
        run_dir: o.out.display().to_string(),
        store_version: meta.version_id.clone(),
        device: format!("{device:?}"),
        epochs_done: state.epoch,
        steps: state.step,
        train_videos: train_clips.len(),
        val_videos: sp.val.len(),
        labelled_videos: sp.labelled.len(),
        last_train_loss: last_loss,
        best_val_nt_xent: state.best_val,
        best_epoch: state.best_epoch,
        train_images_per_s: images as f64 / train_secs.max(1e-9),
        seconds: started.elapsed().as_secs_f64(),
        fallbacks,
        peak_rss_mib: proc_status_mib("VmHWM:"),
        rss_anon_mib: proc_status_mib("RssAnon:"),
        rss_file_mib: proc_status_mib("RssFile:"),
    };
    write_json(&o.out.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Validation batches: the held-out clips in a fixed order; a lone last clip joins the batch
/// before it (alone it would have no negatives).
fn val_jobs(val: &[usize], batch_size: usize) -> Vec<Job> {
    let mut chunks: Vec<Vec<usize>> = val.chunks(batch_size.max(2)).map(|c| c.to_vec()).collect();
    if chunks.len() > 1 && chunks.last().is_some_and(|c| c.len() == 1) {
        let lone = chunks.pop().unwrap_or_default();
        if let Some(prev) = chunks.last_mut() {
            prev.extend(lone);
        }
    }
    chunks.into_iter().filter(|c| c.len() > 1).map(|clips| Job::Val { clips }).collect()
}

/// Mean NT-Xent over the validation pairs (per pair), with batch-norm statistics frozen.
fn validate(nets: &Nets, ctx: &Arc<Context>, c: &TrainConfig, device: Device, jobs: &[Job], autocast: bool) -> Result<Option<f64>, TrainError> {
    if jobs.is_empty() {
        return Ok(None);
    }
    let _guard = tch::no_grad_guard();
    let (mut sum, mut n) = (0.0, 0usize);
    for batch in Loader::start(ctx.clone(), jobs.to_vec(), c.loader_threads, c.prefetch) {
        let l = forward(nets, &batch, c, device, false, autocast)?;
        sum += l.nt_xent * batch.pairs() as f64;
        n += batch.pairs();
    }
    Ok(Some(sum / n.max(1) as f64))
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), TrainError> {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).map_err(TrainError::io(&tmp))?;
    std::fs::rename(&tmp, to).map_err(TrainError::io(to))
}

/// (epoch fraction, loss) per step and (epoch, validation NT-Xent) per epoch, from metrics.jsonl,
/// so that a resumed run's plot covers the whole run.
pub fn read_curve(path: &Path) -> Option<(Vec<(f64, f64)>, Vec<(f64, f64)>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let rows: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut per_epoch: HashMap<u64, usize> = HashMap::new();
    for r in &rows {
        if let (Some(e), Some(_)) = (r.get("epoch").and_then(|e| e.as_u64()), r.get("step")) {
            *per_epoch.entry(e).or_default() += 1;
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in &rows {
        let Some(e) = r.get("epoch").and_then(|e| e.as_u64()) else { continue };
        if let (Some(_), Some(loss)) = (r.get("step"), r.get("loss").and_then(|l| l.as_f64())) {
            let k = seen.entry(e).or_default();
            *k += 1;
            train.push((e as f64 + *k as f64 / per_epoch[&e] as f64, loss));
        } else if let Some(v) = r.get("val_nt_xent").and_then(|v| v.as_f64()) {
            val.push(((e + 1) as f64, v));
        }
    }
    Some((train, val))
}

fn progress(show: bool, len: u64, epoch: u32, epochs: u32) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_batches_never_hold_a_lone_video() {
        let sizes = |v: usize, b: usize| val_jobs(&(0..v).collect::<Vec<_>>(), b).iter().map(|j| match j { Job::Val { clips } => clips.len(), _ => 0 }).collect::<Vec<_>>();
        assert_eq!(sizes(65, 32), vec![32, 33]);
        assert_eq!(sizes(64, 32), vec![32, 32]);
        assert_eq!(sizes(1, 32), Vec::<usize>::new());
        assert_eq!(sizes(5, 1), vec![2, 3]);
    }

    #[test]
    fn resume_refuses_changes_to_the_run() {
        use usctl::config::RunOverrides;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        assert!(matches!(resolve_config(out, None, &Overrides::default(), true), Err(TrainError::Resume { .. })));
        let saved = TrainConfig::default();
        std::fs::write(out.join(CONFIG_FILE), saved.to_toml()).unwrap();
        // Every flag that changes the run (enumerated from clap, not listed here) is refused by name.
        let samples = ["7", "rs", "off", "x.safetensors"];
        let run_flags = usctl::config::each_flag::<RunOverrides>(&samples);
        assert!(run_flags.len() >= 11, "{run_flags:?}");
        for (flag, values) in run_flags {
            assert!(!values.is_empty(), "{flag} parses none of {samples:?}");
            for run in values {
                let err = resolve_config(out, None, &Overrides { run, ..Default::default() }, true).unwrap_err().to_string();
                assert!(err.contains(&format!("{flag} would change the run")), "{err}");
            }
        }
        // How it runs may change: each such flag is applied.
        for (flag, values) in usctl::config::each_flag::<HowOverrides>(&["cpu", "7"]) {
            let how = values.into_iter().next().unwrap_or_else(|| panic!("{flag}"));
            let c = resolve_config(out, None, &Overrides { how, ..Default::default() }, true).unwrap();
            assert_ne!(c, saved, "{flag} is applied on resume");
        }
        let c = resolve_config(out, None, &Overrides { how: HowOverrides { device: Some(DeviceChoice::Cpu), ..Default::default() }, ..Default::default() }, true).unwrap();
        assert_eq!(c.device, DeviceChoice::Cpu);
    }

    #[test]
    fn initial_weights_depend_on_the_seed_alone() {
        // Another thread keeps reseeding and drawing from libtorch's global generator, as parallel
        // tests (or a host program) may: a seed-5 model must still come out the same every time.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let noise = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tch::manual_seed(k);
                    let _ = Tensor::randn([64, 64], (tch::Kind::Float, Device::Cpu));
                    k += 1;
                }
            })
        };
        let c = TrainConfig::default();
        let weights = |seed: u64| Nets::new(Device::Cpu, seed, 3, &c).named(false);
        let (a, b, other) = (weights(5), weights(5), weights(6));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        noise.join().unwrap();
        assert_eq!(a.len(), b.len());
        for ((ka, ta), (kb, tb)) in a.iter().zip(&b) {
            assert!(ka == kb && ta.equal(tb), "{ka} differs between two seed-5 models");
        }
        let differ = |name: &str| {
            let find = |v: &[(String, Tensor)]| v.iter().find(|(k, _)| k == name).map(|(_, t)| t.shallow_clone()).unwrap();
            !find(&a).equal(&find(&other))
        };
        for name in ["backbone.conv1.weight", "heads.projection.0.weight", "heads.projection.2.bias", "heads.classifier.weight"] {
            assert!(differ(name), "{name} is the same for seeds 5 and 6");
        }
    }
}

#[cfg(test)]
mod learning_tests {
    use super::*;
    use crate::testkit;
    use usctl::augment::AugParams;
    use usctl::config::{ClassifierOn, Mix, Pairs};
    use tch::Kind;

    fn config(epochs: u32) -> TrainConfig {
        TrainConfig { epochs, batch_size: 6, image_size: 32, device: DeviceChoice::Cpu, warmup_epochs: 1, lr: 1e-3, label_rate: 0.5, threads: 1, ..Default::default() }
    }

    fn run(store: &Path, out: &Path, c: TrainConfig, resume: bool, stop: Option<u32>) -> Summary {
        train(TrainOptions { store: store.into(), out: out.into(), config: c, resume, stop_after_epochs: stop, progress: false, command_line: vec![] }).unwrap()
    }

    fn step_losses(out: &Path) -> Vec<f64> {
        std::fs::read_to_string(out.join(METRICS)).unwrap().lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("loss")?.as_f64()).collect()
    }

    /// Mean cosine similarity of backbone features within videos minus across videos, on every
    /// stored frame, un-augmented, batch norm in eval mode.
    fn separation(nets: &Nets, store: &Store, c: &TrainConfig) -> f64 {
        let rows = store.frames.len();
        let pixels: Vec<u8> = (0..rows).flat_map(|r| [store.frame(r), store.frame(r)].concat()).collect();
        let side = store.meta.params.size as i64;
        let frames = Tensor::from_slice(&pixels).view([rows as i64, 2, side, side]);
        let spec = crate::augment::ViewsSpec { xi: &vec![1.0; rows], params: &vec![AugParams::IDENTITY; rows], mix_after: false };
        let x = crate::augment::views(&frames, &spec, &c.augment, c.image_size, Device::Cpu);
        let f = tch::no_grad(|| nets.backbone.features(&x, false));
        let f = &f / f.norm_scalaropt_dim(2, [1i64].as_slice(), true);
        let sim = f.mm(&f.tr());
        let video: Vec<i32> = store.frames.iter().map(|r| r.video_id).collect();
        let same: Vec<bool> = (0..rows * rows).map(|k| video[k / rows] == video[k % rows] && k / rows != k % rows).collect();
        let diff: Vec<bool> = (0..rows * rows).map(|k| video[k / rows] != video[k % rows]).collect();
        let mean = |mask: &Vec<bool>| sim.masked_select(&Tensor::from_slice(mask).view([rows as i64, rows as i64])).mean(Kind::Float).double_value(&[]);
        mean(&same) - mean(&diff)
    }

    #[test]
    fn a_few_epochs_lower_the_loss_and_separate_the_videos() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::store(dir.path(), &[8; 16], 32);
        let c = config(12);
        let store = Store::open(&version).unwrap();
        let before = Nets::new(Device::Cpu, c.seed, 2, &c);
        let sep_before = separation(&before, &store, &c);
        let out = dir.path().join("run");
        let s = run(&version, &out, c.clone(), false, None);
        assert_eq!((s.epochs_done, s.train_videos + s.val_videos), (12, 16));
        let epochs: Vec<(f64, Option<f64>)> = std::fs::read_to_string(out.join(METRICS))
            .unwrap()
            .lines()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                Some((v.get("train_loss")?.as_f64()?, v.get("val_nt_xent")?.as_f64()))
            })
            .collect();
        // One epoch is two noisy batches of six videos, so compare the first and last quarters of
        // the run. Validation (3 held-out videos) is too small to assert on; separation on every
        // frame is the real check.
        let quarter = |e: &[(f64, Option<f64>)]| e.iter().map(|x| x.0).sum::<f64>() / e.len() as f64;
        let (first, last) = (quarter(&epochs[..3]), quarter(&epochs[epochs.len() - 3..]));
        assert!(last < first, "training loss {first:.4} → {last:.4} (first and last three epochs)");
        assert!(epochs.iter().all(|e| e.1.is_some_and(f64::is_finite)), "validation NT-Xent every epoch");
        let after = Nets::new(Device::Cpu, c.seed, 2, &c);
        let (saved, state) = checkpoint::read(&out.join(LAST)).unwrap();
        checkpoint::load_into(&after.backbone_vs, &checkpoint::strip(&saved, "backbone"), &out).unwrap();
        let sep_after = separation(&after, &store, &c);
        eprintln!("feature separation {sep_before:.4} → {sep_after:.4}; loss {first:.4} → {last:.4}");
        assert!(sep_after > sep_before + 0.1, "feature separation {sep_before:.4} → {sep_after:.4}");
        let state = state.unwrap();
        assert_eq!((state.epoch, state.step), (12, s.steps));
        assert!(out.join(BEST).is_file() && out.join("loss.png").is_file() && out.join("provenance.json").is_file());
        let saved_config = TrainConfig::load(&out.join(CONFIG_FILE)).unwrap();
        assert_eq!(saved_config, c);
    }

    #[test]
    fn resume_reproduces_the_uninterrupted_run() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::store(dir.path(), &[5, 6, 2, 7, 5, 4, 6, 3, 1, 5], 24);
        let c = TrainConfig { image_size: 24, batch_size: 4, ..config(3) };
        let whole = dir.path().join("whole");
        run(&version, &whole, c.clone(), false, None);
        let parts = dir.path().join("parts");
        let s = run(&version, &parts, c.clone(), false, Some(1));
        assert_eq!(s.epochs_done, 1);
        assert!(!parts.join("loss.png").exists(), "an interrupted run has no final plot yet");
        let err = train(TrainOptions { store: version.clone(), out: parts.clone(), config: c.clone(), resume: false, stop_after_epochs: None, progress: false, command_line: vec![] });
        assert!(matches!(err, Err(TrainError::RunExists { .. })));
        // As if killed during epoch 2: its first steps reached metrics.jsonl, its checkpoint did not.
        let mut m = std::fs::OpenOptions::new().append(true).open(parts.join(METRICS)).unwrap();
        writeln!(m, "{}", json!({"epoch": 1, "step": 4, "loss": 99.0})).unwrap();
        drop(m);
        let s = run(&version, &parts, c.clone(), true, None);
        assert_eq!(s.epochs_done, 3);
        let (a, b) = (step_losses(&whole), step_losses(&parts));
        assert_eq!(a.len() as u64, s.steps);
        assert_eq!(a, b, "per-step losses of the resumed run");
        let (wa, _) = checkpoint::read(&whole.join(LAST)).unwrap();
        let (wb, _) = checkpoint::read(&parts.join(LAST)).unwrap();
        assert_eq!(wa.len(), wb.len());
        for (k, t) in &wa {
            assert!(t.equal(&wb[k]), "{k} differs after resume");
        }
    }

    #[test]
    fn every_strategy_and_option_trains() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::store(dir.path(), &[4, 1, 2, 5, 3, 6, 2, 4], 24);
        let base = TrainConfig { image_size: 24, batch_size: 3, ..config(1) };
        let mut variants = vec![
            TrainConfig { pairs: Pairs::Rs, ..base.clone() },
            TrainConfig { pairs: Pairs::Rstfv, ..base.clone() },
            TrainConfig { pairs: Pairs::Rsofv, ..base.clone() },
            // One video per batch: only without NT-Xent (validate refuses it with contrastive on).
            TrainConfig { batch_size: 1, contrastive: false, label_rate: 1.0, ..base.clone() },
            TrainConfig { contrastive: false, label_rate: 1.0, ..base.clone() },
            TrainConfig { classifier_on: ClassifierOn::Projection, label_rate: 1.0, ..base.clone() },
            TrainConfig { lambda: 0.0, val_fraction: 0.0, ..base.clone() },
        ];
        let mut after = base.clone();
        after.spg.mix = Mix::After;
        after.spg.shared_xi = true;
        variants.push(after);
        for (i, c) in variants.into_iter().enumerate() {
            let out = dir.path().join(format!("run{i}"));
            let s = run(&version, &out, c.clone(), false, None);
            assert_eq!(s.epochs_done, 1, "{c:?}");
            let losses = step_losses(&out);
            assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite()), "{c:?}: {losses:?}");
            if c.val_fraction == 0.0 {
                assert!(s.best_val_nt_xent.is_none() && !out.join(BEST).exists());
            }
            if c.pairs == Pairs::Spg && c.batch_size > 1 {
                assert!(s.fallbacks.one_frame + s.fallbacks.two_frames > 0, "the store has 1- and 2-frame videos");
            }
        }
    }
}
