//! `usctl eval --task segment|detect`: k-fold training of a U-Net decoder (model/unet.rs) on the
//! backbone's stages against the store's lesion masks, scored once per fold × seed on the test
//! images: Dice, IoU and boundary F1 per image, COCO AP for the instances the segmentation gives
//! (the rule and the report are in `usctl::eval::dense`). Folds, seeds, initialisation and
//! protocols are classification's (finetune.rs).

use crate::augment;
use crate::finetune::{self, At, EvalOptions, Prepared, RUNS_FILE};
use crate::loss;
use crate::model::init;
use crate::model::resnet::{ResNet18, STAGES};
use crate::model::unet::{self, pyramid, UNetDecoder};
use crate::optim::Adam;
use rand::Rng as _;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Tensor};
use usctl::augment::{draw, AugParams};
use usctl::error::{EvalError, TrainError};
use usctl::eval::config::Protocol;
use usctl::eval::dense::{self, DenseReport, DenseRun, Predicted, Scoring, Summary, OVERLAYS_PER_FOLD, OVERLAY_DIR};
use usctl::eval::mask::Mask;
use usctl::eval::overlay::{self, Marks};
use usctl::{schedule, seed};

/// Images per forward pass when only predicting (the probabilities are upsampled to the store's
/// size, 256 KiB per image at 256 px).
const PREDICT_BATCH: usize = 32;

/// Encoder and decoder, each in its own VarStore (the encoder keeps torchvision's names).
struct SegModel {
    encoder_vs: nn::VarStore,
    decoder_vs: nn::VarStore,
    encoder: ResNet18,
    decoder: UNetDecoder,
    /// Encoder stages before this one stay frozen (see `resnet::STAGES`).
    frozen: usize,
}

impl SegModel {
    fn new(p: &Prepared, backbone_seed: u64, decoder_seed: u64) -> Result<SegModel, TrainError> {
        let encoder_vs = nn::VarStore::new(p.device);
        let encoder = ResNet18::new(&encoder_vs.root());
        match &p.init {
            Some((weights, path)) => {
                crate::checkpoint::load_into(&encoder_vs, weights, path)?;
            }
            None => init::convolutions(&encoder_vs, &mut seed::stream(backbone_seed, "eval-init", &[0])),
        }
        for (name, t) in encoder_vs.variables() {
            if !finetune::tuned(p.c.protocol, &name) {
                let _ = t.set_requires_grad(false);
            }
        }
        let decoder_vs = nn::VarStore::new(p.device);
        let decoder = UNetDecoder::new(&decoder_vs.root());
        unet::init(&decoder_vs, &mut seed::stream(decoder_seed, "eval-init", &[2]));
        let frozen = match p.c.protocol {
            Protocol::Linear => STAGES,
            Protocol::Last3 => STAGES - 1,
            Protocol::All => 0,
        };
        Ok(SegModel { encoder_vs, decoder_vs, encoder, decoder, frozen })
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.encoder_vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        v.extend(self.decoder_vs.variables().into_iter().map(|(k, t)| (format!("decoder.{k}"), t)));
        v
    }

    /// Per-pixel lesion logits at the input's size.
    fn logits(&self, x: &Tensor, train: bool) -> Tensor {
        self.decoder.forward_t(&pyramid(&self.encoder, x, self.frozen, train), train)
    }
}

/// What every fold shares.
struct Ctx<'a> {
    p: &'a Prepared,
    /// Each evaluated frame's true lesions (store row → instance masks) and their union as bytes.
    truth: HashMap<usize, (Vec<Mask>, Vec<u8>)>,
    out: &'a Path,
}

impl Ctx<'_> {
    fn side(&self) -> usize {
        self.p.store.meta.params.size as usize
    }

    /// Frames (store rows) → images and 0/1 masks on the device, augmented by `params`.
    fn batch(&self, rows: &[usize], params: &[AugParams]) -> (Tensor, Tensor) {
        let (s, n) = (self.side() as i64, rows.len() as i64);
        let (mut pixels, mut masks) = (Vec::with_capacity(rows.len() * self.side().pow(2)), Vec::with_capacity(rows.len() * self.side().pow(2)));
        for r in rows {
            pixels.extend_from_slice(self.p.store.frame(*r));
            masks.extend_from_slice(&self.truth[r].1);
        }
        let frames = Tensor::from_slice(&pixels).view([n, 1, s, s]);
        let masks = Tensor::from_slice(&masks).view([n, 1, s, s]);
        augment::images_and_masks(&frames, &masks, params, &self.p.c.augment, self.p.c.image_size, self.p.device)
    }

    /// Lesion probabilities of `rows` at the store's size, row-major per frame.
    fn predict(&self, model: &SegModel, rows: &[usize]) -> Result<Vec<Vec<f32>>, EvalError> {
        let s = self.side() as i64;
        let _guard = tch::no_grad_guard();
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(PREDICT_BATCH) {
            let (x, _) = self.batch(chunk, &vec![AugParams::IDENTITY; chunk.len()]);
            let p = model.logits(&x, false).upsample_bilinear2d([s, s], false, None, None).sigmoid().to_device(Device::Cpu);
            let flat = Vec::<f32>::try_from(p.flatten(0, -1)).map_err(|e| TrainError::Torch(e.to_string()))?;
            out.extend(flat.chunks(self.side().pow(2)).map(|c| c.to_vec()));
        }
        Ok(out)
    }

    /// Draws one test image's overlay and returns its path relative to the report.
    fn overlay(&self, fold: usize, row: usize, path: &str, predicted: &[Predicted]) -> Result<String, EvalError> {
        let side = self.side();
        let truth = &self.truth[&row].0;
        let boxes = |m: &[&Mask]| m.iter().filter_map(|m| m.bbox()).collect::<Vec<_>>();
        let predicted: Vec<&Mask> = predicted.iter().map(|p| &p.mask).collect();
        let marks =
            Marks { truth: truth.iter().collect(), predicted_boxes: boxes(&predicted), truth_boxes: boxes(&truth.iter().collect::<Vec<_>>()), predicted };
        let image = overlay::overlay(self.p.store.frame(row), side, side, &marks);
        let name = format!("{OVERLAY_DIR}/fold{}-{}.png", fold + 1, dense::file_stem(path));
        let file = self.out.join(&name);
        std::fs::create_dir_all(self.out.join(OVERLAY_DIR)).map_err(EvalError::io(self.out.join(OVERLAY_DIR)))?;
        image.save(&file).map_err(|e| EvalError::Report { path: file.clone(), message: e.to_string() })?;
        Ok(name)
    }
}

/// Trains fold `fold` with repetition `rep`'s seed and scores its test images once; draws the
/// overlays of the first repetition.
fn run_fold(ctx: &Ctx, fold: usize, rep: usize, overlays: &mut Vec<String>) -> Result<DenseRun, EvalError> {
    let (p, c) = (ctx.p, &ctx.p.c);
    let started = Instant::now();
    // The same derivation as classification's: a fold × seed gets the same seed in both tasks.
    let run_seed: u64 = seed::stream(c.seed, "eval-run", &[rep as u64, fold as u64]).gen();
    let (train, test) = p.folds.train_test(fold);
    let model = SegModel::new(p, c.seed, run_seed)?;
    let mut adam = Adam::new(model.trainable(), c.weight_decay);
    let mut train_loss = f64::NAN;
    let (training, mut trained) = (Instant::now(), 0usize);
    for epoch in 0..c.epochs {
        let lr = schedule::lr_at(c.lr, epoch as u64, c.epochs as u64, 0);
        let mut rng = seed::stream(run_seed, "eval-epoch", &[epoch as u64]);
        let rows = finetune::epoch_rows(&mut rng, &p.ds, &train, c.frames_per_video);
        let (mut sum, mut n) = (0.0, 0usize);
        for batch in finetune::batches(&rows, c.batch_size) {
            let params: Vec<AugParams> =
                if c.augment_train { batch.iter().map(|_| draw(&mut rng, &c.augment)).collect() } else { vec![AugParams::IDENTITY; batch.len()] };
            let (x, target) = ctx.batch(&batch, &params);
            let l = loss::dice_bce(&model.logits(&x, true), &target)?;
            let value = l.double_value(&[]);
            At { fold, rep, epoch: epoch + 1 }.finite("training", value)?;
            adam.zero_grad();
            l.backward();
            adam.step(lr);
            sum += value * batch.len() as f64;
            n += batch.len();
        }
        train_loss = sum / n.max(1) as f64;
        trained += n;
    }
    let train_images_per_s = Some(trained as f64 / training.elapsed().as_secs_f64());
    let frames = p.ds.frames_of(&test);
    let rows: Vec<usize> = frames.iter().map(|f| f.1).collect();
    let probs = ctx.predict(&model, &rows)?;
    let sample: Vec<usize> =
        if rep == 0 { (0..OVERLAYS_PER_FOLD.min(frames.len())).map(|k| k * frames.len() / OVERLAYS_PER_FOLD.min(frames.len())).collect() } else { vec![] };
    let mut scoring = Scoring::default();
    let side = ctx.side();
    for (k, ((v, row), prob)) in frames.iter().zip(&probs).enumerate() {
        let video = &p.ds.videos[*v];
        let path = if video.frames == 1 { video.path.clone() } else { format!("{}#{}", video.path, row - video.first_row) };
        let found = scoring.add(&path, &p.ds.classes[video.class], prob, side, side, &ctx.truth[row].0);
        if sample.contains(&k) {
            overlays.push(ctx.overlay(fold, *row, &path, &found)?);
        }
    }
    let (semantic, boxes, masks) = scoring.finish().map_err(|e| EvalError::Report { path: ctx.out.to_path_buf(), message: e.to_string() })?;
    Ok(DenseRun {
        fold,
        rep,
        train_images: p.ds.frames_of(&train).len(),
        test_images: frames.len(),
        epochs_trained: c.epochs,
        train_loss,
        semantic,
        boxes,
        masks,
        train_images_per_s,
        seconds: started.elapsed().as_secs_f64(),
        images: scoring.images,
    })
}

/// Each evaluated frame's true lesion masks and their union.
fn truth_of(p: &Prepared) -> HashMap<usize, (Vec<Mask>, Vec<u8>)> {
    let side = p.store.meta.params.size as usize;
    let all: Vec<usize> = (0..p.ds.videos.len()).collect();
    p.ds.frames_of(&all)
        .into_iter()
        .map(|(_, row)| {
            let masks: Vec<Mask> = p.store.masks_of(row).unwrap_or_default().iter().map(|i| Mask::from_bytes(i.mask, side, side)).collect();
            let union = Mask::union(side, side, &masks).bits.iter().map(|&b| u8::from(b)).collect();
            (row, (masks, union))
        })
        .collect()
}

/// Runs a segment or detect evaluation and writes its directory: eval.toml, folds.json,
/// runs.jsonl, report.json, report.md and overlays/.
pub fn evaluate(o: EvalOptions) -> Result<DenseReport, EvalError> {
    let started = Instant::now();
    let p = finetune::prepare(&o)?;
    let ctx = Ctx { p: &p, truth: truth_of(&p), out: &o.out };
    let c = &p.c;
    let runs_path = o.out.join(RUNS_FILE);
    let mut runs_file = std::fs::File::create(&runs_path).map_err(EvalError::io(&runs_path))?;
    let (mut runs, mut overlays) = (Vec::new(), Vec::new());
    for rep in 0..c.seeds {
        for fold in 0..p.folds.k {
            let r = run_fold(&ctx, fold, rep, &mut overlays)?;
            writeln!(runs_file, "{}", serde_json::to_string(&r).unwrap_or_default()).map_err(EvalError::io(&runs_path))?;
            if o.progress {
                eprintln!("fold {}/{} seed {}/{}: {}", fold + 1, p.folds.k, rep + 1, c.seeds, r.line());
            }
            runs.push(r);
        }
    }
    let label = finetune::label_of(&o);
    let images = ctx.truth.len();
    let report = DenseReport {
        format: dense::FORMAT.into(),
        format_version: dense::FORMAT_VERSION,
        task: c.task,
        title: dense::title(c.task, &label, c.protocol, &p.store.meta.dataset),
        label,
        init: o.init.as_ref().map_or("random".into(), |p| p.display().to_string()),
        init_sha256: p.init_sha256.clone(),
        protocol: c.protocol,
        store: finetune::store_ref(&o.store, &p.store),
        frame_size: ctx.side(),
        images,
        lesions: ctx.truth.values().map(|t| t.0.len()).sum(),
        not_annotated: p.not_annotated,
        classes: p.ds.classes.clone(),
        duplicates: p.duplicates.clone(),
        excluded: p.excluded.clone(),
        config: c.clone(),
        device: format!("{:?}", p.device),
        git_commit: option_env!("USCTL_GIT_COMMIT").unwrap_or("unknown").into(),
        command_line: o.command_line.clone(),
        seconds: started.elapsed().as_secs_f64(),
        summary: Summary::of(&runs),
        overlays,
        runs,
    };
    report.write(&o.out)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use usctl::eval::config::{EvalConfig, Task};

    fn options(dir: &Path, version: &Path, name: &str, c: EvalConfig) -> EvalOptions {
        testkit::eval_options(version, dir.join(name), c)
    }

    fn config(protocol: Protocol) -> EvalConfig {
        EvalConfig { task: Task::Segment, epochs: 1, ..testkit::eval_config(protocol) }
    }

    #[test]
    fn last3_trains_only_layer4_1_and_the_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::masked_store(dir.path(), 8, 32);
        let p = finetune::prepare(&options(dir.path(), &version, "ev", config(Protocol::Last3))).unwrap();
        let ctx = Ctx { p: &p, truth: truth_of(&p), out: dir.path() };
        let model = SegModel::new(&p, 0, 1).unwrap();
        let snapshot = |vs: &nn::VarStore| -> Vec<(String, Tensor)> { vs.variables().into_iter().map(|(k, t)| (k, t.copy())).collect() };
        let (encoder_before, decoder_before) = (snapshot(&model.encoder_vs), snapshot(&model.decoder_vs));
        let mut adam = Adam::new(model.trainable(), 0.0);
        let rows: Vec<usize> = (0..4).collect();
        let (x, t) = ctx.batch(&rows, &[AugParams::IDENTITY; 4]);
        assert!(t.sum(tch::Kind::Float).double_value(&[]) > 0.0, "the discs are in the targets");
        adam.zero_grad();
        loss::dice_bce(&model.logits(&x, true), &t).unwrap().backward();
        adam.step(0.01);
        let changed = |vs: &nn::VarStore, before: &[(String, Tensor)]| -> Vec<String> {
            let now = vs.variables();
            let mut v: Vec<String> = before.iter().filter(|(k, t)| !now[k].equal(t)).map(|(k, _)| k.clone()).collect();
            v.sort();
            v
        };
        let encoder = changed(&model.encoder_vs, &encoder_before);
        assert!(!encoder.is_empty() && encoder.iter().all(|k| k.starts_with("layer4.1.")), "{encoder:?}");
        assert!(encoder.contains(&"layer4.1.bn2.running_mean".to_string()), "layer4.1 runs in train mode: {encoder:?}");
        assert_eq!(changed(&model.decoder_vs, &decoder_before).len(), decoder_before.len(), "every decoder tensor trains");
    }

    #[test]
    fn a_frozen_encoder_learns_the_discs_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let version = testkit::masked_store(dir.path(), 24, 32);
        let c = EvalConfig { epochs: 12, lr: 0.01, augment_train: false, ..config(Protocol::Linear) };
        let a = evaluate(options(dir.path(), &version, "a", c.clone())).unwrap();
        let b = evaluate(options(dir.path(), &version, "b", c.clone())).unwrap();
        let scores = |r: &DenseReport| r.runs.iter().map(|r| (r.semantic.clone(), r.masks.ap)).collect::<Vec<_>>();
        assert_eq!(scores(&a), scores(&b), "same seed, same numbers");
        let dice = a.summary.dice.unwrap();
        assert!(dice.mean > 0.6, "Dice {dice}");
        let ap50 = a.summary.mask_ap50.unwrap();
        assert!(ap50.mean > 0.4, "mask AP50 {ap50}");
        assert_eq!((a.images, a.lesions, a.runs.len()), (24, 24, 2));
        assert_eq!(a.overlays.len(), 2 * OVERLAYS_PER_FOLD);
        assert!(a.overlays.iter().all(|o| dir.path().join("a").join(o).is_file()));
        // A lower learning rate for one epoch learns less: the scores measure the model.
        let short = evaluate(options(dir.path(), &version, "short", EvalConfig { epochs: 1, lr: 1e-4, ..c })).unwrap();
        assert!(short.summary.dice.unwrap().mean < dice.mean, "{:?} vs {dice}", short.summary.dice);
    }
}
