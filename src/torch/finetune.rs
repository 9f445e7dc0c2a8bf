//! `usctl eval`: k-fold fine-tuning of a backbone on a labelled store (docs/eval.md). Each fold ×
//! seed trains a new linear classifier (and, by protocol, the last block or every layer) on the
//! training videos' frames and scores its test videos once, at frame and video level. The pure
//! parts (config, data selection, folds, metrics, report) are in `usctl::eval`.

use crate::augment;
use crate::checkpoint;
use crate::loss;
use crate::model::init;
use crate::model::resnet::{self, ResNet18, FEATURES, STAGES};
use crate::optim::Adam;
use crate::train::pick_device;
use rand::seq::SliceRandom;
use rand::Rng as _;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};
use usctl::audit::corpus;
use usctl::audit::matching::Rule;
use usctl::augment::{draw, AugParams};
use usctl::error::{EvalError, TrainError};
use usctl::eval::config::{ClassWeights, EvalConfig, Protocol, Selection};
use usctl::eval::data::{self, Dataset};
use usctl::eval::folds::{self, Folds};
use usctl::eval::metrics::{self, Confusion};
use usctl::eval::report::{self, Duplicates, Excluded, FoldRun, Level, Report, StoreRef};
use usctl::store::reader::Store;
use usctl::{schedule, seed};

pub const CONFIG_FILE: &str = "eval.toml";
pub const FOLDS_FILE: &str = "folds.json";
pub const RUNS_FILE: &str = "runs.jsonl";
/// Frames per forward pass when only predicting.
const PREDICT_BATCH: usize = 256;

impl From<loss::ShapeError> for EvalError {
    fn from(e: loss::ShapeError) -> Self {
        EvalError::Train(TrainError::Torch(e.to_string()))
    }
}

pub struct EvalOptions {
    pub store: PathBuf,
    /// None: random initialisation.
    pub init: Option<PathBuf>,
    pub label: Option<String>,
    pub out: PathBuf,
    pub config: EvalConfig,
    pub folds_file: Option<PathBuf>,
    pub progress: bool,
    pub command_line: Vec<String>,
}

/// A backbone and a new linear classifier `fc` (torchvision's name), frozen by protocol.
pub(crate) struct Model {
    backbone_vs: nn::VarStore,
    head_vs: nn::VarStore,
    backbone: ResNet18,
    head: nn::Linear,
    protocol: Protocol,
}

/// Whether fine-tuning may change backbone tensor `name` (batch-norm statistics included).
pub(crate) fn tuned(protocol: Protocol, name: &str) -> bool {
    match protocol {
        Protocol::Linear => false,
        Protocol::Last3 => name.starts_with("layer4.1."),
        Protocol::All => true,
    }
}

impl Model {
    /// `backbone_seed` draws a random backbone (when `init` is None), `head_seed` the classifier.
    pub(crate) fn new(
        device: Device,
        backbone_seed: u64,
        head_seed: u64,
        classes: usize,
        protocol: Protocol,
        init: Option<&HashMap<String, Tensor>>,
        init_path: &Path,
    ) -> Result<Model, TrainError> {
        let backbone_vs = nn::VarStore::new(device);
        let backbone = ResNet18::new(&backbone_vs.root());
        match init {
            Some(weights) => {
                checkpoint::load_into(&backbone_vs, weights, init_path)?;
            }
            None => init::convolutions(&backbone_vs, &mut seed::stream(backbone_seed, "eval-init", &[0])),
        }
        for (name, t) in backbone_vs.variables() {
            if !tuned(protocol, &name) {
                let _ = t.set_requires_grad(false);
            }
        }
        let head_vs = nn::VarStore::new(device);
        let head = nn::linear(head_vs.root() / "fc", FEATURES, classes as i64, Default::default());
        init::linears(&head_vs, &mut seed::stream(head_seed, "eval-init", &[1]));
        Ok(Model { backbone_vs, head_vs, backbone, head, protocol })
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.backbone_vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        v.extend(self.head_vs.variables().into_iter().map(|(k, t)| (format!("fc.{k}"), t)));
        v
    }

    /// Everything training can change: trainable weights and the batch-norm statistics of the
    /// parts that run in train mode.
    fn changing(&self) -> Vec<Tensor> {
        let mut v: Vec<(String, Tensor)> = self.backbone_vs.variables().into_iter().filter(|(k, _)| tuned(self.protocol, k)).collect();
        v.extend(self.head_vs.variables());
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, t)| t).collect()
    }

    fn snapshot(&self) -> Vec<Tensor> {
        self.changing().iter().map(|t| t.detach().copy()).collect()
    }

    fn restore(&self, saved: &[Tensor]) {
        tch::no_grad(|| {
            for (mut t, s) in self.changing().into_iter().zip(saved) {
                t.copy_(s);
            }
        });
    }

    /// Frozen stages run without gradients and in eval mode, so their batch-norm statistics stay
    /// as loaded.
    pub(crate) fn features(&self, x: &Tensor, train: bool) -> Tensor {
        match self.protocol {
            Protocol::Linear => tch::no_grad(|| self.backbone.features(x, false)),
            Protocol::Last3 => {
                let y = tch::no_grad(|| self.backbone.stages(x, 0..STAGES - 1, false));
                resnet::pool(&self.backbone.stages(&y, STAGES - 1..STAGES, train))
            }
            Protocol::All => self.backbone.features(x, train),
        }
    }

    fn logits(&self, features: &Tensor) -> Tensor {
        features.apply(&self.head)
    }
}

/// A model's scores on some videos.
#[derive(Debug)]
struct Predicted {
    frame: Confusion,
    video: Confusion,
    frame_auc: Option<f64>,
    video_auc: Option<f64>,
    /// Mean cross-entropy per frame.
    loss: f64,
}

/// What every fold shares.
struct Ctx<'a> {
    store: &'a Store,
    ds: &'a Dataset,
    c: &'a EvalConfig,
    device: Device,
    init: Option<(HashMap<String, Tensor>, PathBuf)>,
    /// Linear protocol without augmentation: every frame's features, by store row.
    cache: Option<(Tensor, HashMap<usize, i64>)>,
}

impl Ctx<'_> {
    /// The backbone to fine-tune (loaded, or one random backbone per evaluation seed, like a
    /// fixed checkpoint) and a classifier drawn from `head_seed`.
    fn model(&self, head_seed: u64) -> Result<Model, TrainError> {
        let (weights, path) = match &self.init {
            Some((w, p)) => (Some(w), p.as_path()),
            None => (None, Path::new("random")),
        };
        Model::new(self.device, self.c.seed, head_seed, self.ds.classes.len(), self.c.protocol, weights, path)
    }

    /// Frames (store rows) → images on the device.
    fn images(&self, rows: &[usize], params: &[AugParams]) -> Tensor {
        let side = self.store.meta.params.size as i64;
        let mut buf = Vec::with_capacity(rows.len() * self.store.frame_bytes());
        for &r in rows {
            buf.extend_from_slice(self.store.frame(r));
        }
        let frames = Tensor::from_slice(&buf).view([rows.len() as i64, 1, side, side]);
        augment::images(&frames, params, &self.c.augment, self.c.image_size, self.device)
    }

    fn features(&self, model: &Model, rows: &[usize], params: &[AugParams], train: bool) -> Tensor {
        match &self.cache {
            Some((f, pos)) => {
                let idx: Vec<i64> = rows.iter().map(|r| pos[r]).collect();
                f.index_select(0, &Tensor::from_slice(&idx).to_device(self.device))
            }
            None => model.features(&self.images(rows, params), train),
        }
    }

    /// Scores `videos` with the model in eval mode: frame and video confusion matrices and the
    /// mean cross-entropy per frame. A loss that is not finite (weights that overflowed) is an
    /// error: its predictions would be garbage.
    fn predict(&self, model: &Model, videos: &[usize], at: At, what: &'static str) -> Result<Predicted, EvalError> {
        let k = self.ds.classes.len();
        let frames = self.ds.frames_of(videos);
        let _guard = tch::no_grad_guard();
        let (mut probs, mut loss_sum) = (Vec::with_capacity(frames.len()), 0.0);
        for chunk in frames.chunks(PREDICT_BATCH) {
            let rows: Vec<usize> = chunk.iter().map(|f| f.1).collect();
            let logits = model.logits(&self.features(model, &rows, &vec![AugParams::IDENTITY; rows.len()], false));
            let targets = Tensor::from_slice(&chunk.iter().map(|f| self.ds.videos[f.0].class as i64).collect::<Vec<_>>()).to_device(self.device);
            loss_sum += loss::cross_entropy(&logits, &targets)?.double_value(&[]) * chunk.len() as f64;
            let p = logits.softmax(1, Kind::Double).to_device(Device::Cpu);
            let flat = Vec::<f64>::try_from(p.flatten(0, -1)).map_err(|e| TrainError::Torch(e.to_string()))?;
            probs.extend(flat.chunks(k).map(|c| c.to_vec()));
        }
        let truth: Vec<usize> = frames.iter().map(|f| self.ds.videos[f.0].class).collect();
        let pred: Vec<usize> = probs.iter().map(|p| metrics::argmax(p)).collect();
        let per_video = metrics::video_probabilities(&probs, &frames.iter().map(|f| f.0).collect::<Vec<_>>());
        let vt: Vec<usize> = per_video.iter().map(|(v, _)| self.ds.videos[*v].class).collect();
        let vprobs: Vec<Vec<f64>> = per_video.into_iter().map(|(_, p)| p).collect();
        let vp: Vec<usize> = vprobs.iter().map(|p| metrics::argmax(p)).collect();
        let loss = loss_sum / frames.len().max(1) as f64;
        at.finite(what, loss)?;
        Ok(Predicted {
            frame: metrics::confusion(&truth, &pred, k),
            video: metrics::confusion(&vt, &vp, k),
            frame_auc: metrics::macro_auc(&probs, &truth, k),
            video_auc: metrics::macro_auc(&vprobs, &vt, k),
            loss,
        })
    }
}

/// One epoch's training frames (store rows), shuffled: every frame of every video, or at most
/// `per_video` distinct frames of each.
pub(crate) fn epoch_rows(rng: &mut seed::Rng, ds: &Dataset, videos: &[usize], per_video: usize) -> Vec<usize> {
    let mut rows = Vec::new();
    for &v in videos {
        let vid = &ds.videos[v];
        if per_video == 0 || vid.frames <= per_video {
            rows.extend(vid.first_row..vid.first_row + vid.frames);
        } else {
            rows.extend(rand::seq::index::sample(rng, vid.frames, per_video).into_iter().map(|k| vid.first_row + k));
        }
    }
    rows.shuffle(rng);
    rows
}

/// Balanced class weights (`metrics::balanced_weights`) over the training frames one epoch draws
/// from `videos` (every frame, or at most `per_video` of each).
fn class_weights(ds: &Dataset, videos: &[usize], per_video: usize, device: Device) -> Tensor {
    let mut counts = vec![0usize; ds.classes.len()];
    for &v in videos {
        let frames = ds.videos[v].frames;
        counts[ds.videos[v].class] += if per_video == 0 { frames } else { frames.min(per_video) };
    }
    let w: Vec<f32> = metrics::balanced_weights(&counts).into_iter().map(|x| x as f32).collect();
    Tensor::from_slice(&w).to_device(device)
}

/// Batches of `size`; a lone last frame joins the batch before it (batch norm in train mode
/// cannot normalise a single value per channel).
pub(crate) fn batches(rows: &[usize], size: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = rows.chunks(size.max(1)).map(|c| c.to_vec()).collect();
    if out.len() > 1 && out.last().is_some_and(|b| b.len() == 1) {
        let lone = out.pop().unwrap_or_default();
        if let Some(prev) = out.last_mut() {
            prev.extend(lone);
        }
    }
    out
}

/// Where in an evaluation a loss was computed: fold and repetition (0-based), epoch (1-based).
#[derive(Clone, Copy)]
pub(crate) struct At {
    pub fold: usize,
    pub rep: usize,
    pub epoch: u32,
}

/// The largest mean cross-entropy that still says something: −ln of the smallest normal f32.
/// Beyond it the model gives the true class a probability float32 cannot hold, which no training
/// that works does (a fresh classifier starts near ln(classes)); with `--lr 1e30` the loss stays
/// finite (about 1e31) while every test frame lands in one class.
const MAX_LOSS: f64 = 126.0 * std::f64::consts::LN_2;

impl At {
    /// A loss that is not finite, or above `MAX_LOSS`, stops the evaluation, as a non-finite loss
    /// stops training: what follows it would be scored garbage.
    pub(crate) fn finite(self, what: &'static str, value: f64) -> Result<(), EvalError> {
        if value.is_finite() && value <= MAX_LOSS {
            return Ok(());
        }
        Err(EvalError::Diverged { what, value, fold: self.fold + 1, seed: self.rep + 1, epoch: self.epoch })
    }
}

/// Trains fold `fold` with repetition `rep`'s seed and scores its test part once.
fn run_fold(ctx: &Ctx, folds: &Folds, fold: usize, rep: usize) -> Result<FoldRun, EvalError> {
    let c = ctx.c;
    let started = Instant::now();
    let run_seed: u64 = seed::stream(c.seed, "eval-run", &[rep as u64, fold as u64]).gen();
    let (train_all, test) = folds.train_test(fold);
    let (train, val) = match c.selection {
        Selection::Validation => folds::hold_out(&folds.items, &train_all, c.val_fraction, run_seed)?,
        _ => (train_all, Vec::new()),
    };
    let model = ctx.model(run_seed)?;
    let mut adam = Adam::new(model.trainable(), c.weight_decay);
    let classes: HashMap<usize, i64> = ctx.ds.videos.iter().flat_map(|v| (v.first_row..v.first_row + v.frames).map(move |r| (r, v.class as i64))).collect();
    let weights = (c.class_weights == ClassWeights::Balanced).then(|| class_weights(ctx.ds, &train, c.frames_per_video, ctx.device));
    let mut best_val: Option<(f64, u32, Vec<Tensor>)> = None;
    let mut best_test: Option<(f64, u32, Predicted)> = None;
    let at = |epoch: u32| At { fold, rep, epoch };
    for epoch in 0..c.epochs {
        // Cosine annealing per epoch, as torch's CosineAnnealingLR(T_max = epochs).
        let lr = schedule::lr_at(c.lr, epoch as u64, c.epochs as u64, 0);
        let mut rng = seed::stream(run_seed, "eval-epoch", &[epoch as u64]);
        let rows = epoch_rows(&mut rng, ctx.ds, &train, c.frames_per_video);
        for batch in batches(&rows, c.batch_size) {
            let params: Vec<AugParams> =
                if c.augment_train { batch.iter().map(|_| draw(&mut rng, &c.augment)).collect() } else { vec![AugParams::IDENTITY; batch.len()] };
            let logits = model.logits(&ctx.features(&model, &batch, &params, true));
            let targets = Tensor::from_slice(&batch.iter().map(|r| classes[r]).collect::<Vec<_>>()).to_device(ctx.device);
            let l = match &weights {
                Some(w) => loss::weighted_cross_entropy(&logits, &targets, w)?,
                None => loss::cross_entropy(&logits, &targets)?,
            };
            at(epoch + 1).finite("training", l.double_value(&[]))?;
            adam.zero_grad();
            l.backward();
            adam.step(lr);
        }
        match c.selection {
            Selection::Validation => {
                let loss = ctx.predict(&model, &val, at(epoch + 1), "validation")?.loss;
                if best_val.as_ref().is_none_or(|b| loss < b.0) {
                    best_val = Some((loss, epoch + 1, model.snapshot()));
                }
            }
            Selection::Test => {
                let scored = ctx.predict(&model, &test, at(epoch + 1), "test")?;
                let acc = metrics::scores(&scored.frame).accuracy;
                if best_test.as_ref().is_none_or(|b| acc > b.0) {
                    best_test = Some((acc, epoch + 1, scored));
                }
            }
            Selection::Fixed => {}
        }
    }
    let (selected_epoch, scored) = match (c.selection, best_val, best_test) {
        (Selection::Test, _, Some((_, e, scored))) => (e, scored),
        (Selection::Validation, Some((_, e, saved)), _) => {
            model.restore(&saved);
            (e, ctx.predict(&model, &test, at(e), "test")?)
        }
        _ => (c.epochs, ctx.predict(&model, &test, at(c.epochs), "test")?),
    };
    Ok(FoldRun {
        fold,
        rep,
        train_videos: train.len(),
        val_videos: val.len(),
        test_videos: test.len(),
        test_frames: ctx.ds.frames_of(&test).len(),
        epochs_trained: c.epochs,
        selected_epoch,
        frame: scored.frame,
        video: scored.video,
        frame_auc: scored.frame_auc,
        video_auc: scored.video_auc,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Features of every frame of the dataset with the loaded backbone in eval mode.
fn feature_cache(ctx: &Ctx) -> Result<(Tensor, HashMap<usize, i64>), EvalError> {
    let model = ctx.model(ctx.c.seed)?;
    let all: Vec<usize> = (0..ctx.ds.videos.len()).collect();
    let rows: Vec<usize> = ctx.ds.frames_of(&all).into_iter().map(|f| f.1).collect();
    let _guard = tch::no_grad_guard();
    let parts: Vec<Tensor> =
        rows.chunks(PREDICT_BATCH).map(|chunk| model.features(&ctx.images(chunk, &vec![AugParams::IDENTITY; chunk.len()]), false)).collect();
    let pos = rows.iter().enumerate().map(|(i, &r)| (r, i as i64)).collect();
    Ok((Tensor::cat(&parts, 0), pos))
}

fn folds_for(o: &EvalOptions, ds: &Dataset) -> Result<Folds, EvalError> {
    let items = ds.items();
    match &o.folds_file {
        Some(path) => {
            let fail = |message: String| EvalError::FoldsFile { path: path.clone(), message };
            let text = std::fs::read(path).map_err(EvalError::io(path))?;
            let saved: Folds =
                serde_json::from_slice(&text).map_err(|e| fail(format!("not a folds file ({e}); give the folds.json an earlier `usctl eval` wrote")))?;
            saved.reuse(&items).map_err(fail)
        }
        None => Ok(folds::split(&items, o.config.folds, o.config.seed)?),
    }
}

/// Drops the videos of `ds` that have a near-duplicate in the store at `path` (located like
/// `--store`), returning what was dropped and from which store.
fn drop_overlap(store_dir: &Path, store: &Store, path: &Path, ds: &mut Dataset) -> Result<Excluded, EvalError> {
    let other_err = |source| EvalError::OtherStore { path: path.to_path_buf(), source };
    let dir = usctl::store::locate(path, None, None).map_err(other_err)?;
    let other = Store::open(&dir).map_err(other_err)?;
    let found = corpus::overlap(store, &other, Rule::default());
    let dropped = ds.drop_overlap(store_dir, &dir, &found)?;
    Ok(Excluded { store: store_ref(&dir, &other), dropped })
}

pub(crate) fn store_ref(dir: &Path, store: &Store) -> StoreRef {
    StoreRef {
        dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).display().to_string(),
        dataset: store.meta.dataset.clone(),
        version_id: store.meta.version_id.clone(),
    }
}

/// What every evaluation task sets up before its first fold: the device, the store, the
/// evaluated videos (for segment and detect, those whose frames have masks), duplicate clusters,
/// folds, the initial backbone, and the output folder with eval.toml and folds.json.
pub(crate) struct Prepared {
    pub c: EvalConfig,
    pub device: Device,
    pub store: Store,
    pub ds: Dataset,
    pub excluded: Option<Excluded>,
    pub duplicates: Duplicates,
    /// Labelled videos left out for lacking masks (segment and detect).
    pub not_annotated: usize,
    pub folds: Folds,
    pub init: Option<(HashMap<String, Tensor>, PathBuf)>,
    pub init_sha256: Option<String>,
}

pub(crate) fn prepare(o: &EvalOptions) -> Result<Prepared, EvalError> {
    let mut c = o.config.clone();
    let device = pick_device(c.device)?;
    let threads = usctl::files::threads(c.threads);
    tch::set_num_threads(threads as i32);
    if o.out.join(report::JSON).exists() {
        return Err(EvalError::Exists { path: o.out.clone() });
    }
    let store = Store::open(&o.store)?;
    let mut ds = data::select(&o.store, &store.meta.classes, &store.videos, &c)?;
    let not_annotated = if c.task.is_dense() { ds.keep_annotated(&o.store, |row| store.masks_of(row).is_some())? } else { 0 };
    let excluded = match &c.exclude_overlap_with {
        Some(path) => Some(drop_overlap(&o.store, &store, path, &mut ds)?),
        None => None,
    };
    let rule = Rule::default();
    let clusters = ds.clusters_of(&corpus::duplicate_groups(&store, rule));
    let (n_clusters, n_joined) = data::cluster_count(&clusters);
    if c.duplicate_groups {
        ds.set_clusters(&clusters);
    }
    let duplicates = Duplicates { grouped: c.duplicate_groups, rule, clusters: n_clusters, videos: n_joined };
    if o.progress {
        if not_annotated > 0 {
            eprintln!("left out {not_annotated} labelled videos without masks");
        }
        if let Some(x) = &excluded {
            eprintln!("dropped {} videos with a near-duplicate in {}", x.dropped.len(), x.store.dir);
        }
        let how = if c.duplicate_groups { "kept within one fold each" } else { "NOT grouped (duplicate_groups off)" };
        eprintln!("{n_clusters} duplicate clusters join {n_joined} of {} videos: {how}", ds.videos.len());
    }
    let folds = folds_for(o, &ds)?;
    c.folds = folds.k;
    std::fs::create_dir_all(&o.out).map_err(EvalError::io(&o.out))?;
    report::write_atomic(&o.out.join(CONFIG_FILE), c.to_toml().as_bytes())?;
    report::write_atomic(&o.out.join(FOLDS_FILE), &serde_json::to_vec_pretty(&folds).unwrap_or_default())?;
    let (init, init_sha256) = match &o.init {
        Some(p) => {
            let (saved, _) = checkpoint::read(p)?;
            let weights = if saved.keys().any(|k| k.starts_with("backbone.")) { checkpoint::strip(&saved, "backbone") } else { saved };
            let sha = usctl::hash::sha256_file(p).map(|h| h.1).ok();
            (Some((weights, p.clone())), sha)
        }
        None => (None, None),
    };
    Ok(Prepared { c, device, store, ds, excluded, duplicates, not_annotated, folds, init, init_sha256 })
}

/// The name of the initialisation in reports: `--label`, "random", or the checkpoint's run
/// directory.
pub(crate) fn label_of(o: &EvalOptions) -> String {
    o.label.clone().unwrap_or_else(|| match &o.init {
        None => "random".into(),
        Some(p) => p.parent().and_then(|d| d.file_name()).map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().to_string()),
    })
}

/// Runs the whole evaluation and writes its directory: eval.toml, folds.json, runs.jsonl (one
/// line per finished fold run), report.json, report.md and the PNGs.
pub fn evaluate(o: EvalOptions) -> Result<Report, EvalError> {
    let started = Instant::now();
    let Prepared { c, device, store, ds, excluded, duplicates, not_annotated: _, folds, init, init_sha256 } = prepare(&o)?;
    let mut ctx = Ctx { store: &store, ds: &ds, c: &c, device, init, cache: None };
    if c.caches_features() {
        ctx.cache = Some(feature_cache(&ctx)?);
    }
    let runs_path = o.out.join(RUNS_FILE);
    let mut runs_file = std::fs::File::create(&runs_path).map_err(EvalError::io(&runs_path))?;
    let mut runs = Vec::new();
    for rep in 0..c.seeds {
        for fold in 0..folds.k {
            let r = run_fold(&ctx, &folds, fold, rep)?;
            writeln!(runs_file, "{}", serde_json::to_string(&r).unwrap_or_default()).map_err(EvalError::io(&runs_path))?;
            if o.progress {
                eprintln!(
                    "fold {}/{} seed {}/{}: frame accuracy {:.3}, video accuracy {:.3} (epoch {}, {} test videos) {:.1} s",
                    fold + 1,
                    folds.k,
                    rep + 1,
                    c.seeds,
                    metrics::scores(&r.frame).accuracy,
                    metrics::scores(&r.video).accuracy,
                    r.selected_epoch,
                    r.test_videos,
                    r.seconds
                );
            }
            runs.push(r);
        }
    }
    let label = label_of(&o);
    let k = ds.classes.len();
    let report = Report {
        format: report::FORMAT.into(),
        format_version: report::FORMAT_VERSION,
        title: report::title(&label, c.protocol, c.selection, &store.meta.dataset),
        label,
        init: o.init.as_ref().map_or("random".into(), |p| p.display().to_string()),
        init_sha256,
        protocol: c.protocol,
        selection: c.selection,
        classes: ds.classes.clone(),
        store: store_ref(&o.store, &store),
        videos: ds.videos.len(),
        videos_with_patient: ds.videos.iter().filter(|v| v.patient.is_some()).count(),
        frames: ds.videos.iter().map(|v| v.frames).sum(),
        duplicates: Some(duplicates),
        excluded,
        config: c.clone(),
        device: format!("{device:?}"),
        git_commit: option_env!("USCTL_GIT_COMMIT").unwrap_or("unknown").into(),
        command_line: o.command_line.clone(),
        seconds: started.elapsed().as_secs_f64(),
        frame: Level::of(runs.iter().map(|r| &r.frame), runs.iter().map(|r| r.frame_auc), k),
        video: Level::of(runs.iter().map(|r| &r.video), runs.iter().map(|r| r.video_auc), k),
        runs,
    };
    report.write(&o.out)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use testkit::eval_config as config;
    /// The imbalanced store's minority class is this much darker; fine-tuned this many epochs.
    const SHADE: f64 = 0.5;
    const EPOCHS: u32 = 3;

    /// A labelled test store of `videos` videos in `dir`, opened, and the dataset `c` selects.
    fn opened(dir: &Path, videos: usize, c: &EvalConfig) -> (Store, Dataset) {
        let version = testkit::labelled_store(dir, videos, 32);
        let store = Store::open(&version).unwrap();
        let ds = data::select(&version, &store.meta.classes, &store.videos, c).unwrap();
        (store, ds)
    }

    #[test]
    fn last3_changes_only_the_last_block_and_the_classifier() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(Protocol::Last3);
        let (store, ds) = opened(dir.path(), 12, &c);
        let folds = folds::split(&ds.items(), 2, 0).unwrap();
        let ctx = Ctx { store: &store, ds: &ds, c: &c, device: Device::Cpu, init: None, cache: None };
        // The model run_fold builds for fold 0, seed 0: its initial weights, then train it.
        let run_seed: u64 = seed::stream(c.seed, "eval-run", &[0, 0]).gen();
        let before: Vec<(String, Tensor)> = ctx.model(run_seed).unwrap().backbone_vs.variables().into_iter().map(|(k, t)| (k, t.copy())).collect();
        let model = ctx.model(run_seed).unwrap();
        let mut adam = Adam::new(model.trainable(), c.weight_decay);
        let (train, _) = folds.train_test(0);
        let rows = epoch_rows(&mut seed::stream(1, "t", &[]), &ds, &train, 0);
        for batch in batches(&rows, 4) {
            let params: Vec<AugParams> = batch.iter().map(|_| draw(&mut seed::stream(2, "t", &[]), &c.augment)).collect();
            let logits = model.logits(&ctx.features(&model, &batch, &params, true));
            let targets = Tensor::from_slice(
                &batch.iter().map(|r| ds.videos.iter().find(|v| (v.first_row..v.first_row + v.frames).contains(r)).unwrap().class as i64).collect::<Vec<_>>(),
            );
            adam.zero_grad();
            loss::cross_entropy(&logits, &targets).unwrap().backward();
            adam.step(0.01);
        }
        let after = model.backbone_vs.variables();
        let mut changed = Vec::new();
        for (k, t) in &before {
            if !after[k].equal(t) {
                changed.push(k.clone());
            }
        }
        changed.sort();
        assert!(!changed.is_empty());
        assert!(changed.iter().all(|k| k.starts_with("layer4.1.")), "changed outside layer4.1: {changed:?}");
        for k in ["layer4.1.conv1.weight", "layer4.1.conv2.weight", "layer4.1.bn2.running_mean"] {
            assert!(changed.contains(&k.to_string()), "{k} should train: {changed:?}");
        }
        assert_eq!(model.trainable().len(), 6 + 2, "two convolutions, two batch norms (weight, bias), fc weight and bias");
    }

    #[test]
    fn selection_modes_and_the_feature_cache() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::labelled_store(dir.path(), 12, 32);
        let run = |name: &str, c: EvalConfig| evaluate(testkit::eval_options(&version, dir.path().join(name), c)).unwrap();
        let fixed = run("fixed", EvalConfig { augment_train: false, ..config(Protocol::Linear) });
        let cached = run("cached", EvalConfig { augment_train: false, ..config(Protocol::Linear) });
        assert_eq!(fixed.runs.iter().map(|r| &r.frame).collect::<Vec<_>>(), cached.runs.iter().map(|r| &r.frame).collect::<Vec<_>>(), "deterministic");
        // Without augmentation the linear protocol trains on cached features; the uncached path
        // (augmentation on, but with identity parameters drawn) must agree with it.
        let c = EvalConfig { augment_train: false, ..config(Protocol::Linear) };
        let store = Store::open(&version).unwrap();
        let ds = data::select(&version, &store.meta.classes, &store.videos, &c).unwrap();
        let mut ctx = Ctx { store: &store, ds: &ds, c: &c, device: Device::Cpu, init: None, cache: None };
        ctx.cache = Some(feature_cache(&ctx).unwrap());
        let model = ctx.model(c.seed).unwrap();
        let rows = vec![ds.videos[3].first_row, ds.videos[0].first_row + 1];
        let from_cache = ctx.features(&model, &rows, &[AugParams::IDENTITY; 2], true);
        ctx.cache = None;
        let computed = ctx.features(&model, &rows, &[AugParams::IDENTITY; 2], true);
        assert!((&from_cache - &computed).abs().max().double_value(&[]) < 1e-5);

        let learnt = run("learnt", EvalConfig { augment_train: false, epochs: 30, lr: 0.01, ..config(Protocol::Linear) });
        assert!(learnt.frame.accuracy.mean > 0.9 && learnt.video.accuracy.mean > 0.9, "bright and dark videos: {:?}", learnt.frame.accuracy);
        let auc = learnt.frame.auc.unwrap();
        assert!(auc.mean > 0.9 && auc.n == 2 && learnt.runs.iter().all(|r| r.video_auc.is_some()), "frame AUC {auc}");

        let val = run("val", EvalConfig { selection: Selection::Validation, folds: 2, ..config(Protocol::All) });
        assert!(val.runs.iter().all(|r| r.val_videos > 0 && (1..=2).contains(&r.selected_epoch)));
        let test = run("test", EvalConfig { selection: Selection::Test, ..config(Protocol::Linear) });
        assert!(test.title.starts_with("EPOCH SELECTED ON THE TEST FOLD"));
        let md = std::fs::read_to_string(dir.path().join("test").join(report::MARKDOWN)).unwrap();
        assert!(md.starts_with("# EPOCH SELECTED ON THE TEST FOLD"), "{md}");
        let err = evaluate(testkit::eval_options(&version, dir.path().join("fixed"), config(Protocol::Linear)));
        assert!(matches!(err, Err(EvalError::Exists { .. })));
    }

    #[test]
    fn balanced_class_weights_raise_the_minority_class_recall() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::imbalanced_store(dir.path(), 16, 4, SHADE, 32);
        let run = |name: &str, class_weights: ClassWeights| {
            let c = EvalConfig { augment_train: false, epochs: EPOCHS, lr: 0.01, class_weights, ..config(Protocol::Linear) };
            let r = evaluate(testkit::eval_options(&version, dir.path().join(name), c)).unwrap();
            (r.frame.summed_scores.recall[1], r.frame.balanced_accuracy.mean)
        };
        let (plain_recall, plain_balanced) = run("none", ClassWeights::None);
        let (weighted_recall, weighted_balanced) = run("balanced", ClassWeights::Balanced);
        // Measured: recall 0 → 0.75, balanced accuracy 0.50 → 0.88 (3 epochs: the unweighted
        // classifier still leans on the prior).
        assert!(weighted_recall > plain_recall + 0.25, "minority recall {plain_recall} → {weighted_recall}");
        assert!(weighted_balanced > plain_balanced + 0.1, "balanced accuracy {plain_balanced} → {weighted_balanced}");
    }

    #[test]
    fn a_diverging_loss_stops_the_evaluation_naming_fold_seed_and_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::labelled_store(dir.path(), 8, 32);
        // The hostile tester's learning rate: losses stay finite (about 1e31) while every frame
        // ends in one class; and one that overflows f32 weights at the first step. The feature
        // cache (linear, no augmentation) and the images path (augmentation on).
        for (name, augment_train, lr) in [("cached", false, 1e30), ("images", true, 1e30), ("overflow", true, 1e38)] {
            let c = EvalConfig { augment_train, lr, epochs: 3, ..config(Protocol::Linear) };
            let out = dir.path().join(name);
            let err = evaluate(testkit::eval_options(&version, out.clone(), c));
            let err = err.err().unwrap_or_else(|| panic!("{name}: an overflowing learning rate must not give a report")).to_string();
            assert!(err.contains("fold 1") && err.contains("seed 1") && err.contains("epoch") && err.contains("--lr"), "{name}: {err}");
            assert!(!out.join(report::JSON).exists(), "{name}: no report for a diverged fine-tuning");
        }
    }

    #[test]
    fn weights_that_overflowed_stop_the_scoring() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(Protocol::Linear);
        let (store, ds) = opened(dir.path(), 8, &c);
        let ctx = Ctx { store: &store, ds: &ds, c: &c, device: Device::Cpu, init: None, cache: None };
        let model = ctx.model(0).unwrap();
        let at = At { fold: 1, rep: 2, epoch: 7 };
        ctx.predict(&model, &[0, 1], at, "test").unwrap();
        tch::no_grad(|| {
            for (_, mut t) in model.head_vs.variables() {
                let _ = t.fill_(f64::INFINITY);
            }
        });
        let err = ctx.predict(&model, &[0, 1], at, "test").unwrap_err().to_string();
        assert!(err.contains("test loss became NaN at fold 2, seed 3, epoch 7"), "{err}");
    }

    #[test]
    fn the_loss_limit_is_the_smallest_normal_f32_probability() {
        assert!((MAX_LOSS + (f32::MIN_POSITIVE as f64).ln()).abs() < 1e-12, "f32::MIN_POSITIVE is 2^-126");
        let at = At { fold: 0, rep: 0, epoch: 1 };
        assert!(at.finite("training", 3.0f64.ln()).is_ok() && at.finite("training", MAX_LOSS).is_ok());
        assert!(at.finite("training", 88.0).is_err() && at.finite("training", f64::INFINITY).is_err());
    }

    #[test]
    fn batches_never_leave_a_frame_alone() {
        let sizes = |n: usize, b: usize| batches(&(0..n).collect::<Vec<_>>(), b).iter().map(|x| x.len()).collect::<Vec<_>>();
        assert_eq!(sizes(9, 4), vec![4, 5]);
        assert_eq!(sizes(8, 4), vec![4, 4]);
        assert_eq!(sizes(1, 4), vec![1]);
    }
}
