//! The USCL training loop (paper Sect. 4, Algorithm 1): ResNet-18 f → projection g → NT-Xent,
//! plus λ·CE of the classifier h on the videos whose labels are kept. Short and plain: data comes
//! from the loader, losses from `loss`, the update from `optim`, and the run directory's files
//! (config, provenance, metrics, checkpoints, summary, and their repair on resume) from `rundir`.

use crate::checkpoint::{self, State};
use crate::loader::{Batch, Context, Job, Loader};
use crate::loss;
use crate::moco::Moco;
use crate::model::{init, Heads, ResNet18};
use crate::optim::Adam;
use crate::rundir::{read_curve, Kill, RunDir, CONFIG_FILE, LAST, LOSS_PLOT, METRICS, PROVENANCE};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Tensor};
use usctl::config::{DeviceChoice, HowOverrides, Method, Overrides, TrainConfig};
use usctl::error::{ConfigError, TrainError};
use usctl::sampler::{self, Clip, Fallbacks, Sampler};
use usctl::store::index::VideoRow;
use usctl::store::reader::Store;
use usctl::store::StoreMeta;
use usctl::{plot, schedule, seed};

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
    /// Stop as a kill would at this point, writing nothing more; for tests of resume.
    pub kill: Option<Kill>,
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
            return Err(TrainError::Resume {
                path: out.into(),
                message: "--config cannot be combined with --resume: the run's own config.toml is used".into(),
            });
        }
        if !saved.is_file() {
            return Err(TrainError::Resume { path: out.into(), message: format!("no {CONFIG_FILE} there; start the run without --resume") });
        }
        let changed = o.run.given();
        if !changed.is_empty() {
            let flags = changed.join(", ");
            return Err(TrainError::Resume {
                path: out.into(),
                message: format!(
                    "{flags} would change the run, and a resumed run continues exactly; start a new run with --out instead (only {} may change)",
                    usctl::config::long_flags::<HowOverrides>().join(", ")
                ),
            });
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

impl Split {
    /// Per clip: the class the classification loss may use (kept labels only).
    pub fn kept_labels(&self) -> Vec<Option<i64>> {
        let mut labels = vec![None; self.clips.len()];
        for &i in &self.labelled {
            labels[i] = self.classes[i];
        }
        labels
    }
}

pub fn split(store: &Store, c: &TrainConfig) -> Split {
    let chosen = |v: &&VideoRow| c.subdatasets.is_empty() || c.subdatasets.contains(&v.subdataset);
    let usable: Vec<_> = store.videos.iter().filter(|v| v.frames_kept > 0).filter(chosen).collect();
    let clips = usable.iter().map(|v| Clip { first_row: v.first_frame_row as usize, frames: v.frames_kept as usize }).collect();
    let classes: Vec<Option<i64>> = usable.iter().map(|v| v.class_index.map(i64::from)).collect();
    let groups: Vec<Option<String>> = usable.iter().map(|v| v.patient_id.clone()).collect();
    let (train, val) = sampler::split(c.seed, &groups, c.val_fraction);
    let with_class: Vec<usize> = train.iter().copied().filter(|&i| classes[i].is_some()).collect();
    let labelled = if c.lambda > 0.0 { sampler::labelled_subset(c.seed, &with_class, c.label_rate) } else { Vec::new() };
    let paths = usable.iter().map(|v| v.source_path.clone()).collect();
    Split { clips, classes, paths, train, val, labelled }
}

pub(crate) fn context(
    store: Store,
    c: &TrainConfig,
    sp: &Split,
    labels: Vec<Option<i64>>,
    train_clips: Vec<usize>,
    augment_in_loader: bool,
) -> Result<Context, TrainError> {
    let times = store.frames.iter().map(|f| f.time_s).collect();
    let sampler = Sampler::from_config(c, times).map_err(|m| ConfigError::Invalid { key: "spg".into(), message: m })?;
    Ok(Context {
        store,
        clips: sp.clips.clone(),
        labels,
        train_clips,
        sampler,
        augment: c.augment.clone(),
        seed: c.seed,
        image_size: c.image_size,
        augment_in_loader,
    })
}

pub(crate) struct Nets {
    backbone_vs: nn::VarStore,
    heads_vs: nn::VarStore,
    pub(crate) backbone: ResNet18,
    pub(crate) heads: Heads,
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

    /// Copies every weight and statistic of `other` (same architecture) into these nets.
    pub(crate) fn copy_from(&mut self, other: &Nets) -> Result<(), TrainError> {
        self.backbone_vs.copy(&other.backbone_vs).and_then(|_| self.heads_vs.copy(&other.heads_vs)).map_err(|e| TrainError::Torch(e.to_string()))
    }

    /// No gradients for any of these nets' variables (MoCo's key encoder).
    pub(crate) fn freeze(&mut self) {
        self.backbone_vs.freeze();
        self.heads_vs.freeze();
    }

    /// Loads `backbone.*` and `heads.*` of a checkpoint's tensors.
    pub(crate) fn load(&self, saved: &HashMap<String, Tensor>, path: &Path) -> Result<(), TrainError> {
        checkpoint::load_into(&self.backbone_vs, &checkpoint::strip(saved, "backbone"), path)?;
        checkpoint::load_into(&self.heads_vs, &checkpoint::strip(saved, "heads"), path)?;
        Ok(())
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
    /// `total` as a number.
    value: f64,
    /// The contrastive term: NT-Xent (weighted, with hard negatives, as configured), or MoCo's
    /// InfoNCE when training with `method = "moco"`.
    contrastive: f64,
    ce: Option<f64>,
    labelled: usize,
    /// MoCo: the keys of this batch, queued after the backward pass.
    keys: Option<Tensor>,
}

/// The losses of one batch. Training with `moco` given: queries from view 1, keys from view 2
/// through the key encoder (updated first, as in MoCo), InfoNCE against the queue; otherwise
/// NT-Xent over both views, with the batch's pair weights and hard negatives.
pub(crate) fn forward(
    nets: &Nets,
    batch: &Batch,
    c: &TrainConfig,
    device: Device,
    train: bool,
    autocast: bool,
    moco: Option<&Moco>,
) -> Result<Losses, TrainError> {
    let n = batch.pairs() as i64;
    let x = batch.views(&c.augment, c.image_size, device);
    let embed = |x: &Tensor| {
        tch::autocast(autocast, || {
            let f = nets.backbone.features(x, train);
            let z = nets.heads.project(&f);
            (f, z)
        })
    };
    let (contrastive, feats, z, keys, views) = match moco.filter(|_| train) {
        Some(m) => {
            m.momentum_update();
            let keys = m.keys(&x.narrow(0, n, n), autocast);
            let (f, q) = embed(&x.narrow(0, 0, n));
            let videos = Tensor::from_slice(&batch.clips.iter().map(|&v| v as i64).collect::<Vec<_>>()).to_device(device);
            (loss::moco(&q, &keys, &m.queue, &m.queue_videos, &videos, c.moco.temperature)?, f, q, Some(keys), 1)
        }
        None => {
            let (f, z) = embed(&x);
            let weights = batch.weighted().then(|| Tensor::from_slice(&batch.weights).to_device(device));
            let (hard, valid) = (z.narrow(0, 2 * n, z.size()[0] - 2 * n), Tensor::from_slice(&batch.hard_valid).to_device(device));
            let extra = (!batch.hard_valid.is_empty()).then_some(loss::Extra { embeddings: &hard, valid: &valid });
            (loss::nt_xent_with(&z.narrow(0, 0, n), &z.narrow(0, n, n), c.temperature, weights.as_ref(), extra)?, f, z, None, 2)
        }
    };
    let rows: Vec<i64> = batch.labels.iter().enumerate().filter(|(_, &l)| l >= 0).map(|(i, _)| i as i64).collect();
    let mut total = if c.contrastive || !train { contrastive.shallow_clone() } else { contrastive.zeros_like() };
    let mut ce_value = None;
    if train && c.lambda > 0.0 && !rows.is_empty() {
        // The labelled rows of each view that went through the query network.
        let idx: Vec<i64> = (0..views).flat_map(|v| rows.iter().map(move |r| r + v * n)).collect();
        let idx = Tensor::from_slice(&idx).to_device(device);
        let targets: Vec<i64> = (0..views).flat_map(|_| rows.iter()).map(|&r| batch.labels[r as usize]).collect();
        let logits = tch::autocast(autocast, || nets.heads.classify(&feats.index_select(0, &idx), &z.index_select(0, &idx)));
        let ce = loss::cross_entropy(&logits, &Tensor::from_slice(&targets).to_device(device))?;
        ce_value = Some(ce.double_value(&[]));
        // Not `+=`: `total` shares its storage with `contrastive`, which an in-place add would change.
        #[allow(clippy::assign_op_pattern)]
        {
            total = total + ce * c.lambda;
        }
    }
    Ok(Losses { contrastive: contrastive.double_value(&[]), value: total.double_value(&[]), total, ce: ce_value, labelled: rows.len(), keys })
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

/// Runs (or resumes) a pretraining run; returns its summary (also written to summary.json).
pub fn train(o: TrainOptions) -> Result<Summary, TrainError> {
    let c = &o.config;
    let started = Instant::now();
    let device = pick_device(c.device)?;
    let threads = usctl::files::threads(c.threads);
    tch::set_num_threads(threads as i32);
    let store = Store::open(&o.store)?;
    let meta = store.meta.clone();
    check_subdatasets(&store, c)?;
    let sp = split(&store, c);
    let train_clips = training_clips(&sp, c, &o.store)?;
    let ctx = Arc::new(context(store, c, &sp, sp.kept_labels(), train_clips.clone(), false)?);
    let nets = Nets::new(device, c.seed, meta.classes.len() as i64, c);
    let mut moco = match c.method {
        Method::Moco if c.contrastive => Some(Moco::new(&nets, device, meta.classes.len() as i64, c, train_clips.len())?),
        _ => None,
    };
    let mut adam = Adam::new(nets.named(true), c.weight_decay);
    let (mut run, mut state) = open_run(&o, &nets, moco.as_mut(), &mut adam, &meta, &sp, train_clips.len(), device, threads)?;
    run.kill_at(o.kill);
    let autocast = device.is_cuda() && c.mixed_precision;
    let steps_per_epoch = sampler::epoch_batches(c.seed, 0, train_clips.len(), c.batch_size).len() as u64;
    let (total_steps, warmup) = (steps_per_epoch * c.epochs as u64, steps_per_epoch * c.warmup_epochs as u64);
    let val_jobs = val_jobs(&sp.val, c.batch_size);
    let stop = o.stop_after_epochs.unwrap_or(c.epochs).min(c.epochs);
    let mut run_tally = Tally::default();

    while state.epoch < stop {
        let epoch = state.epoch;
        let mut loader = Loader::start(ctx.clone(), epoch_jobs(c, epoch, &train_clips), c.loader_threads, c.prefetch);
        let (expected, bar, t0) = (loader.len(), progress(o.progress, loader.len() as u64, epoch, c.epochs), Instant::now());
        let mut tally = Tally::default();
        loop {
            let tw = Instant::now();
            let Some(batch) = loader.next() else { break };
            tally.wait += tw.elapsed().as_secs_f64();
            let lr = schedule::lr_at(c.lr, state.step, total_steps, warmup);
            let l = step(&nets, moco.as_mut(), &mut adam, &mut state, &batch, c, device, autocast, lr)?;
            let dt = tw.elapsed().as_secs_f64();
            tally.add(&batch, l.value);
            let (nt_xent, moco_loss) = if moco.is_some() { (None, Some(l.contrastive)) } else { (Some(l.contrastive), None) };
            run.line(json!({"epoch": epoch, "step": state.step, "lr": lr, "loss": l.value, "nt_xent": nt_xent, "moco": moco_loss, "ce": l.ce, "labelled": l.labelled, "pairs": batch.pairs(), "seconds": dt}))?;
            run.cut(Kill::Step(state.step))?;
            bar.set_message(format!("loss {:.4} · {:.1} img/s", l.value, 2.0 * batch.pairs() as f64 / dt.max(1e-9)));
            bar.inc(1);
        }
        drop(loader);
        if tally.steps != expected {
            return Err(TrainError::Torch(format!(
                "the loader delivered {} of {expected} batches of epoch {epoch} (a loader thread failed; see the message above)",
                tally.steps
            )));
        }
        tally.seconds = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let tv = Instant::now();
        let val = validate(&nets, &ctx, c, device, &val_jobs, autocast)?;
        state.epoch += 1;
        let improved = val.is_some_and(|v| state.best_val.is_none_or(|b| v < b));
        if improved {
            (state.best_val, state.best_epoch) = (val, Some(state.epoch));
        }
        (state.adam_step, state.adam_waiting) = (adam.step, Some(adam.waiting()));
        state.moco_ptr = moco.as_ref().map(|m| m.ptr as u64);
        let mut tensors = nets.named(false);
        tensors.extend(adam.state());
        tensors.extend(moco.iter().flat_map(Moco::tensors));
        let end = json!({"epoch": epoch, "event": "epoch_end", "train_loss": tally.mean_loss(), "val_nt_xent": val, "best": improved, "seconds": tally.seconds, "images_per_s": tally.images_per_s(), "loader_wait_s": tally.wait, "val_seconds": tv.elapsed().as_secs_f64(), "fallbacks": tally.fallbacks});
        let tc = Instant::now();
        run.commit_epoch(epoch, end, &tensors, &state, improved)?;
        run.line(json!({"epoch": epoch, "event": "checkpoint", "seconds": tc.elapsed().as_secs_f64()}))?;
        if o.progress {
            let val = val.map_or("-".into(), |v| format!("{v:.4}"));
            let best = if improved { "  (best)" } else { "" };
            eprintln!(
                "epoch {:>3}/{}  loss {:.4}  val NT-Xent {val}  {:.1} img/s  loader wait {:.1} s{best}",
                state.epoch,
                c.epochs,
                tally.mean_loss().unwrap_or(f64::NAN),
                tally.images_per_s(),
                tally.wait
            );
        }
        run_tally.absorb(tally);
    }
    if state.epoch >= c.epochs {
        let (train_curve, val_curve) = read_curve(&run.file(METRICS)).unwrap_or_default();
        let title = format!("{} · {} · {} epochs", meta.dataset, format!("{:?}", c.pairs).to_lowercase(), c.epochs);
        if let Err(e) = plot::loss_curve(&run.file(LOSS_PLOT), &title, &train_curve, &val_curve) {
            eprintln!("warning: no {LOSS_PLOT}: {e}");
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
        last_train_loss: run_tally.last_loss,
        best_val_nt_xent: state.best_val,
        best_epoch: state.best_epoch,
        train_images_per_s: run_tally.images_per_s(),
        seconds: started.elapsed().as_secs_f64(),
        fallbacks: run_tally.fallbacks,
        peak_rss_mib: proc_status_mib("VmHWM:"),
        rss_anon_mib: proc_status_mib("RssAnon:"),
        rss_file_mib: proc_status_mib("RssFile:"),
    };
    run.finish(&summary)?;
    Ok(summary)
}

/// Refuses a `subdatasets` name the store does not hold, listing the ones it does.
fn check_subdatasets(store: &Store, c: &TrainConfig) -> Result<(), TrainError> {
    let mut held: Vec<&str> = store.videos.iter().map(|v| v.subdataset.as_str()).collect();
    held.sort_unstable();
    held.dedup();
    match c.subdatasets.iter().find(|s| !held.contains(&s.as_str())) {
        Some(s) => Err(ConfigError::Invalid {
            key: "subdatasets".into(),
            message: format!("the store holds no sub-dataset {s:?}; it holds: {} (or leave subdatasets empty for all)", held.join(", ")),
        }
        .into()),
        None => Ok(()),
    }
}

/// The clips the epochs draw from: every training clip, or the labelled ones with contrastive off.
fn training_clips(sp: &Split, c: &TrainConfig, store: &Path) -> Result<Vec<usize>, TrainError> {
    let need = if c.batch_size > 1 { 2 } else { 1 };
    let clips: Vec<usize> = if c.contrastive { sp.train.clone() } else { sp.labelled.clone() };
    if clips.len() < need {
        let why = if c.contrastive { "after holding out the validation videos" } else { "labelled videos kept by label_rate, with contrastive off" };
        return Err(TrainError::TooFewVideos { path: store.into(), found: clips.len(), needed: need, why: why.into() });
    }
    Ok(clips)
}

/// Epoch `epoch`'s training batches, as loader jobs.
pub(crate) fn epoch_jobs(c: &TrainConfig, epoch: u32, train_clips: &[usize]) -> Vec<Job> {
    sampler::epoch_batches(c.seed, epoch, train_clips.len(), c.batch_size)
        .into_iter()
        .enumerate()
        .map(|(i, b)| Job::Train { epoch, index: i as u32, clips: b.into_iter().map(|k| train_clips[k]).collect() })
        .collect()
}

/// One optimisation step: forward, backward (with fp16 loss scaling under autocast), Adam, and
/// for MoCo the batch's keys into the queue.
#[allow(clippy::too_many_arguments)]
fn step(
    nets: &Nets,
    moco: Option<&mut Moco>,
    adam: &mut Adam,
    state: &mut State,
    batch: &Batch,
    c: &TrainConfig,
    device: Device,
    autocast: bool,
    lr: f64,
) -> Result<Losses, TrainError> {
    adam.zero_grad();
    let l = forward(nets, batch, c, device, true, autocast, moco.as_deref())?;
    if !l.value.is_finite() {
        return Err(TrainError::Torch(format!("the loss became {} at epoch {}, step {}; lower --lr or check the store", l.value, state.epoch, state.step)));
    }
    if autocast {
        (&l.total * state.loss_scale.scale).backward();
        if state.loss_scale.update(adam.grads_finite()) {
            adam.scale_grads(1.0 / state.loss_scale.scale);
            adam.step(lr);
        }
    } else {
        l.total.backward();
        adam.step(lr);
    }
    if let (Some(m), Some(keys)) = (moco, &l.keys) {
        m.enqueue(keys, &batch.clips);
    }
    state.step += 1;
    Ok(l)
}

/// Opens the run directory: a new run (config, provenance, initial weights), or a resumed one,
/// repaired to its last committed epoch, whose weights, optimiser and state are loaded.
#[allow(clippy::too_many_arguments)]
fn open_run(
    o: &TrainOptions,
    nets: &Nets,
    moco: Option<&mut Moco>,
    adam: &mut Adam,
    meta: &StoreMeta,
    sp: &Split,
    train_videos: usize,
    device: Device,
    threads: usize,
) -> Result<(RunDir, State), TrainError> {
    let c = &o.config;
    let config_text = c.to_toml();
    let config_sha = usctl::hash::sha256_hex(config_text.as_bytes());
    let (mut run, recovered) = if o.resume {
        let (run, r) = RunDir::resume(&o.out)?;
        (run, Some(r))
    } else {
        (RunDir::create(&o.out, &config_text)?, None)
    };
    let (committed, repairs) = recovered.map_or((None, Vec::new()), |r| (r.checkpoint, r.notes));
    let state = match committed {
        Some((saved, s)) => {
            let last = run.file(LAST);
            if s.store_version != meta.version_id {
                return Err(TrainError::Resume {
                    path: o.out.clone(),
                    message: format!("the run trained on store version {}, not {}; pass --version {}", s.store_version, meta.version_id, s.store_version),
                });
            }
            if s.config_sha256 != config_sha {
                return Err(TrainError::Resume {
                    path: o.out.clone(),
                    message: format!("{CONFIG_FILE} changed since the run started; restore it or start a new run"),
                });
            }
            nets.load(&saved, &last)?;
            if let Some(m) = moco {
                m.load(&saved, s.moco_ptr, &last)?;
            }
            adam.load_state(&saved, s.adam_step, s.adam_waiting.as_deref()).map_err(|m| TrainError::Resume { path: last.clone(), message: m })?;
            s
        }
        None => {
            let mut notes = Vec::new();
            if let Some(init) = &c.init {
                let extra = checkpoint::load_backbone(&nets.backbone_vs, Path::new(init))?;
                notes.push(format!(
                    "backbone initialised from {init} ({} tensors not used, e.g. {})",
                    extra.len(),
                    extra.first().map_or("none", |s| s.as_str())
                ));
            }
            run.write_json(PROVENANCE, &provenance(o, meta, sp, train_videos, device, threads, &config_sha, notes))?;
            State::new(c, meta, config_sha)
        }
    };
    if o.progress {
        for r in &repairs {
            eprintln!("resume: {r}");
        }
    }
    run.line(json!({"event": if o.resume { "resume" } else { "start" }, "from_epoch": state.epoch, "unix": now_unix(), "device": format!("{device:?}"), "repairs": repairs}))?;
    Ok((run, state))
}

#[allow(clippy::too_many_arguments)]
fn provenance(
    o: &TrainOptions,
    meta: &StoreMeta,
    sp: &Split,
    train_videos: usize,
    device: Device,
    threads: usize,
    config_sha: &str,
    notes: Vec<String>,
) -> serde_json::Value {
    json!({
        "usctl": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("USCTL_GIT_COMMIT").unwrap_or("unknown"),
        "libtorch": option_env!("USCTL_LIBTORCH_BUILD").unwrap_or("unknown"),
        "store": { "dir": o.store.canonicalize().unwrap_or_else(|_| o.store.clone()).display().to_string(), "dataset": meta.dataset, "version_id": meta.version_id, "format_version": meta.format_version },
        "seed": o.config.seed,
        "config_sha256": config_sha,
        "command_line": o.command_line,
        "started_unix": now_unix(),
        "device": format!("{device:?}"),
        "threads": threads,
        "train_videos": train_videos,
        "val_videos": sp.val.len(),
        "labelled_videos": sp.labelled.iter().map(|&i| &sp.paths[i]).collect::<Vec<_>>(),
        "notes": notes,
    })
}

/// Counts of an epoch (or of the whole invocation): steps, images, time, losses, fallbacks.
#[derive(Default)]
struct Tally {
    steps: usize,
    images: u64,
    loss_sum: f64,
    seconds: f64,
    wait: f64,
    fallbacks: Fallbacks,
    last_loss: Option<f64>,
}

impl Tally {
    fn add(&mut self, batch: &Batch, loss: f64) {
        self.steps += 1;
        self.images += 2 * batch.pairs() as u64;
        self.loss_sum += loss;
        self.fallbacks.add(batch.fallbacks);
    }

    fn mean_loss(&self) -> Option<f64> {
        (self.steps > 0).then(|| self.loss_sum / self.steps as f64)
    }

    fn images_per_s(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }

    /// Adds a finished epoch to the invocation's totals.
    fn absorb(&mut self, epoch: Tally) {
        self.last_loss = epoch.mean_loss();
        self.images += epoch.images;
        self.seconds += epoch.seconds;
        self.fallbacks.add(epoch.fallbacks);
    }
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
        let l = forward(nets, &batch, c, device, false, autocast, None)?;
        sum += l.contrastive * batch.pairs() as f64;
        n += batch.pairs();
    }
    Ok(Some(sum / n.max(1) as f64))
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
        let sizes = |v: usize, b: usize| {
            val_jobs(&(0..v).collect::<Vec<_>>(), b)
                .iter()
                .map(|j| match j {
                    Job::Val { clips } => clips.len(),
                    _ => 0,
                })
                .collect::<Vec<_>>()
        };
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
        let samples = ["7", "rs", "moco", "off", "x.safetensors"];
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
        let c =
            resolve_config(out, None, &Overrides { how: HowOverrides { device: Some(DeviceChoice::Cpu), ..Default::default() }, ..Default::default() }, true)
                .unwrap();
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
    use crate::rundir::BEST;
    use crate::testkit;
    use std::io::Write;
    use tch::Kind;
    use usctl::augment::AugParams;
    use usctl::config::{ClassifierOn, Mix, MocoConfig, Pairs};

    fn config(epochs: u32) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: 6,
            image_size: 32,
            device: DeviceChoice::Cpu,
            warmup_epochs: 1,
            lr: 1e-3,
            label_rate: 0.5,
            threads: 1,
            ..Default::default()
        }
    }

    fn options(store: &Path, out: &Path, config: TrainConfig, resume: bool) -> TrainOptions {
        TrainOptions { store: store.into(), out: out.into(), config, resume, stop_after_epochs: None, kill: None, progress: false, command_line: vec![] }
    }

    fn run(store: &Path, out: &Path, c: TrainConfig, resume: bool, stop: Option<u32>) -> Summary {
        train(TrainOptions { stop_after_epochs: stop, ..options(store, out, c, resume) }).unwrap()
    }

    fn step_losses(out: &Path) -> Vec<f64> {
        std::fs::read_to_string(out.join(METRICS))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("loss")?.as_f64())
            .collect()
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

    /// Per-step losses and every tensor of last.safetensors.
    fn outcome(out: &Path) -> (Vec<f64>, std::collections::HashMap<String, Tensor>) {
        (step_losses(out), checkpoint::read(&out.join(LAST)).unwrap().0)
    }

    fn epoch_ends(out: &Path) -> Vec<(u64, bool)> {
        std::fs::read_to_string(out.join(METRICS))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("event").and_then(|e| e.as_str()) == Some("epoch_end"))
            .map(|v| (v["epoch"].as_u64().unwrap(), v["best"].as_bool().unwrap()))
            .collect()
    }

    #[test]
    fn resume_after_a_kill_anywhere_reproduces_the_uninterrupted_run() {
        // The default loss (λ = 0.2) with one labelled video among the training videos: most
        // batches carry no label, and the classifier must go on moving between them after a resume
        // exactly as in the uninterrupted run.
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::store(dir.path(), &[5, 6, 2, 7, 5, 4, 6, 3, 1, 5, 4, 6, 3, 5, 2, 4, 6, 3], 24);
        let c = TrainConfig { image_size: 24, batch_size: 4, label_rate: 0.05, ..config(4) };
        let whole = dir.path().join("whole");
        let s = run(&version, &whole, c.clone(), false, None);
        let (losses, weights) = outcome(&whole);
        let ce: Vec<bool> = std::fs::read_to_string(whole.join(METRICS))
            .unwrap()
            .lines()
            .filter_map(|l| Some(serde_json::from_str::<serde_json::Value>(l).ok()?.get("ce")?.is_number()))
            .collect();
        let first = ce.iter().position(|&x| x).expect("a labelled batch");
        assert!(ce[first..].iter().any(|&x| !x), "steps without a label after the first labelled one: {ce:?}");
        let improving: Vec<u32> = epoch_ends(&whole).iter().filter(|e| e.1).map(|e| e.0 as u32).collect();
        let later_best = *improving.iter().rfind(|&&e| e > 0).unwrap_or(&0);
        let mut kills = vec![Kill::Step(1), Kill::Metrics(0), Kill::Best(0), Kill::Step(s.steps - 2), Kill::Metrics(2), Kill::Best(later_best)];
        kills.extend((first as u64 + 1..s.steps).find(|&k| !ce[k as usize]).map(Kill::Step));
        for (i, kill) in kills.into_iter().enumerate() {
            let out = dir.path().join(format!("kill{i}"));
            let err = train(TrainOptions { kill: Some(kill), ..options(&version, &out, c.clone(), false) }).err().unwrap();
            assert!(err.to_string().contains("killed"), "{err}");
            // What a kill during a write leaves: a temporary of a process that is gone.
            std::fs::write(out.join(".last.safetensors.tmp-4194999"), b"partial").unwrap();
            let again = run(&version, &out, c.clone(), true, None);
            assert_eq!(again.epochs_done, 4, "{kill:?}");
            let (l, w) = outcome(&out);
            assert_eq!(l, losses, "{kill:?}: per-step losses of the resumed run");
            assert_eq!(w.len(), weights.len());
            for (k, t) in &weights {
                assert!(t.equal(&w[k]), "{kill:?}: {k} differs after resume");
            }
            // One consistent run: each epoch ended once, best.safetensors is the best epoch, no
            // temporary left.
            assert_eq!(epoch_ends(&out), epoch_ends(&whole), "{kill:?}");
            let (_, best) = checkpoint::read(&out.join(BEST)).unwrap();
            assert_eq!(best.unwrap().epoch, again.best_epoch.unwrap(), "{kill:?}");
            let names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
            assert!(names.iter().all(|n| !n.contains(".tmp")), "{kill:?}: {names:?}");
        }
    }

    #[test]
    fn a_stopped_run_resumes_and_refuses_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::store(dir.path(), &[5, 6, 2, 7, 5, 4, 6, 3, 1, 5], 24);
        let c = TrainConfig { image_size: 24, batch_size: 4, ..config(3) };
        let whole = dir.path().join("whole");
        run(&version, &whole, c.clone(), false, None);
        let parts = dir.path().join("parts");
        let s = run(&version, &parts, c.clone(), false, Some(1));
        assert_eq!(s.epochs_done, 1);
        assert!(!parts.join("loss.png").exists(), "an interrupted run has no final plot yet");
        assert!(matches!(train(options(&version, &parts, c.clone(), false)), Err(TrainError::RunExists { .. })));
        // As if killed while writing a step line of epoch 2.
        let mut m = std::fs::OpenOptions::new().append(true).open(parts.join(METRICS)).unwrap();
        write!(m, "{}", &json!({"epoch": 1, "step": 4, "loss": 99.0}).to_string()[..20]).unwrap();
        drop(m);
        let s = run(&version, &parts, c.clone(), true, None);
        assert_eq!(s.epochs_done, 3);
        assert_eq!(outcome(&whole).0, outcome(&parts).0, "per-step losses of the resumed run");
        let resume = std::fs::read_to_string(parts.join(METRICS))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["event"] == "resume")
            .unwrap();
        assert!(resume["repairs"][0].as_str().unwrap().contains("incomplete line"), "{resume}");
    }

    #[test]
    fn subdatasets_choose_the_videos_and_unknown_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::store(dir.path(), &[3, 4, 5, 3, 4, 5, 3, 4], 24);
        let mut store = Store::open(&version).unwrap();
        for v in store.videos.iter_mut().skip(5) {
            v.subdataset = "other".into();
        }
        let c = |s: &[&str]| TrainConfig { subdatasets: s.iter().map(|x| x.to_string()).collect(), val_fraction: 0.0, ..config(1) };
        assert_eq!(split(&store, &c(&[])).clips.len(), 8);
        let other = split(&store, &c(&["other"]));
        assert_eq!(
            other.clips.iter().map(|k| k.first_row).collect::<Vec<_>>(),
            store.videos[5..].iter().map(|v| v.first_frame_row as usize).collect::<Vec<_>>()
        );
        assert_eq!(split(&store, &c(&["synthetic", "other"])).clips.len(), 8);
        check_subdatasets(&store, &c(&["other", "synthetic"])).unwrap();
        let err = check_subdatasets(&store, &c(&["butterfly"])).unwrap_err().to_string();
        assert!(err.contains("\"butterfly\"") && err.contains("it holds: other, synthetic"), "{err}");
    }

    #[test]
    fn a_moco_run_resumes_exactly_with_its_key_encoder_and_queue() {
        // The queue (6) wraps within an epoch of two batches of 4; a resumed run must continue
        // from the saved key encoder, queue and write position, not from fresh ones.
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::store(dir.path(), &[5, 6, 2, 7, 5, 4, 6, 3, 1, 5, 4, 6], 24);
        let c =
            TrainConfig { image_size: 24, batch_size: 4, lambda: 0.0, method: Method::Moco, moco: MocoConfig { queue: 6, ..Default::default() }, ..config(3) };
        let whole = dir.path().join("whole");
        run(&version, &whole, c.clone(), false, None);
        let (losses, weights) = outcome(&whole);
        for name in ["moco.queue", "moco.queue_videos", "moco.key.backbone.conv1.weight", "moco.key.heads.projection.0.weight"] {
            assert!(weights.contains_key(name), "{name} in the checkpoint");
        }
        let videos = Vec::<i64>::try_from(&weights["moco.queue_videos"]).unwrap();
        assert!(videos.iter().all(|&v| v >= 0), "after 3 epochs every initial entry was replaced: {videos:?}");
        assert!(!weights["moco.key.backbone.conv1.weight"].equal(&weights["backbone.conv1.weight"]), "the key encoder lags the query encoder");
        let parts = dir.path().join("parts");
        run(&version, &parts, c.clone(), false, Some(1));
        run(&version, &parts, c.clone(), true, None);
        let (l, w) = outcome(&parts);
        assert_eq!(l, losses, "per-step losses of the resumed run");
        for (k, t) in &weights {
            assert!(t.equal(&w[k]), "{k} differs after resume");
        }
        let (_, state) = checkpoint::read(&parts.join(LAST)).unwrap();
        assert!(state.unwrap().moco_ptr.is_some());
        // A queue larger than the training videos is refused, naming the key.
        let big = TrainConfig { moco: MocoConfig { queue: 500, ..Default::default() }, ..c };
        let err = train(options(&version, &dir.path().join("big"), big, false)).err().unwrap().to_string();
        assert!(err.contains("moco.queue") && err.contains("training videos"), "{err}");
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
            TrainConfig { pairs: Pairs::Ivpp, ..base.clone() },
            TrainConfig { pairs: Pairs::Rsofv, hard_negatives: 2, ..base.clone() },
            TrainConfig { method: Method::Moco, moco: MocoConfig { queue: 4, ..Default::default() }, ..base.clone() },
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
            let lines: Vec<serde_json::Value> =
                std::fs::read_to_string(out.join(METRICS)).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            let steps: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("step").is_some()).collect();
            let key = if c.method == Method::Moco { "moco" } else { "nt_xent" };
            assert!(steps.iter().all(|v| v[key].is_number()) || !c.contrastive, "{c:?}: every step logs {key}");
            if c.hard_negatives > 0 {
                assert!(s.fallbacks.no_hard_negative > 0, "the store has a one-frame video, which has no hard negative");
            }
        }
    }
}
