//! Segmentation and detection evaluation (`usctl eval --task segment|detect`), the parts that
//! need no libtorch: scoring one image's predicted lesion probabilities against its true masks,
//! the rule that turns a segmentation into scored instances, a fold run's scores, and the report
//! (docs/eval.md, "Segmentation and detection"; dense report format 1).
//!
//! Instance rule: pixels with probability > 0.5 form the predicted mask; each 8-connected
//! component of it is one predicted lesion, scored by the mean probability over its pixels, with
//! the component's bounding box as its box. Everything is scored at the store's resolution, on the
//! whole stored frame (letterbox padding included, where no lesion is ever true).

use super::coco::{self, CocoSummary, Det, Gt, IouKind, Shape};
use super::config::{EvalConfig, Protocol, Task};
use super::mask::Mask;
use super::report::{write_atomic, Duplicates, Excluded, MeanSd, StoreRef};
use super::seg::{self, SegScores};
use crate::error::EvalError;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

pub const FORMAT: &str = "usctl-dense-eval-report";
pub const FORMAT_VERSION: u32 = 1;
/// A pixel is predicted lesion when its probability is above this.
pub const THRESHOLD: f32 = 0.5;
/// Overlays are drawn for this many test images of each fold (first seed), evenly spaced over
/// the fold's test images in dataset order.
pub const OVERLAYS_PER_FOLD: usize = 4;
pub const OVERLAY_DIR: &str = "overlays";
/// COCO's single category: every lesion, whatever the image's class.
const LESION: u32 = 1;

/// Boundary F1's tolerance for an `size`-pixel frame: 0.75 % of its diagonal, as the DAVIS
/// benchmark's F measure uses (1.9 px at 256 px).
pub fn boundary_tolerance(size: usize) -> f64 {
    0.0075 * std::f64::consts::SQRT_2 * size as f64
}

/// A predicted lesion: its pixels and score.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicted {
    pub mask: Mask,
    pub score: f64,
}

/// The predicted mask (probability > `THRESHOLD`) and its instances by the module's rule, largest
/// score first. `prob`: `w × h` probabilities, row-major.
pub fn instances(prob: &[f32], w: usize, h: usize) -> (Mask, Vec<Predicted>) {
    assert_eq!(prob.len(), w * h, "{} probabilities are not a {w}×{h} map", prob.len());
    let mask = Mask { w, h, bits: prob.iter().map(|&p| p > THRESHOLD).collect() };
    let mut out: Vec<Predicted> = mask
        .components()
        .into_iter()
        .map(|c| {
            let sum: f64 = c.bits.iter().zip(prob).filter(|(b, _)| **b).map(|(_, &p)| p as f64).sum();
            let score = sum / c.area() as f64;
            Predicted { mask: c, score }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    (mask, out)
}

/// One test image's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageResult {
    pub path: String,
    pub class: String,
    /// True lesions (mask files with lesion pixels).
    pub lesions: usize,
    /// Predicted lesions (components).
    pub predicted: usize,
    pub lesion_pixels: usize,
    pub predicted_pixels: usize,
    /// Predicted mask against the union of the true ones.
    pub scores: SegScores,
}

/// Semantic scores of a run: means over the test images that have a lesion; images without one
/// count only in `false_alarm`, the share of them where any lesion pixel was predicted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Semantic {
    pub lesion_images: usize,
    pub lesion_free_images: usize,
    pub dice: Option<f64>,
    pub iou: Option<f64>,
    pub boundary_f1: Option<f64>,
    pub false_alarm: Option<f64>,
}

/// What a run's test images add up to: per-image results and COCO inputs.
#[derive(Debug, Default)]
pub struct Scoring {
    pub images: Vec<ImageResult>,
    box_gts: Vec<Gt>,
    box_dets: Vec<Det>,
    mask_gts: Vec<Gt>,
    mask_dets: Vec<Det>,
}

impl Scoring {
    /// Scores one image: `prob` its predicted probabilities (`w × h`), `truth` its true lesions.
    /// Returns the predicted instances (for overlays).
    pub fn add(&mut self, path: &str, class: &str, prob: &[f32], w: usize, h: usize, truth: &[Mask]) -> Vec<Predicted> {
        let image = self.images.len();
        let (predicted, found) = instances(prob, w, h);
        let union = Mask::union(w, h, truth);
        self.images.push(ImageResult {
            path: path.into(),
            class: class.into(),
            lesions: truth.len(),
            predicted: found.len(),
            lesion_pixels: union.area(),
            predicted_pixels: predicted.area(),
            scores: seg::scores(&predicted, &union, boundary_tolerance(w.max(h))),
        });
        for t in truth {
            let gt = |shape| Gt { image, category: LESION, shape, crowd: false };
            self.box_gts.push(gt(Shape::Box(box_of(t))));
            self.mask_gts.push(gt(Shape::Mask(t.clone())));
        }
        for p in &found {
            let det = |shape| Det { image, category: LESION, score: p.score, shape };
            self.box_dets.push(det(Shape::Box(box_of(&p.mask))));
            self.mask_dets.push(det(Shape::Mask(p.mask.clone())));
        }
        found
    }

    /// The run's semantic scores and its box and mask AP.
    pub fn finish(&self) -> Result<(Semantic, CocoSummary, CocoSummary), coco::CocoError> {
        let (with, without): (Vec<&ImageResult>, Vec<&ImageResult>) = self.images.iter().partition(|i| i.lesion_pixels > 0);
        let mean = |f: fn(&SegScores) -> f64| (!with.is_empty()).then(|| with.iter().map(|i| f(&i.scores)).sum::<f64>() / with.len() as f64);
        let semantic = Semantic {
            lesion_images: with.len(),
            lesion_free_images: without.len(),
            dice: mean(|s| s.dice),
            iou: mean(|s| s.iou),
            boundary_f1: mean(|s| s.boundary_f1),
            false_alarm: (!without.is_empty()).then(|| without.iter().filter(|i| i.predicted_pixels > 0).count() as f64 / without.len() as f64),
        };
        let boxes = coco::evaluate(&self.box_gts, &self.box_dets, IouKind::Box)?;
        let masks = coco::evaluate(&self.mask_gts, &self.mask_dets, IouKind::Mask)?;
        Ok((semantic, boxes, masks))
    }
}

/// COCO's `[x, y, w, h]` of a mask's pixels (an empty mask: all zero).
fn box_of(m: &Mask) -> [f64; 4] {
    m.bbox().map_or([0.0; 4], |b| b.map(|v| v as f64))
}

/// One fold × seed: trained on the fold's training images, scored once on its test images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseRun {
    pub fold: usize,
    pub rep: usize,
    pub train_images: usize,
    pub test_images: usize,
    pub epochs_trained: u32,
    /// Mean loss (BCE + soft Dice) over the last epoch's training batches.
    pub train_loss: f64,
    pub semantic: Semantic,
    pub boxes: CocoSummary,
    pub masks: CocoSummary,
    pub seconds: f64,
    pub images: Vec<ImageResult>,
}

/// Mean ± sd over the runs where the value exists (`n` says how many).
fn over(runs: &[DenseRun], f: impl Fn(&DenseRun) -> Option<f64>) -> Option<MeanSd> {
    let v: Vec<f64> = runs.iter().filter_map(f).collect();
    (!v.is_empty()).then(|| MeanSd::of(&v))
}

/// The headline numbers: mean ± sd over folds × seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub dice: Option<MeanSd>,
    pub iou: Option<MeanSd>,
    pub boundary_f1: Option<MeanSd>,
    pub false_alarm: Option<MeanSd>,
    pub box_ap: Option<MeanSd>,
    pub box_ap50: Option<MeanSd>,
    pub box_ap75: Option<MeanSd>,
    pub mask_ap: Option<MeanSd>,
    pub mask_ap50: Option<MeanSd>,
    pub mask_ap75: Option<MeanSd>,
}

impl Summary {
    pub fn of(runs: &[DenseRun]) -> Summary {
        Summary {
            dice: over(runs, |r| r.semantic.dice),
            iou: over(runs, |r| r.semantic.iou),
            boundary_f1: over(runs, |r| r.semantic.boundary_f1),
            false_alarm: over(runs, |r| r.semantic.false_alarm),
            box_ap: over(runs, |r| r.boxes.ap),
            box_ap50: over(runs, |r| r.boxes.ap50),
            box_ap75: over(runs, |r| r.boxes.ap75),
            mask_ap: over(runs, |r| r.masks.ap),
            mask_ap50: over(runs, |r| r.masks.ap50),
            mask_ap75: over(runs, |r| r.masks.ap75),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseReport {
    pub format: String,
    pub format_version: u32,
    pub task: Task,
    pub title: String,
    pub label: String,
    pub init: String,
    pub init_sha256: Option<String>,
    pub protocol: Protocol,
    pub store: StoreRef,
    /// The stored frames' side: masks are scored at this resolution.
    pub frame_size: usize,
    /// Images evaluated (every frame of the kept videos), and their true lesions.
    pub images: usize,
    pub lesions: usize,
    /// Labelled videos left out because a frame of theirs has no masks in the store.
    pub not_annotated: usize,
    pub classes: Vec<String>,
    pub duplicates: Duplicates,
    pub excluded: Option<Excluded>,
    pub config: EvalConfig,
    pub device: String,
    pub git_commit: String,
    pub command_line: Vec<String>,
    pub seconds: f64,
    pub summary: Summary,
    /// Overlay PNGs, relative to the report's folder.
    pub overlays: Vec<String>,
    pub runs: Vec<DenseRun>,
}

/// What the protocol trains, in a dense task's words.
pub fn protocol_text(p: Protocol) -> &'static str {
    match p {
        Protocol::Linear => "frozen encoder, decoder trained",
        Protocol::Last3 => "encoder's layer4.1 and the decoder trained",
        Protocol::All => "full fine-tuning (encoder and decoder)",
    }
}

pub fn title(task: Task, label: &str, protocol: Protocol, dataset: &str) -> String {
    let what = if task == Task::Detect { "lesion detection" } else { "lesion segmentation" };
    format!("{label} · {what} · {} · {dataset}", protocol_text(protocol))
}

fn cell(m: Option<MeanSd>) -> String {
    m.map_or("–".into(), |m| format!("{m} (n {})", m.n))
}

fn opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

impl DenseReport {
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let s = &self.summary;
        let mut o = String::new();
        let _ = writeln!(o, "# {}\n", self.title);
        let sha = self.init_sha256.as_ref().map_or(String::new(), |h| format!(", sha256 {}", &h[..16.min(h.len())]));
        let _ = writeln!(o, "- Initialisation: `{}` ({}{sha})", self.init, self.label);
        let _ = writeln!(o, "- Model: the ResNet-18 encoder and a U-Net decoder on its stages; {} (`{}`)", protocol_text(self.protocol), self.protocol.name());
        let _ = writeln!(o, "- Store: `{}`, dataset {}, version {}", self.store.dir, self.store.dataset, self.store.version_id);
        let _ = writeln!(
            o,
            "- Data: {} images with masks ({} lesions; classes {}); {} labelled videos without masks left out",
            self.images,
            self.lesions,
            self.classes.join(", "),
            self.not_annotated
        );
        if let Some(x) = &self.excluded {
            let _ = writeln!(o, "- Dropped for a near-duplicate in `{}`: {} images; they are not evaluated", x.store.dir, x.dropped.len());
        }
        let d = &self.duplicates;
        let grouping = if d.grouped { "kept within one fold each" } else { "NOT grouped (duplicate_groups off): they may straddle train and test" };
        let _ = writeln!(
            o,
            "- {}-fold cross-validation by image (by patient where known), stratified by class; {} near-duplicate clusters joining {} images {grouping}; {} seed(s): {} runs. Folds: `folds.json`",
            c.folds,
            d.clusters,
            d.videos,
            c.seeds,
            self.runs.len()
        );
        let _ = writeln!(
            o,
            "- Training: {} epochs, batch {}, {} px, Adam lr {} (cosine), weight decay {}, loss BCE + soft Dice; the model after the last epoch is scored once\n",
            c.epochs,
            c.batch_size,
            c.image_size,
            c.lr,
            c.weight_decay
        );
        let seg_rows = [("Dice", s.dice), ("IoU", s.iou), ("boundary F1", s.boundary_f1), ("false alarm (lesion-free images)", s.false_alarm)];
        let ap_rows = [
            ("box AP", s.box_ap),
            ("box AP50", s.box_ap50),
            ("box AP75", s.box_ap75),
            ("mask AP", s.mask_ap),
            ("mask AP50", s.mask_ap50),
            ("mask AP75", s.mask_ap75),
        ];
        let mut rows: Vec<(&str, Option<MeanSd>)> = Vec::new();
        if self.task == Task::Detect {
            rows.extend(ap_rows);
            rows.extend(seg_rows);
        } else {
            rows.extend(seg_rows);
            rows.extend(ap_rows);
        }
        let _ = writeln!(o, "| metric (mean ± sd over runs) | value |\n|---|---:|");
        for (name, m) in rows {
            let _ = writeln!(o, "| {name} | {} |", cell(m));
        }
        let _ = writeln!(
            o,
            "\nDice, IoU and boundary F1 (tolerance {:.1} px) are per image against the union of its true masks, averaged over the test images with a lesion. \
             Instances: each 8-connected component of probability > {THRESHOLD} is one lesion, scored by its mean probability; COCO AP, AP50, AP75 over all test images, one category.\n",
            boundary_tolerance(self.frame_size)
        );
        let _ = writeln!(
            o,
            "| fold | seed | train | test | Dice | IoU | BF1 | box AP | mask AP | loss | s |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &self.runs {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.0} |",
                r.fold + 1,
                r.rep + 1,
                r.train_images,
                r.test_images,
                opt(r.semantic.dice),
                opt(r.semantic.iou),
                opt(r.semantic.boundary_f1),
                opt(r.boxes.ap),
                opt(r.masks.ap),
                r.train_loss,
                r.seconds
            );
        }
        if !self.overlays.is_empty() {
            let _ = writeln!(o, "\n## Overlays\n\nTrue masks and boxes in green, predicted in red, yellow where they coincide (first seed).\n");
            for p in &self.overlays {
                let _ = writeln!(o, "![{p}]({p})");
            }
        }
        let _ = writeln!(o, "\nDevice {}, {:.0} s, git {}. Command: `{}`", self.device, self.seconds, self.git_commit, self.command_line.join(" "));
        o
    }

    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| EvalError::Report { path: dir.join(super::report::JSON), message: e.to_string() })?;
        write_atomic(&dir.join(super::report::JSON), &json)?;
        write_atomic(&dir.join(super::report::MARKDOWN), self.markdown().as_bytes())
    }
}
