//! Segmentation and detection evaluation (`usctl eval --task segment|detect`), the parts that
//! need no libtorch: scoring one image's predicted lesion probabilities against its true masks,
//! the rule that turns a segmentation into scored instances, a fold run's scores, and the report
//! (docs/eval.md, "Segmentation and detection"; dense report format 2).
//!
//! Instance rule: pixels with probability > 0.5 form the predicted mask; each 8-connected
//! component of it is one predicted lesion, scored by the mean probability over its pixels, with
//! the component's bounding box as its box. Everything is scored at the store's resolution, on the
//! whole stored frame (letterbox padding included, where no lesion is ever true).

use super::coco::{self, CocoSummary, Det, Gt, IouKind, Shape};
use super::config::{EvalConfig, Protocol, Task};
use super::mask::Mask;
use super::paired::{self, Paired};
use super::report::{write_atomic, Duplicates, Excluded, MeanSd, StoreRef};
use super::seg::{self, SegScores};
use crate::error::EvalError;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "usctl-dense-eval-report";
/// 2: training images/s per run and in the summary (version 1 reports read with them absent).
pub const FORMAT_VERSION: u32 = 2;
/// A pixel is predicted lesion when its probability is above this.
pub const THRESHOLD: f32 = 0.5;
/// Overlays are drawn for this many test images of each fold (first seed), evenly spaced over
/// the fold's test images in dataset order.
pub const OVERLAYS_PER_FOLD: usize = 4;
pub const OVERLAY_DIR: &str = "overlays";
/// COCO's single category: every lesion, whatever the image's class.
const LESION: u32 = 1;

/// Boundary F1's tolerance for an `size`-pixel frame: 0.75 % of its diagonal, as the DAVIS
/// benchmark's F measure uses (2.7 px at 256 px).
pub fn boundary_tolerance(size: usize) -> f64 {
    0.0075 * std::f64::consts::SQRT_2 * size as f64
}

/// A file name for an image's overlay: its stored path without the extension, every run of
/// characters other than ASCII letters and digits as one `-` ("benign/images/benign (10).png" →
/// "benign-images-benign-10").
pub fn file_stem(path: &str) -> String {
    let stem = path.rsplit_once('.').filter(|(_, ext)| ext.chars().all(|c| c.is_ascii_alphanumeric())).map_or(path, |(s, _)| s);
    let mut out = String::new();
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
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
    /// Training images per second (augmentation, forward, loss, backward, Adam), all epochs; none
    /// in version 1 reports.
    #[serde(default)]
    pub train_images_per_s: Option<f64>,
    pub seconds: f64,
    pub images: Vec<ImageResult>,
}

impl DenseRun {
    /// One line for progress output.
    pub fn line(&self) -> String {
        let s = &self.semantic;
        format!(
            "Dice {}, IoU {}, boundary F1 {}, box AP {}, mask AP {} ({} test images, loss {:.3}, {} training images/s) {:.1} s",
            opt(s.dice),
            opt(s.iou),
            opt(s.boundary_f1),
            opt(self.boxes.ap),
            opt(self.masks.ap),
            self.test_images,
            self.train_loss,
            self.train_images_per_s.map_or("–".into(), |v| format!("{v:.1}")),
            self.seconds
        )
    }
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
    #[serde(default)]
    pub train_images_per_s: Option<MeanSd>,
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
            train_images_per_s: over(runs, |r| r.train_images_per_s),
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

impl DenseReport {
    /// Reads report.json of a segment or detect evaluation (its directory or the file).
    pub fn read(path: &Path) -> Result<DenseReport, EvalError> {
        let file = if path.is_dir() { path.join(super::report::JSON) } else { path.to_path_buf() };
        let bytes = std::fs::read(&file).map_err(EvalError::io(&file))?;
        let fail = |message: String| EvalError::Report { path: file.clone(), message };
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| fail(format!("not JSON ({e}); give the directory `usctl eval --out` wrote")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT)
            || !v.get("format_version").and_then(|f| f.as_u64()).is_some_and(|n| (1..=FORMAT_VERSION as u64).contains(&n))
        {
            return Err(fail(format!(
                "not a {FORMAT} file of version 1 to {FORMAT_VERSION}; give the directory `usctl eval --task segment|detect --out` wrote"
            )));
        }
        serde_json::from_value(v).map_err(|e| fail(e.to_string()))
    }
}

/// Whether the report.json at `path` (or in that directory) is a segment/detect report.
pub fn is_dense_report(path: &Path) -> bool {
    let file = if path.is_dir() { path.join(super::report::JSON) } else { path.to_path_buf() };
    let format = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).and_then(|v| v.get("format").cloned());
    format.and_then(|f| f.as_str().map(|f| f == FORMAT)).unwrap_or(false)
}

/// A run's value of one metric (None where the run has no such value).
type Metric = fn(&DenseRun) -> Option<f64>;

/// The metrics `usctl report` pairs, by name.
const PAIRED: [(&str, Metric); 5] = [
    ("Dice", |r| r.semantic.dice),
    ("IoU", |r| r.semantic.iou),
    ("boundary F1", |r| r.semantic.boundary_f1),
    ("box AP", |r| r.boxes.ap),
    ("mask AP", |r| r.masks.ap),
];

/// Why two reports cannot be paired run by run, or None when every (fold, seed) of each has the
/// same test images in the other.
fn unpairable(a: &DenseReport, b: &DenseReport) -> Option<String> {
    if a.store.version_id != b.store.version_id {
        return Some(format!("different store versions ({} and {})", a.store.version_id, b.store.version_id));
    }
    let key = |r: &DenseReport| -> Vec<(usize, usize, Vec<String>)> {
        let mut v: Vec<_> = r.runs.iter().map(|x| (x.fold, x.rep, x.images.iter().map(|i| i.path.clone()).collect())).collect();
        v.sort();
        v
    };
    (key(a) != key(b)).then(|| "their folds or seeds differ (run both with the same seed, folds and seeds, or --folds-file)".into())
}

/// b against a, metric by metric, over their (fold, seed) pairs.
pub fn paired(a: &DenseReport, b: &DenseReport) -> Result<Vec<(&'static str, Paired)>, String> {
    if let Some(why) = unpairable(a, b) {
        return Err(why);
    }
    let values = |r: &DenseReport, f: Metric| -> Vec<((usize, usize), f64)> { r.runs.iter().filter_map(|x| f(x).map(|v| ((x.fold, x.rep), v))).collect() };
    Ok(PAIRED.iter().filter_map(|(name, f)| paired::by_key(&values(a, *f), &values(b, *f), a.config.seed).map(|p| (*name, p))).collect())
}

/// Several segment/detect reports side by side, then each report paired with the first report
/// of its protocol (the baseline, e.g. random initialisation).
pub fn compare(reports: &[(PathBuf, DenseReport)]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| initialisation | protocol | epochs, px | Dice | IoU | boundary F1 | box AP | box AP50 | box AP75 | mask AP | mask AP50 | mask AP75 | runs | report |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---:|---|");
    for (dir, r) in reports {
        let s = &r.summary;
        let m = |v: Option<MeanSd>| v.map_or("–".into(), |v| v.to_string());
        let _ = writeln!(
            o,
            "| {} | {} | {}, {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | `{}` |",
            r.label,
            protocol_text(r.protocol),
            r.config.epochs,
            r.config.image_size,
            m(s.dice),
            m(s.iou),
            m(s.boundary_f1),
            m(s.box_ap),
            m(s.box_ap50),
            m(s.box_ap75),
            m(s.mask_ap),
            m(s.mask_ap50),
            m(s.mask_ap75),
            r.runs.len(),
            dir.display()
        );
    }
    let lines = paired::against_baselines(
        reports,
        |(_, r)| r.protocol,
        |(_, a), (_, b)| Ok(paired(a, b)?.iter().map(|(name, p)| format!("{}: {}", protocol_text(b.protocol), p.sentence(&b.label, &a.label, name))).collect()),
        |(_, b), (_, a), why| format!("{} ({}) vs {} ({}): not paired: {why}", b.label, protocol_text(b.protocol), a.label, protocol_text(a.protocol)),
    );
    if !lines.is_empty() {
        let _ = writeln!(
            o,
            "\nPaired with the first report of the same protocol, over identical folds and seeds: mean difference, bootstrap 95 % interval ({} resamples), runs ahead:\n",
            paired::RESAMPLES
        );
        for l in lines {
            let _ = writeln!(o, "- {l}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::report::{Duplicates, StoreRef};

    /// A 6×4 probability map with two blobs: a 2×2 at (0, 0) of 0.9 and 0.7, a lone 0.6 at (4, 3);
    /// a 0.5 at (3, 0) is not above the threshold.
    fn map() -> Vec<f32> {
        let mut p = vec![0.1f32; 24];
        for (x, y, v) in [(0, 0, 0.9), (1, 0, 0.9), (0, 1, 0.7), (1, 1, 0.7), (4, 3, 0.6), (3, 0, 0.5)] {
            p[y * 6 + x] = v;
        }
        p
    }

    #[test]
    fn overlay_names_are_plain() {
        assert_eq!(file_stem("benign/images/benign (10).png"), "benign-images-benign-10");
        assert_eq!(file_stem("a.b/c"), "a-b-c");
        assert_eq!(file_stem("v.mp4#3"), "v-mp4-3");
    }

    #[test]
    fn instances_are_components_scored_by_their_mean_probability() {
        let (mask, found) = instances(&map(), 6, 4);
        assert_eq!(mask.area(), 5);
        assert_eq!(found.len(), 2);
        assert!((found[0].score - 0.8).abs() < 1e-6 && found[0].mask.bbox() == Some([0, 0, 2, 2]), "{:?}", found[0]);
        assert!((found[1].score - 0.6).abs() < 1e-6 && found[1].mask.bbox() == Some([4, 3, 1, 1]));
    }

    #[test]
    fn a_run_scores_images_and_instances() {
        let mut s = Scoring::default();
        // Image 0: the truth is the 2×2 blob; the lone pixel is a false positive with a lower
        // score, so AP at every threshold is 1 (the true one ranks first).
        let truth = Mask { w: 6, h: 4, bits: (0..24).map(|i| i % 6 < 2 && i / 6 < 2).collect() };
        let found = s.add("a.png", "benign", &map(), 6, 4, std::slice::from_ref(&truth));
        assert_eq!(found.len(), 2);
        // Image 1: no lesion and nothing predicted.
        s.add("b.png", "normal", &[0.2; 24], 6, 4, &[]);
        let (sem, boxes, masks) = s.finish().unwrap();
        assert!((boundary_tolerance(256) - 2.7153).abs() < 1e-4, "0.75 % of a 256-px frame's diagonal");
        assert_eq!((sem.lesion_images, sem.lesion_free_images, sem.false_alarm), (1, 1, Some(0.0)));
        assert!((sem.dice.unwrap() - 8.0 / 9.0).abs() < 1e-12, "2·4 / (5 + 4)");
        assert!((sem.iou.unwrap() - 0.8).abs() < 1e-12);
        for ap in [boxes.ap, masks.ap, masks.ap50] {
            assert!((ap.unwrap() - 1.0).abs() < 1e-12, "{boxes:?} {masks:?}");
        }
        assert_eq!(s.images[0].predicted, 2);
        // The false positive scored above the true one: precision at full recall drops to 1/2.
        let mut t = Scoring::default();
        let mut swapped = map();
        swapped[3 * 6 + 4] = 0.95;
        t.add("a.png", "benign", &swapped, 6, 4, &[truth]);
        let (_, boxes, _) = t.finish().unwrap();
        assert!((boxes.ap50.unwrap() - 0.5).abs() < 1e-12, "{boxes:?}");
    }

    fn report(label: &str, dice: &[f64], version: &str) -> DenseReport {
        let coco = |ap: f64| CocoSummary { ap: Some(ap), ap50: Some(ap), ap75: Some(ap), ap_small: None, ap_medium: None, ap_large: None, ar100: None };
        let runs: Vec<DenseRun> = dice
            .iter()
            .enumerate()
            .map(|(k, &d)| DenseRun {
                fold: k % 2,
                rep: k / 2,
                train_images: 3,
                test_images: 1,
                epochs_trained: 1,
                train_loss: 0.5,
                semantic: Semantic { lesion_images: 1, lesion_free_images: 0, dice: Some(d), iou: Some(d), boundary_f1: Some(d), false_alarm: None },
                boxes: coco(d / 2.0),
                masks: coco(d / 2.0),
                train_images_per_s: Some(10.0),
                seconds: 1.0,
                images: vec![ImageResult {
                    path: format!("img{}.png", k % 2),
                    class: "x".into(),
                    lesions: 1,
                    predicted: 1,
                    lesion_pixels: 4,
                    predicted_pixels: 4,
                    scores: SegScores { dice: d, iou: d, boundary_f1: d },
                }],
            })
            .collect();
        DenseReport {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            task: Task::Segment,
            title: label.into(),
            label: label.into(),
            init: label.into(),
            init_sha256: None,
            protocol: Protocol::Linear,
            store: StoreRef { dir: "s".into(), dataset: "d".into(), version_id: version.into() },
            frame_size: 32,
            images: 2,
            lesions: 2,
            not_annotated: 0,
            classes: vec!["x".into()],
            duplicates: Duplicates { grouped: true, rule: Default::default(), clusters: 0, videos: 0 },
            excluded: None,
            config: EvalConfig { task: Task::Segment, ..Default::default() },
            device: "Cpu".into(),
            git_commit: "x".into(),
            command_line: vec![],
            seconds: 1.0,
            summary: Summary::of(&runs),
            overlays: vec![],
            runs,
        }
    }

    #[test]
    fn reports_compare_side_by_side_and_pair_run_by_run() {
        let random = report("random", &[0.5, 0.6, 0.55, 0.45], "v1");
        let better = report("spg", &[0.6, 0.7, 0.65, 0.55], "v1");
        let mixed = report("mixed", &[0.6, 0.5, 0.6, 0.4], "v1");
        let t = compare(&[("r".into(), random.clone()), ("s".into(), better.clone()), ("m".into(), mixed)]);
        assert!(t.contains("| random | frozen encoder, decoder trained | 100, 224 | 0.525 ± 0.065 |"), "{t}");
        assert!(t.contains("spg is ahead of random in Dice by +0.100 [+0.100, +0.100], higher in 4 of 4 runs"), "{t}");
        assert!(t.contains("spg is ahead of random in mask AP by +0.050"), "{t}");
        assert!(t.contains("mixed vs random, Dice: no difference detected"), "{t}");
        let other = report("other", &[0.6, 0.7, 0.65, 0.55], "v2");
        assert!(paired(&random, &other).unwrap_err().contains("different store versions"));
        let t = compare(&[("r".into(), random.clone()), ("o".into(), other)]);
        assert!(
            t.contains("- other (frozen encoder, decoder trained) vs random (frozen encoder, decoder trained): not paired: different store versions"),
            "{t}"
        );
        let mut shuffled = better.clone();
        shuffled.runs[0].images[0].path = "elsewhere.png".into();
        assert!(paired(&random, &shuffled).unwrap_err().contains("folds or seeds differ"));
        let dir = tempfile::tempdir().unwrap();
        random.write(dir.path()).unwrap();
        assert!(is_dense_report(dir.path()));
        assert_eq!(DenseReport::read(dir.path()).unwrap(), random);
        // Version 1: no training images/s.
        let mut v1 = serde_json::to_value(&random).unwrap();
        v1["format_version"] = 1.into();
        v1["summary"].as_object_mut().unwrap().remove("train_images_per_s");
        for run in v1["runs"].as_array_mut().unwrap() {
            run.as_object_mut().unwrap().remove("train_images_per_s");
        }
        std::fs::write(dir.path().join("report.json"), v1.to_string()).unwrap();
        let old = DenseReport::read(dir.path()).unwrap();
        assert_eq!((old.summary.train_images_per_s, old.runs[0].train_images_per_s, old.summary.dice), (None, None, random.summary.dice));
        v1["format_version"] = 3.into();
        std::fs::write(dir.path().join("report.json"), v1.to_string()).unwrap();
        assert!(DenseReport::read(dir.path()).unwrap_err().to_string().contains("version 1 to 2"));
        assert!(random.markdown().contains("| Dice | 0.525 ± 0.065 (n 4) |"));
    }
}
