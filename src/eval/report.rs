//! Evaluation reports (docs/eval.md, report format 2; reads 1): the per-fold confusion matrices of one
//! `usctl eval`, summarised as mean ± sd over folds × seeds at frame and video level, written as
//! report.json (everything), report.md (for people) and PNGs; and `usctl report`, which puts
//! several reports side by side in the shape of the paper's Tab. 5.

use super::config::{EvalConfig, Protocol, Selection};
use super::data::Dropped;
use super::metrics::{self, Confusion, Scores};
use super::paired::{self, Paired};
use crate::error::EvalError;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "usctl-eval-report";
/// 2: `duplicates` and `excluded`, and the config keys `duplicate_groups`, `exclude_overlap_with`.
/// 3: the config key `task` (always "classify" here; segment and detect write dense reports).
/// 4: macro one-vs-rest ROC AUC: `frame_auc`, `video_auc` per run, `auc` per level.
pub const FORMAT_VERSION: u32 = 4;
pub const JSON: &str = "report.json";
pub const MARKDOWN: &str = "report.md";

/// One fine-tuning run: fold `fold` trained with repetition `rep`'s seed, scored once on its
/// test part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldRun {
    pub fold: usize,
    pub rep: usize,
    pub train_videos: usize,
    /// Held out of training to choose the epoch (selection = "validation"), else 0.
    pub val_videos: usize,
    pub test_videos: usize,
    pub test_frames: usize,
    pub epochs_trained: u32,
    /// How many epochs the scored model had trained.
    pub selected_epoch: u32,
    pub frame: Confusion,
    pub video: Confusion,
    /// Macro one-vs-rest ROC AUC of the frames' (videos' mean) class probabilities; None in
    /// reports before format 4, and where no class has both positives and negatives.
    #[serde(default)]
    pub frame_auc: Option<f64>,
    #[serde(default)]
    pub video_auc: Option<f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanSd {
    pub mean: f64,
    /// Sample standard deviation (n − 1).
    pub sd: f64,
    pub n: usize,
}

impl MeanSd {
    pub fn of(values: &[f64]) -> MeanSd {
        let (mean, sd) = metrics::mean_sd(values);
        MeanSd { mean, sd, n: values.len() }
    }
}

impl std::fmt::Display for MeanSd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} ± {:.3}", self.mean, self.sd)
    }
}

/// Results at one level (frames, or videos with their frames' probabilities averaged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub accuracy: MeanSd,
    pub balanced_accuracy: MeanSd,
    pub macro_f1: MeanSd,
    /// Macro one-vs-rest ROC AUC over the runs that have one (none before format 4).
    #[serde(default)]
    pub auc: Option<MeanSd>,
    /// Confusion matrices summed over folds and seeds, and the scores of that sum.
    pub summed: Confusion,
    pub summed_scores: Scores,
}

impl Level {
    pub fn of<'a>(matrices: impl Iterator<Item = &'a Confusion> + Clone, aucs: impl Iterator<Item = Option<f64>>, classes: usize) -> Level {
        let scores: Vec<Scores> = matrices.clone().map(metrics::scores).collect();
        let aucs: Vec<f64> = aucs.flatten().collect();
        let pick = |f: fn(&Scores) -> f64| MeanSd::of(&scores.iter().map(f).collect::<Vec<_>>());
        let mut summed = vec![vec![0u64; classes]; classes];
        for m in matrices {
            metrics::add(&mut summed, m);
        }
        Level {
            accuracy: pick(|s| s.accuracy),
            balanced_accuracy: pick(|s| s.balanced_accuracy),
            macro_f1: pick(|s| s.macro_f1),
            auc: (!aucs.is_empty()).then(|| MeanSd::of(&aucs)),
            summed_scores: metrics::scores(&summed),
            summed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreRef {
    pub dir: String,
    pub dataset: String,
    pub version_id: String,
}

/// How the folds treated near-duplicate videos (docs/AUDIT.md's matching rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Duplicates {
    /// Whether each duplicate cluster was kept within one fold, as a patient is.
    pub grouped: bool,
    /// The near-duplicate rule (docs/AUDIT.md, "Matching rule").
    pub rule: crate::audit::matching::Rule,
    /// Clusters with two or more evaluated videos, and the evaluated videos in them (counted
    /// whether or not they were grouped).
    pub clusters: usize,
    pub videos: usize,
}

/// Videos dropped because a near-duplicate of them is in another store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Excluded {
    /// The other store's version.
    pub store: StoreRef,
    pub dropped: Vec<Dropped>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub format: String,
    pub format_version: u32,
    pub title: String,
    /// A short name for the initialisation (the run directory's name, or "random").
    pub label: String,
    /// "random", or the checkpoint the backbone was loaded from.
    pub init: String,
    pub init_sha256: Option<String>,
    pub protocol: Protocol,
    pub selection: Selection,
    pub classes: Vec<String>,
    pub store: StoreRef,
    /// Videos evaluated (after any dropped for overlap).
    pub videos: usize,
    pub videos_with_patient: usize,
    pub frames: usize,
    /// None in format 1 reports, whose folds were by patient alone.
    #[serde(default)]
    pub duplicates: Option<Duplicates>,
    /// Set with `exclude_overlap_with`.
    #[serde(default)]
    pub excluded: Option<Excluded>,
    pub config: EvalConfig,
    pub device: String,
    pub git_commit: String,
    pub command_line: Vec<String>,
    pub seconds: f64,
    pub runs: Vec<FoldRun>,
    pub frame: Level,
    pub video: Level,
}

/// The report's title; a test-fold selection says so first.
pub fn title(label: &str, protocol: Protocol, selection: Selection, dataset: &str) -> String {
    let t = format!("{label} · {} · {dataset}", protocol.describe());
    match selection {
        Selection::Test => format!("EPOCH SELECTED ON THE TEST FOLD (reference code's way, optimistic) · {t}"),
        _ => t,
    }
}

fn selection_text(c: &EvalConfig) -> String {
    match c.selection {
        Selection::Fixed => format!("the model after the last of {} epochs", c.epochs),
        Selection::Validation => format!(
            "the epoch (of {}) with the lowest cross-entropy on {:.0} % of the training part's patients held out; the test fold is scored once",
            c.epochs,
            100.0 * c.val_fraction
        ),
        Selection::Test => {
            format!("the epoch (of {}) with the best accuracy on the test fold itself, as the reference code did: these numbers are optimistic", c.epochs)
        }
    }
}

/// How folds were grouped, as the report's Markdown says it.
fn grouping_text(d: Option<&Duplicates>) -> String {
    let rule = |d: &Duplicates| format!("pHash radius {} ({} for stills), share {}", d.rule.radius, d.rule.still_radius, d.rule.share);
    match d {
        None => "by patient (by video where none is known); duplicate clusters not considered (a format 1 report)".into(),
        Some(d) if d.grouped => format!(
            "grouped by patient (by video where none is known) and duplicate cluster: {} clusters joining {} videos, each kept within one fold ({})",
            d.clusters,
            d.videos,
            rule(d)
        ),
        Some(d) => format!(
            "by patient (by video where none is known) only: duplicate grouping was OFF, so {} clusters joining {} near-duplicate videos may straddle train and test ({})",
            d.clusters,
            d.videos,
            rule(d)
        ),
    }
}

/// The folds column of `usctl report`.
fn grouping_cell(d: Option<&Duplicates>) -> String {
    match d {
        None => "patient".into(),
        Some(d) if d.grouped => format!("patient + {} dup. clusters", d.clusters),
        Some(d) => format!("patient (dup. grouping off, {} clusters)", d.clusters),
    }
}

/// An AUC summary, or "–" for reports before format 4.
fn auc_cell(m: Option<MeanSd>) -> String {
    m.map_or("–".into(), |m| m.to_string())
}

fn confusion_table(out: &mut String, classes: &[String], m: &Confusion) {
    let _ = writeln!(out, "| true \\ predicted | {} |", classes.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(classes.len()));
    for (c, row) in classes.iter().zip(m) {
        let _ = writeln!(out, "| {c} | {} |", row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" | "));
    }
}

fn class_table(out: &mut String, classes: &[String], s: &Scores) {
    let _ = writeln!(out, "| class | precision | recall | F1 | support |\n|---|---:|---:|---:|---:|");
    for (k, c) in classes.iter().enumerate() {
        let _ = writeln!(out, "| {c} | {:.3} | {:.3} | {:.3} | {} |", s.precision[k], s.recall[k], s.f1[k], s.support[k]);
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let mut o = String::new();
        let _ = writeln!(o, "# {}\n", self.title);
        let _ = writeln!(
            o,
            "- Initialisation: `{}` ({}{})",
            self.init,
            self.label,
            self.init_sha256.as_ref().map_or(String::new(), |h| format!(", sha256 {}", &h[..16.min(h.len())]))
        );
        let _ = writeln!(o, "- Protocol: {} (`{}`)", self.protocol.describe(), self.protocol.name());
        let _ = writeln!(o, "- Model scored on each test fold: {}", selection_text(c));
        let _ = writeln!(o, "- Store: `{}`, dataset {}, version {}", self.store.dir, self.store.dataset, self.store.version_id);
        let _ = writeln!(
            o,
            "- Data: {} videos ({} with a patient id), {} frames; classes {}",
            self.videos,
            self.videos_with_patient,
            self.frames,
            self.classes.join(", ")
        );
        if let Some(x) = &self.excluded {
            let _ = writeln!(
                o,
                "- Dropped for a near-duplicate in `{}` ({} {}): {} videos, listed below; they are not evaluated",
                x.store.dir,
                x.store.dataset,
                x.store.version_id,
                x.dropped.len()
            );
        }
        let _ = writeln!(
            o,
            "- {}-fold cross-validation {}, stratified by class; {} seed(s): {} runs. Folds: `folds.json`",
            c.folds,
            grouping_text(self.duplicates.as_ref()),
            c.seeds,
            self.runs.len()
        );
        let _ = writeln!(
            o,
            "- Training: {} epochs, batch {}, {} px, Adam lr {} (cosine per epoch), weight decay {}{}, {}, {} frames per video per epoch",
            c.epochs,
            c.batch_size,
            c.image_size,
            c.lr,
            c.weight_decay,
            if c.class_weights == super::config::ClassWeights::Balanced { ", classes weighted n / (k · n_c) (balanced)" } else { "" },
            if c.augment_train { "augmented (random resized crop, flip)" } else { "not augmented" },
            if c.frames_per_video == 0 { "all".to_string() } else { format!("at most {}", c.frames_per_video) }
        );
        let _ = writeln!(o, "- Device {}, {:.0} s in all; usctl commit {}\n", self.device, self.seconds, self.git_commit);
        let _ = writeln!(o, "Mean ± sd over folds × seeds:\n");
        let _ = writeln!(o, "| level | accuracy | balanced accuracy | macro-F1 | ROC AUC (macro, one-vs-rest) |\n|---|---|---|---|---|");
        for (name, l) in [("frame", &self.frame), ("video", &self.video)] {
            let _ = writeln!(o, "| {name} | {} | {} | {} | {} |", l.accuracy, l.balanced_accuracy, l.macro_f1, auc_cell(l.auc));
        }
        for (name, l) in [("frame", &self.frame), ("video", &self.video)] {
            let _ = writeln!(o, "\n## {name} level, summed over folds and seeds\n");
            class_table(&mut o, &self.classes, &l.summed_scores);
            o.push('\n');
            confusion_table(&mut o, &self.classes, &l.summed);
        }
        if let Some(x) = &self.excluded {
            let _ = writeln!(o, "\n## Dropped: a near-duplicate is in `{}`\n", x.store.dir);
            if x.dropped.is_empty() {
                let _ = writeln!(o, "None.");
            } else {
                let _ = writeln!(o, "| video | matches |\n|---|---|");
                for d in &x.dropped {
                    let _ = writeln!(o, "| `{}` | {} |", d.path, d.matches.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "));
                }
            }
        }
        let _ = writeln!(o, "\n![frame-level confusion matrix](confusion_frame.png) ![accuracy per fold](fold_accuracy.png)\n");
        let _ = writeln!(o, "## Runs\n\n| fold | seed | train videos | validation videos | test videos | test frames | scored epoch | frame accuracy | video accuracy | seconds |");
        let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.runs {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.1} |",
                r.fold + 1,
                r.rep + 1,
                r.train_videos,
                r.val_videos,
                r.test_videos,
                r.test_frames,
                r.selected_epoch,
                metrics::scores(&r.frame).accuracy,
                metrics::scores(&r.video).accuracy,
                r.seconds
            );
        }
        o
    }

    /// report.json, report.md and the PNGs, each written to a temporary name and renamed.
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| EvalError::Report { path: dir.join(JSON), message: e.to_string() })?;
        write_atomic(&dir.join(JSON), &json)?;
        write_atomic(&dir.join(MARKDOWN), self.markdown().as_bytes())?;
        let plots = [
            crate::plot::confusion_matrix(&dir.join("confusion_frame.png"), &format!("{} · frames", self.label), &self.classes, &self.frame.summed),
            crate::plot::confusion_matrix(&dir.join("confusion_video.png"), &format!("{} · videos", self.label), &self.classes, &self.video.summed),
            crate::plot::fold_accuracy(
                &dir.join("fold_accuracy.png"),
                &format!("{} · {} · frame accuracy per fold", self.label, self.protocol.name()),
                &self.runs.iter().map(|r| (r.fold, metrics::scores(&r.frame).accuracy)).collect::<Vec<_>>(),
            ),
        ];
        for p in plots {
            if let Err(e) = p {
                eprintln!("warning: a report plot in {} was not drawn: {e}", dir.display());
            }
        }
        Ok(())
    }

    /// Reads report.json from an evaluation directory (or the file itself).
    pub fn read(path: &Path) -> Result<Report, EvalError> {
        let file = if path.is_dir() { path.join(JSON) } else { path.to_path_buf() };
        let bytes = std::fs::read(&file).map_err(EvalError::io(&file))?;
        let fail = |message: String| EvalError::Report { path: file.clone(), message };
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| fail(format!("not JSON ({e}); give the directory `usctl eval --out` wrote")))?;
        let version = v.get("format_version").and_then(|f| f.as_u64());
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) || !version.is_some_and(|v| (1..=FORMAT_VERSION as u64).contains(&v)) {
            let dense = v.get("format").and_then(|f| f.as_str()) == Some(super::dense::FORMAT);
            let hint = if dense {
                "it is a segment/detect report: give `usctl report` only such reports, or only classification ones"
            } else {
                "give the directory `usctl eval --out` wrote"
            };
            return Err(fail(format!("not a {FORMAT} file of version 1 to {FORMAT_VERSION}; {hint}")));
        }
        let mut r: Report = serde_json::from_value(v).map_err(|e| fail(e.to_string()))?;
        if version == Some(1) {
            // Version 1 evaluations split by patient alone; its config had no such key.
            r.config.duplicate_groups = false;
        }
        Ok(r)
    }
}

/// A run's value of one metric (None where the run has none).
type Metric = fn(&FoldRun) -> Option<f64>;

/// The metrics `usctl report` pairs, by name.
const PAIRED: [(&str, Metric); 5] = [
    ("frame accuracy", |r| Some(metrics::scores(&r.frame).accuracy)),
    ("frame balanced accuracy", |r| Some(metrics::scores(&r.frame).balanced_accuracy)),
    ("frame macro-F1", |r| Some(metrics::scores(&r.frame).macro_f1)),
    ("frame AUC", |r| r.frame_auc),
    ("video accuracy", |r| Some(metrics::scores(&r.video).accuracy)),
];

/// Why two reports cannot be paired run by run, or None when they evaluated the same videos with
/// the same folds and seeds: same store version and classes, root seed, k, repetitions, duplicate
/// grouping and dropped videos, and every (fold, seed) run with the same numbers of test videos
/// and frames.
fn unpairable(a: &Report, b: &Report) -> Option<String> {
    if (&a.store.version_id, &a.classes) != (&b.store.version_id, &b.classes) {
        return Some("they evaluate different store versions or classes".into());
    }
    let split =
        |r: &Report| (r.config.seed, r.config.folds, r.config.seeds, r.duplicates.as_ref().map(|d| d.grouped), r.excluded.as_ref().map(|x| x.dropped.clone()));
    let runs = |r: &Report| {
        let mut v: Vec<_> = r.runs.iter().map(|x| (x.fold, x.rep, x.test_videos, x.test_frames)).collect();
        v.sort();
        v
    };
    (split(a) != split(b) || runs(a) != runs(b))
        .then(|| "their folds or seeds differ (same --seed, --folds, --seeds and duplicate grouping, or --folds-file)".into())
}

/// b against a, metric by metric, over their (fold, seed) pairs.
pub fn paired(a: &Report, b: &Report) -> Result<Vec<(&'static str, Paired)>, String> {
    if let Some(why) = unpairable(a, b) {
        return Err(why);
    }
    let values = |r: &Report, f: Metric| -> Vec<((usize, usize), f64)> { r.runs.iter().filter_map(|x| f(x).map(|v| ((x.fold, x.rep), v))).collect() };
    Ok(PAIRED.iter().filter_map(|(name, f)| paired::by_key(&values(a, *f), &values(b, *f), a.config.seed).map(|p| (*name, p))).collect())
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    crate::files::write_atomic(path, bytes).map_err(EvalError::io(path))
}

/// Several reports side by side: initialisations as rows, protocols as columns (frame accuracy),
/// then every headline number per report.
pub fn compare(reports: &[(PathBuf, Report)]) -> String {
    let mut o = String::new();
    let mut labels: Vec<&str> = Vec::new();
    for (_, r) in reports {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    let protocols: Vec<Protocol> =
        [Protocol::Linear, Protocol::Last3, Protocol::All].into_iter().filter(|p| reports.iter().any(|(_, r)| r.protocol == *p)).collect();
    let on_test = reports.iter().any(|(_, r)| r.selection == Selection::Test);
    let _ =
        writeln!(o, "Frame-level accuracy, mean ± sd over folds × seeds{}:\n", if on_test { " († epoch selected on the test fold: optimistic)" } else { "" });
    let _ = writeln!(o, "| initialisation | {} |", protocols.iter().map(|p| p.describe()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(o, "|---|{}", "---|".repeat(protocols.len()));
    for l in &labels {
        let cells: Vec<String> = protocols
            .iter()
            .map(|p| {
                let hits: Vec<String> = reports
                    .iter()
                    .filter(|(_, r)| r.label == *l && r.protocol == *p)
                    .map(|(_, r)| format!("{}{}", r.frame.accuracy, if r.selection == Selection::Test { " †" } else { "" }))
                    .collect();
                if hits.is_empty() {
                    "–".into()
                } else {
                    hits.join(" / ")
                }
            })
            .collect();
        let _ = writeln!(o, "| {l} | {} |", cells.join(" | "));
    }
    let _ = writeln!(o, "\n| initialisation | protocol | selection | folds | epochs, px | frame accuracy | frame balanced acc. | frame macro-F1 | frame AUC | video accuracy | video macro-F1 | runs | seconds | report |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---:|---:|---|");
    for (path, r) in reports {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {}, {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | `{}` |",
            r.label,
            r.protocol.name(),
            r.selection.name(),
            grouping_cell(r.duplicates.as_ref()),
            r.config.epochs,
            r.config.image_size,
            r.frame.accuracy,
            r.frame.balanced_accuracy,
            r.frame.macro_f1,
            auc_cell(r.frame.auc),
            r.video.accuracy,
            r.video.macro_f1,
            r.runs.len(),
            r.seconds,
            path.display()
        );
    }
    let lines = paired::against_baselines(
        reports,
        |(_, r)| (r.protocol, r.selection),
        |(_, a), (_, b)| Ok(paired(a, b)?.iter().map(|(name, p)| format!("{}: {}", b.protocol.name(), p.sentence(&b.label, &a.label, name))).collect()),
        |(_, b), (_, a), why| format!("{} ({}) vs {} ({}): not paired: {why}", b.label, b.protocol.name(), a.label, a.protocol.name()),
    );
    if !lines.is_empty() {
        let _ = writeln!(
            o,
            "\nPaired with the first report of the same protocol and selection, over identical folds and seeds: mean difference, bootstrap 95 % interval ({} resamples), runs ahead:\n",
            paired::RESAMPLES
        );
        for l in lines {
            let _ = writeln!(o, "- {l}");
        }
    }
    let mut groupings: Vec<Option<bool>> = reports.iter().map(|(_, r)| r.duplicates.as_ref().map(|d| d.grouped)).collect();
    groupings.dedup();
    if groupings.len() > 1 {
        let _ =
            writeln!(o, "\nWarning: these reports split folds differently (duplicate clusters kept together in some, not in others); see the folds column.");
    }
    let mut stores: Vec<String> = reports.iter().map(|(_, r)| format!("{} {} ({})", r.store.dataset, r.store.version_id, r.classes.join(", "))).collect();
    stores.dedup();
    if stores.len() > 1 {
        let _ = writeln!(o, "\nWarning: these reports evaluate different data: {}.", stores.join("; "));
    }
    o
}

/// `compare`'s content as JSON (`usctl report --json`, docs/eval.md): each report's headline
/// numbers and every pairing, structured.
pub fn compare_json(reports: &[(PathBuf, Report)]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = reports
        .iter()
        .map(|(path, r)| {
            serde_json::json!({
                "report": path.display().to_string(), "label": r.label, "init": r.init, "protocol": r.protocol.name(),
                "selection": r.selection.name(), "store_version": r.store.version_id, "runs": r.runs.len(),
                "epochs": r.config.epochs, "image_size": r.config.image_size, "frame": r.frame, "video": r.video, "seconds": r.seconds,
            })
        })
        .collect();
    let pairs = paired::against_baselines(
        reports,
        |(_, r)| (r.protocol, r.selection),
        |(_, a), (_, b)| {
            Ok(paired(a, b)?
                .into_iter()
                .map(|(metric, p)| {
                    serde_json::json!({"label": b.label, "baseline": a.label, "protocol": b.protocol.name(), "metric": metric, "difference": p.is_difference(), "paired": p})
                })
                .collect())
        },
        |(_, b), (_, a), why| serde_json::json!({"label": b.label, "baseline": a.label, "protocol": b.protocol.name(), "not_paired": why}),
    );
    serde_json::json!({"format": "usctl-report-table", "format_version": 1, "resamples": paired::RESAMPLES, "reports": rows, "pairs": pairs})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(fold: usize, rep: usize, frame: Confusion, video: Confusion) -> FoldRun {
        FoldRun {
            fold,
            rep,
            train_videos: 8,
            val_videos: 0,
            test_videos: 2,
            test_frames: 6,
            epochs_trained: 3,
            selected_epoch: 3,
            frame,
            video,
            frame_auc: Some(0.5 + 0.1 * fold as f64),
            video_auc: None,
            seconds: 1.0,
        }
    }

    pub(crate) fn report(label: &str, protocol: Protocol, selection: Selection, runs: Vec<FoldRun>) -> Report {
        let classes = vec!["a".to_string(), "b".to_string()];
        Report {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            title: title(label, protocol, selection, "toy"),
            label: label.into(),
            init: "random".into(),
            init_sha256: None,
            protocol,
            selection,
            store: StoreRef { dir: "s".into(), dataset: "toy".into(), version_id: "v".into() },
            videos: 4,
            videos_with_patient: 0,
            frames: 12,
            duplicates: Some(Duplicates { grouped: true, rule: Default::default(), clusters: 1, videos: 2 }),
            excluded: None,
            config: EvalConfig { selection, protocol, ..Default::default() },
            device: "Cpu".into(),
            git_commit: "x".into(),
            command_line: vec![],
            seconds: 2.0,
            frame: Level::of(runs.iter().map(|r| &r.frame), runs.iter().map(|r| r.frame_auc), 2),
            video: Level::of(runs.iter().map(|r| &r.video), runs.iter().map(|r| r.video_auc), 2),
            runs,
            classes,
        }
    }

    #[test]
    fn levels_average_runs_and_sum_matrices() {
        // Run 1: 3 of 4 right; run 2: 4 of 4 right.
        let runs =
            vec![run(0, 0, vec![vec![2, 1], vec![0, 1]], vec![vec![1, 0], vec![0, 1]]), run(1, 0, vec![vec![2, 0], vec![0, 2]], vec![vec![1, 0], vec![1, 0]])];
        let r = report("spg", Protocol::Linear, Selection::Fixed, runs);
        assert_eq!(r.frame.accuracy.mean, 0.875);
        assert!((r.frame.accuracy.sd - (0.125f64 * 0.125 * 2.0).sqrt()).abs() < 1e-12, "sample sd of 0.75 and 1.0");
        assert_eq!(r.frame.summed, vec![vec![4, 1], vec![0, 3]]);
        assert_eq!(r.video.accuracy.mean, 0.75);
        assert_eq!(r.frame.summed_scores.support, vec![5, 3]);
        let md = r.markdown();
        assert!(md.contains("| frame | 0.875 ± 0.177 |"), "{md}");
        assert!(!md.contains("TEST FOLD"));
        let dir = tempfile::tempdir().unwrap();
        r.write(dir.path()).unwrap();
        assert_eq!(Report::read(dir.path()).unwrap(), r);
        for f in ["report.md", "confusion_frame.png", "confusion_video.png", "fold_accuracy.png"] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        std::fs::write(dir.path().join(JSON), "{\"format\": \"other\"}").unwrap();
        assert!(Report::read(dir.path()).unwrap_err().to_string().contains("usctl eval --out"));
    }

    #[test]
    fn comparison_has_protocol_columns_and_flags_test_selection() {
        let m = || vec![vec![1, 0], vec![0, 1]];
        let a = report("random", Protocol::Linear, Selection::Fixed, vec![run(0, 0, m(), m())]);
        let b = report("spg", Protocol::Linear, Selection::Fixed, vec![run(0, 0, m(), m())]);
        let c = report("spg", Protocol::All, Selection::Test, vec![run(0, 0, m(), m())]);
        assert!(c.title.starts_with("EPOCH SELECTED ON THE TEST FOLD"));
        let t = compare(&[("a".into(), a), ("b".into(), b), ("c".into(), c)]);
        assert!(t.contains("| initialisation | last 1 layer (frozen backbone, linear classifier) | all layers |"), "{t}");
        assert!(t.contains("| random | 1.000 ± 0.000 | – |"), "{t}");
        assert!(t.contains("| spg | 1.000 ± 0.000 | 1.000 ± 0.000 † |"), "{t}");
        assert!(t.contains("optimistic"));
    }

    #[test]
    fn reports_on_the_same_folds_are_paired_run_by_run() {
        // Frame confusion with `right` of 4 frames correct (2 per class), video confusion perfect.
        let m = |right: u64| vec![vec![right.min(2), 2 - right.min(2)], vec![2 - right.saturating_sub(2), right.saturating_sub(2)]];
        let runs = |rights: &[u64]| rights.iter().enumerate().map(|(k, &r)| run(k % 2, k / 2, m(r), m(4))).collect::<Vec<_>>();
        let random = report("random", Protocol::Linear, Selection::Fixed, runs(&[2, 2, 3, 2]));
        let spg = report("spg", Protocol::Linear, Selection::Fixed, runs(&[3, 3, 4, 3]));
        let same = report("same", Protocol::Linear, Selection::Fixed, runs(&[3, 1, 3, 2]));
        let three = [("r".into(), random.clone()), ("s".into(), spg.clone()), ("x".into(), same)];
        let t = compare(&three);
        assert!(t.contains("- linear: spg is ahead of random in frame accuracy by +0.250 [+0.250, +0.250], higher in 4 of 4 runs"), "{t}");
        // The same numbers as JSON: one row per report, one entry per (report, metric) pairing.
        let j = compare_json(&three);
        assert_eq!(j["reports"].as_array().unwrap().len(), 3);
        assert_eq!(j["reports"][1]["frame"]["accuracy"]["mean"], 0.8125);
        let pairs = j["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), 2 * PAIRED.len(), "spg and same against random, each metric");
        let first = &pairs[0];
        assert_eq!((first["label"].as_str(), first["baseline"].as_str(), first["metric"].as_str()), (Some("spg"), Some("random"), Some("frame accuracy")));
        assert_eq!((first["difference"].as_bool(), first["paired"]["mean"].as_f64(), first["paired"]["wins"].as_u64()), (Some(true), Some(0.25), Some(4)));
        assert!(t.contains("- linear: same vs random, frame accuracy: no difference detected (+0.000"), "{t}");
        assert!(t.contains("- linear: spg vs random, video accuracy: no difference detected (+0.000 [+0.000, +0.000], higher in 0 of 4 runs)"), "{t}");
        let mut other = spg.clone();
        other.runs[0].test_frames += 1;
        assert!(paired(&random, &other).unwrap_err().contains("folds or seeds differ"));
        other.store.version_id = "w".into();
        assert!(paired(&random, &other).unwrap_err().contains("different store versions"));
        let mut all = spg;
        all.protocol = Protocol::All;
        assert!(!compare(&[("r".into(), random), ("a".into(), all)]).contains("Paired with"), "no baseline of its protocol");
    }

    #[test]
    fn grouping_and_dropped_videos_are_stated_and_version_1_reports_still_read() {
        let m = || vec![vec![1, 0], vec![0, 1]];
        let mut r = report("random", Protocol::Linear, Selection::Fixed, vec![run(0, 0, m(), m())]);
        let md = r.markdown();
        assert!(md.contains("grouped by patient (by video where none is known) and duplicate cluster: 1 clusters joining 2 videos"), "{md}");
        r.duplicates = Some(Duplicates { grouped: false, rule: Default::default(), clusters: 3, videos: 7 });
        r.excluded = Some(Excluded {
            store: StoreRef { dir: "/pre".into(), dataset: "pre".into(), version_id: "w".into() },
            dropped: vec![Dropped { path: "a/x.mp4".into(), matches: vec!["p/1.mp4".into(), "p/2.mp4".into()] }],
        });
        let md = r.markdown();
        assert!(md.contains("duplicate grouping was OFF, so 3 clusters joining 7 near-duplicate videos may straddle train and test"), "{md}");
        assert!(md.contains("- Dropped for a near-duplicate in `/pre` (pre w): 1 videos"), "{md}");
        assert!(md.contains("| `a/x.mp4` | `p/1.mp4`, `p/2.mp4` |"), "{md}");
        let dir = tempfile::tempdir().unwrap();
        r.write(dir.path()).unwrap();
        assert_eq!(Report::read(dir.path()).unwrap(), r);
        // A version 1 report: no `duplicates`, `excluded` or the two config keys.
        let mut v1 = serde_json::to_value(&r).unwrap();
        v1["format_version"] = 1.into();
        for key in ["duplicates", "excluded"] {
            v1.as_object_mut().unwrap().remove(key);
        }
        for key in ["duplicate_groups", "exclude_overlap_with", "task"] {
            v1["config"].as_object_mut().unwrap().remove(key);
        }
        for level in ["frame", "video"] {
            v1[level].as_object_mut().unwrap().remove("auc");
        }
        for run in v1["runs"].as_array_mut().unwrap() {
            run.as_object_mut().unwrap().retain(|k, _| !k.ends_with("_auc"));
        }
        std::fs::write(dir.path().join(JSON), v1.to_string()).unwrap();
        let old = Report::read(dir.path()).unwrap();
        assert_eq!((old.duplicates.as_ref(), old.excluded.as_ref(), old.config.duplicate_groups), (None, None, false));
        assert_eq!((old.frame.auc, old.runs[0].frame_auc), (None, None), "no AUC before format 4");
        assert!(old.markdown().contains("| frame | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000 | – |"), "{}", old.markdown());
        assert!(old.markdown().contains("duplicate clusters not considered (a format 1 report)"));
        v1["format_version"] = 5.into();
        std::fs::write(dir.path().join(JSON), v1.to_string()).unwrap();
        assert!(Report::read(dir.path()).unwrap_err().to_string().contains("version 1 to 4"));
        let grouped = report("random", Protocol::Linear, Selection::Fixed, vec![run(0, 0, m(), m())]);
        let t = compare(&[("a".into(), grouped.clone()), ("b".into(), r.clone())]);
        assert!(t.contains("| patient + 1 dup. clusters |") && t.contains("| patient (dup. grouping off, 3 clusters) |"), "{t}");
        assert!(t.contains("split folds differently"), "{t}");
        assert!(!compare(&[("a".into(), grouped.clone()), ("b".into(), grouped)]).contains("split folds differently"));
    }
}
