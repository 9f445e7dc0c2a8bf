//! Typed evaluation configuration (docs/eval.md). Defaults follow the reference evaluation of
//! USCL (Adam, lr 0.01, weight decay 1e-4, batch 32, 100 epochs, cosine decay per epoch, random
//! resized crop 0.8–1 and flips, no colour jitter, 224 px), except that the epoch is never chosen
//! on the test fold unless asked for by name.

use crate::args::parse_on_off;
use crate::config::{load_toml, merge, AugmentConfig, DeviceChoice};
use crate::error::ConfigError;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which part of the network fine-tuning may change (paper Tab. 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// "Last 1 layer": frozen backbone, a new linear classifier.
    Linear,
    /// "Last 3 layers": the last residual block of layer4 (its two convolutions) and the
    /// classifier; everything else, batch-norm statistics included, stays as loaded.
    Last3,
    /// Every layer.
    All,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Linear => "linear",
            Protocol::Last3 => "last3",
            Protocol::All => "all",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Protocol::Linear => "last 1 layer (frozen backbone, linear classifier)",
            Protocol::Last3 => "last 3 layers (layer4.1 and the classifier)",
            Protocol::All => "all layers",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" => Ok(Protocol::Linear),
            "last3" => Ok(Protocol::Last3),
            "all" => Ok(Protocol::All),
            _ => Err(format!("unknown protocol {s:?}: use linear, last3 or all")),
        }
    }
}

/// What an evaluation scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Class per frame and video (a linear classifier on the pooled features).
    #[default]
    Classify,
    /// Lesion masks per image: a U-Net decoder on the encoder's stages; Dice, IoU, boundary F1.
    Segment,
    /// Lesion instances per image (boxes and masks, from the segmentation by a documented rule);
    /// COCO-style AP. Trains what `segment` trains; the report leads with AP.
    Detect,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Classify => "classify",
            Task::Segment => "segment",
            Task::Detect => "detect",
        }
    }

    /// Segment and detect: per-pixel training on a store with masks.
    pub fn is_dense(self) -> bool {
        self != Task::Classify
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "classify" => Ok(Task::Classify),
            "segment" => Ok(Task::Segment),
            "detect" => Ok(Task::Detect),
            _ => Err(format!("unknown task {s:?}: use classify, segment or detect")),
        }
    }
}

/// Class weights of the fine-tuning loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeights {
    /// Every frame counts the same.
    #[default]
    None,
    /// Each class weighted by n / (k · n_c) over the fold's training frames (scikit-learn's
    /// "balanced"), so that every class contributes equally to the loss.
    Balanced,
}

impl std::str::FromStr for ClassWeights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(ClassWeights::None),
            "balanced" => Ok(ClassWeights::Balanced),
            _ => Err(format!("unknown class weights {s:?}: use none or balanced")),
        }
    }
}

/// How the model that is scored on a test fold is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// The model after the last epoch.
    Fixed,
    /// The epoch with the lowest cross-entropy on a validation split carved out of the training
    /// folds (whole patients or videos), never the test fold.
    Validation,
    /// The epoch with the best test-fold accuracy: the reference code's way, optimistic by
    /// construction; only for reproducing it, and reports say so in their title.
    Test,
}

impl Selection {
    pub fn name(self) -> &'static str {
        match self {
            Selection::Fixed => "fixed",
            Selection::Validation => "validation",
            Selection::Test => "test fold †",
        }
    }
}

impl std::str::FromStr for Selection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fixed" => Ok(Selection::Fixed),
            "validation" => Ok(Selection::Validation),
            _ => Err(format!("unknown selection {s:?}: use fixed or validation (or the flag --select-on-test)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// classify (default), segment or detect (a store with lesion masks).
    pub task: Task,
    /// Root seed: folds, classifier initialisation, batch order and augmentation derive from it.
    pub seed: u64,
    /// k of k-fold cross-validation.
    pub folds: usize,
    /// Repetitions of every fold, each with its own derived seed (same folds).
    pub seeds: usize,
    pub protocol: Protocol,
    pub epochs: u32,
    pub batch_size: usize,
    pub image_size: i64,
    pub lr: f64,
    pub weight_decay: f64,
    /// none, or balanced: the training loss weights each class by n / (k · n_c) (classify only).
    pub class_weights: ClassWeights,
    pub selection: Selection,
    /// Share of each training part (by patient or video) held out when selection = "validation".
    pub val_fraction: f64,
    /// Classes to evaluate, by name, in this order; empty = every class of the store that is not
    /// in `exclude_classes`.
    pub classes: Vec<String>,
    pub exclude_classes: Vec<String>,
    /// Training frames drawn per video per epoch (0 = every stored frame).
    pub frames_per_video: usize,
    /// Augment training images. Off with the linear protocol, every frame's features are computed
    /// once and reused (the frozen backbone gives the same features every epoch).
    pub augment_train: bool,
    /// Keep each duplicate cluster (near-duplicate videos, docs/AUDIT.md's matching rule) within
    /// one fold, as a patient is; off splits by patient alone, to measure the leakage.
    pub duplicate_groups: bool,
    /// A store (root, dataset or version folder, like `--store`) whose near-duplicates of the
    /// evaluated videos are dropped from the evaluation, e.g. the pretraining store.
    pub exclude_overlap_with: Option<PathBuf>,
    pub device: DeviceChoice,
    /// libtorch intra-op threads (0 = all cores).
    pub threads: usize,
    pub augment: AugmentConfig,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            task: Task::Classify,
            seed: 0,
            folds: 5,
            seeds: 3,
            protocol: Protocol::Linear,
            epochs: 100,
            batch_size: 32,
            image_size: 224,
            lr: 0.01,
            weight_decay: 1e-4,
            class_weights: ClassWeights::None,
            selection: Selection::Fixed,
            val_fraction: 0.2,
            classes: Vec::new(),
            exclude_classes: vec!["viral-pneumonia".into(), "uncertain".into()],
            frames_per_video: 0,
            augment_train: true,
            duplicate_groups: true,
            exclude_overlap_with: None,
            device: DeviceChoice::Auto,
            threads: 0,
            augment: AugmentConfig { jitter_prob: 0.0, ..AugmentConfig::default() },
        }
    }
}

/// Evaluation flags that override config keys; `None` keeps the file's (or the default) value.
/// Each field is the config key of its name (`--augment` sets `augment_train`); `--select-on-test`
/// sets `selection = "test"`.
#[derive(Debug, Clone, Default, Serialize, Args)]
pub struct EvalOverrides {
    /// classify (default); segment or detect: lesion masks and instances on a store with masks.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Root seed of folds, initialisation, batch order and augmentation.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// k of k-fold cross-validation (default 5).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// Repetitions of every fold with different seeds (default 3).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeds: Option<usize>,
    /// linear (frozen backbone), last3 (layer4.1 + classifier) or all.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Fine-tuning epochs (default 100).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    /// Frames per batch (default 32).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Images are SIZE×SIZE (default 224).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<i64>,
    /// Adam learning rate (default 0.01), cosine-annealed per epoch.
    #[arg(long, allow_hyphen_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// none (default) or balanced: weight the fine-tuning loss by inverse class frequency.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<ClassWeights>,
    /// fixed (the last epoch) or validation (the best epoch on a split of the training folds).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
    /// Pick each fold's epoch by its test accuracy, as the reference code did (optimistic; the
    /// report's title says so).
    #[arg(long, conflicts_with = "selection")]
    #[serde(skip)]
    pub select_on_test: bool,
    /// Training frames drawn per video per epoch (0: all).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_video: Option<usize>,
    /// on, or off: no training augmentation (with linear, features are computed once).
    #[arg(long = "augment", value_name = "AUGMENT", value_parser = parse_on_off)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment_train: Option<bool>,
    /// on (default): folds keep near-duplicate videos together, as a patient; off: by patient
    /// alone (to measure what duplicates leak).
    #[arg(long, value_name = "ON_OFF", value_parser = parse_on_off)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_groups: Option<bool>,
    /// Drop the evaluated videos that have a near-duplicate in this store (root, dataset or
    /// version folder; e.g. the pretraining store); the report lists them.
    #[arg(long, value_name = "STORE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_overlap_with: Option<PathBuf>,
    /// auto, cpu or cuda.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceChoice>,
    /// libtorch threads (0: all cores).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl EvalConfig {
    pub fn load(path: &Path) -> Result<EvalConfig, ConfigError> {
        load_toml(path)
    }

    pub fn apply(&mut self, o: &EvalOverrides) -> Result<(), ConfigError> {
        let selection = if o.select_on_test { Some(Selection::Test) } else { o.selection };
        *self = merge(self, &EvalOverrides { selection, ..o.clone() })?;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid { key: key.into(), message: why.into() });
        if self.folds < 2 {
            return bad("folds", "must be at least 2");
        }
        for (key, n) in [("seeds", self.seeds), ("epochs", self.epochs as usize), ("batch_size", self.batch_size)] {
            if n == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if !(16..=1024).contains(&self.image_size) {
            return bad("image_size", "must be between 16 and 1024 pixels");
        }
        if self.lr.is_nan() || self.lr <= 0.0 || self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad("lr", "lr must be > 0 and weight_decay ≥ 0");
        }
        if self.task.is_dense() && self.class_weights != ClassWeights::None {
            return bad("class_weights", "weights classes of the classification loss: use it with task = \"classify\"");
        }
        if self.task.is_dense() && self.selection != Selection::Fixed {
            return bad("selection", "segment and detect score the model after the last epoch: use selection = \"fixed\"");
        }
        if self.selection == Selection::Validation && !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad("val_fraction", "must be in (0, 1) when selection = \"validation\"");
        }
        self.augment.validate()
    }

    /// The classifier of `linear` sees fixed features when nothing is augmented.
    pub fn caches_features(&self) -> bool {
        self.task == Task::Classify && self.protocol == Protocol::Linear && !self.augment_train
    }

    pub fn to_toml(&self) -> String {
        // A plain struct of numbers, strings and enums always serialises.
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_overrides_apply_and_bad_values_fail() {
        let c = EvalConfig::default();
        c.validate().unwrap();
        assert_eq!(toml::from_str::<EvalConfig>(&c.to_toml()).unwrap(), c);
        assert!(toml::from_str::<EvalConfig>("epoch = 3\n").unwrap_err().to_string().contains("unknown field `epoch`"));
        let mut c = toml::from_str::<EvalConfig>("protocol = \"last3\"\nepochs = 7\n").unwrap();
        assert_eq!((c.protocol, c.epochs, c.lr), (Protocol::Last3, 7, 0.01));
        c.apply(&EvalOverrides { epochs: Some(2), select_on_test: true, ..Default::default() }).unwrap();
        assert_eq!((c.epochs, c.selection), (2, Selection::Test));
        c.folds = 1;
        assert!(matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "folds"));
        let c = EvalConfig { selection: Selection::Validation, val_fraction: 0.0, ..Default::default() };
        assert!(c.validate().is_err());
        assert!("test".parse::<Selection>().is_err(), "selecting on the test fold takes its own flag");
        assert!(EvalConfig { augment_train: false, ..Default::default() }.caches_features());
        assert!(!EvalConfig { augment_train: false, task: Task::Segment, ..Default::default() }.caches_features());
        let c = EvalConfig { task: Task::Detect, selection: Selection::Validation, ..Default::default() };
        assert!(matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "selection"));
        assert_eq!(toml::from_str::<EvalConfig>("task = \"segment\"\n").unwrap().task, Task::Segment);
        let c = EvalConfig { task: Task::Segment, class_weights: ClassWeights::Balanced, ..Default::default() };
        assert!(matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "class_weights"));
        assert_eq!(toml::from_str::<EvalConfig>("class_weights = \"balanced\"\n").unwrap().class_weights, ClassWeights::Balanced);
        let c = toml::from_str::<EvalConfig>("duplicate_groups = false\nexclude_overlap_with = \"pre/store\"\n").unwrap();
        assert_eq!((c.duplicate_groups, c.exclude_overlap_with.as_deref()), (false, Some(Path::new("pre/store"))));
        assert_eq!(toml::from_str::<EvalConfig>(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn every_evaluation_flag_sets_one_config_key() {
        let samples = ["7", "last3", "validation", "cpu", "off", "segment", "balanced"];
        let keys = crate::config::tests::key_of_each_flag(&EvalConfig::default(), &samples, |c: &mut EvalConfig, o: &EvalOverrides| c.apply(o));
        assert_eq!(keys.len(), 18, "{keys:?}");
        for (flag, key) in keys {
            let renamed = [("--augment", "augment_train"), ("--select-on-test", "selection")];
            let want = renamed.iter().find(|r| r.0 == flag).map_or_else(|| flag.trim_start_matches("--").replace('-', "_"), |r| r.1.to_string());
            assert_eq!(key, want, "{flag}");
        }
        let mut c = EvalConfig::default();
        c.apply(&EvalOverrides { select_on_test: true, ..Default::default() }).unwrap();
        assert_eq!(c.selection, Selection::Test);
    }

    #[test]
    fn each_count_is_blamed_by_its_own_key() {
        for (c, key) in [
            (EvalConfig { seeds: 0, ..Default::default() }, "seeds"),
            (EvalConfig { epochs: 0, ..Default::default() }, "epochs"),
            (EvalConfig { batch_size: 0, ..Default::default() }, "batch_size"),
        ] {
            let err = c.validate().unwrap_err();
            assert!(matches!(&err, ConfigError::Invalid { key: k, .. } if k == key), "{key}: {err}");
            assert!(err.to_string().contains(&format!("`{key}` must be at least 1")), "{err}");
        }
    }
}
