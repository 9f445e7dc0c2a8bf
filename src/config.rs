//! Typed training configuration (docs/config.md). Every default lives here; a TOML file may set any
//! subset (unknown keys are rejected), command-line overrides go on top, and the resolved result is
//! saved in the run directory so that the run can be resumed and reproduced from it alone.

use crate::args::parse_on_off;
use crate::error::ConfigError;
use clap::{Args, FromArgMatches};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pairs {
    /// Sample pair generation: three frames in time order, anchor mixed into each neighbour.
    Spg,
    /// Two random frames of the video.
    Rstfv,
    /// One random frame of the video, augmented twice.
    Rsofv,
    /// Random frames of the whole store, no video awareness: SimCLR as the paper ran it (Tab. 5),
    /// so `simclr` is accepted as its name.
    #[serde(alias = "simclr")]
    Rs,
    /// Intra-video positive pairs (VanBerlo et al. 2024): two frames of the video at most
    /// `ivpp.window_s` seconds apart, optionally weighted by their distance in time.
    Ivpp,
}

impl std::str::FromStr for Pairs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spg" => Ok(Pairs::Spg),
            "rstfv" => Ok(Pairs::Rstfv),
            "rsofv" => Ok(Pairs::Rsofv),
            "rs" | "simclr" => Ok(Pairs::Rs),
            "ivpp" => Ok(Pairs::Ivpp),
            _ => Err(format!("unknown pair strategy {s:?}: use spg, rstfv, rsofv, rs (or its name simclr), ivpp")),
        }
    }
}

/// The contrastive objective (docs/training.md "Methods").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// NT-Xent over the batch: every other view in the batch is a negative (USCL, SimCLR).
    NtXent,
    /// MoCo v2: a momentum key encoder and a queue of its past keys as the negatives.
    Moco,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nt-xent" => Ok(Method::NtXent),
            "moco" => Ok(Method::Moco),
            _ => Err(format!("unknown method {s:?}: use nt-xent or moco")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Mix the raw frames, then augment the mixed image (one crop per view).
    Before,
    /// Augment each frame on its own, then mix the two augmented images.
    After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassifierOn {
    /// h reads the backbone's 512-d features (Algorithm 1 of the paper).
    Backbone,
    /// h reads the projection's 256-d output (the reference code).
    Projection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            _ => Err(format!("unknown device {s:?}: use auto, cpu or cuda")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpgConfig {
    /// ξ ~ Beta(alpha, beta).
    pub alpha: f64,
    pub beta: f64,
    /// One ξ for both views (the reference code) instead of ξ1, ξ2 drawn independently.
    pub shared_xi: bool,
    pub mix: Mix,
}

impl Default for SpgConfig {
    fn default() -> Self {
        SpgConfig { alpha: 0.5, beta: 0.5, shared_xi: false, mix: Mix::Before }
    }
}

/// MoCo v2 (`method = "moco"`): docs/training.md says why these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoConfig {
    /// Key encoder ← momentum · key encoder + (1 − momentum) · query encoder, every step.
    pub momentum: f64,
    /// Keys kept as negatives (at most the training videos of the run).
    pub queue: usize,
    /// τ of MoCo's InfoNCE.
    pub temperature: f64,
}

impl Default for MocoConfig {
    fn default() -> Self {
        MocoConfig { momentum: 0.99, queue: 256, temperature: 0.2 }
    }
}

/// Intra-video positive pairs (`pairs = "ivpp"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvppConfig {
    /// The two frames of a pair are at most this many seconds apart.
    pub window_s: f64,
    /// Weight each pair's loss by 1 − d / (window_s + δ), d their distance in time and δ the
    /// video's frame interval; false: every pair weighs 1.
    pub weighted: bool,
}

impl Default for IvppConfig {
    fn default() -> Self {
        IvppConfig { window_s: 1.0, weighted: true }
    }
}

/// Where in-video hard negatives come from over the run (`hard_negatives` > 0): frames whose
/// distance in time from the pair's anchor frame, as a fraction of the video's duration, lies in a
/// band that starts at `start`, stays there for the first `hold` of the epochs, then moves to `end`
/// along a half cosine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HardNegativeSchedule {
    pub start: [f64; 2],
    pub end: [f64; 2],
    pub hold: f64,
}

impl Default for HardNegativeSchedule {
    fn default() -> Self {
        HardNegativeSchedule { start: [0.2, 0.4], end: [0.03, 0.07], hold: 0.5 }
    }
}

impl HardNegativeSchedule {
    /// The band [lo, hi] (fractions of a video's duration) at `epoch` of `epochs`.
    pub fn band(&self, epoch: u32, epochs: u32) -> [f64; 2] {
        let held = (self.hold * epochs as f64).round();
        let rest = epochs as f64 - held;
        let t = if rest <= 1.0 {
            if (epoch as f64) < held {
                0.0
            } else {
                1.0
            }
        } else {
            ((epoch as f64 - held) / (rest - 1.0)).clamp(0.0, 1.0)
        };
        let w = 0.5 * (1.0 - (std::f64::consts::PI * t).cos());
        [self.start[0] + w * (self.end[0] - self.start[0]), self.start[1] + w * (self.end[1] - self.start[1])]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Random resized crop: area fraction and aspect-ratio ranges.
    pub crop_scale: [f64; 2],
    pub crop_ratio: [f64; 2],
    /// Probability of a horizontal flip.
    pub flip: f64,
    /// Probability that colour jitter is applied to an image at all.
    pub jitter_prob: f64,
    /// Factors drawn from [max(0, 1 − x), 1 + x].
    pub brightness: f64,
    pub contrast: f64,
    /// Accepted for parity with the paper; on grayscale pixels saturation and hue jitter are the
    /// identity (a gray pixel has no saturation and no hue), see docs/config.md.
    pub saturation: f64,
    pub hue: f64,
    /// Normalisation: (x − mean) / std, x in [0, 1].
    pub mean: f64,
    pub std: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            crop_scale: [0.8, 1.0],
            crop_ratio: [0.8, 1.25],
            flip: 0.5,
            jitter_prob: 0.8,
            brightness: 0.8,
            contrast: 0.8,
            saturation: 0.8,
            hue: 0.2,
            mean: 0.5,
            std: 0.25,
        }
    }
}

impl AugmentConfig {
    /// Rejects ranges and probabilities that torchvision would reject, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid { key: key.into(), message: why.into() });
        let a = self;
        let range = |r: [f64; 2]| r[0] > 0.0 && r[0] <= r[1];
        if !range(a.crop_scale) || a.crop_scale[1] > 1.0 {
            return bad("augment.crop_scale", "must be [lo, hi] with 0 < lo ≤ hi ≤ 1");
        }
        if !range(a.crop_ratio) {
            return bad("augment.crop_ratio", "must be [lo, hi] with 0 < lo ≤ hi");
        }
        for (k, p) in [("augment.flip", a.flip), ("augment.jitter_prob", a.jitter_prob)] {
            if !(0.0..=1.0).contains(&p) {
                return bad(k, "is a probability: must be in [0, 1]");
            }
        }
        for (k, x) in [("augment.brightness", a.brightness), ("augment.contrast", a.contrast), ("augment.saturation", a.saturation)] {
            if x.is_nan() || x < 0.0 {
                return bad(k, "must be ≥ 0");
            }
        }
        if !(0.0..=0.5).contains(&a.hue) {
            return bad("augment.hue", "must be in [0, 0.5]");
        }
        if a.std.is_nan() || a.std <= 0.0 {
            return bad("augment.std", "must be > 0");
        }
        Ok(())
    }
}

/// Reads a typed TOML config; unknown keys are errors that name the file.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.into(), source: e })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The root seed: weights, splits, label subset, batches and augmentation derive from it.
    pub seed: u64,
    pub epochs: u32,
    /// Videos per batch (one positive pair each).
    pub batch_size: usize,
    /// Training images are image_size × image_size.
    pub image_size: i64,
    pub device: DeviceChoice,
    pub pairs: Pairs,
    pub method: Method,
    /// NT-Xent τ (also of the validation loss of every method).
    pub temperature: f64,
    /// In-video hard negatives per video and batch (UCL, Basu et al. 2022): frames of the pair's
    /// own video far from its anchor in time, added to every anchor's negatives; 0 = none.
    pub hard_negatives: u32,
    /// Weight of the classification loss.
    pub lambda: f64,
    /// Fraction of labelled videos whose labels are used.
    pub label_rate: f64,
    /// false: pure supervised pretraining on the labelled videos.
    pub contrastive: bool,
    pub classifier_on: ClassifierOn,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_epochs: u32,
    /// Fraction of videos held out for the validation NT-Xent.
    pub val_fraction: f64,
    /// Train on these sub-datasets of the store only (empty: all of them).
    pub subdatasets: Vec<String>,
    /// Backbone initialisation: a torchvision-named ResNet-18 safetensors file; none = random.
    pub init: Option<String>,
    /// Mixed precision (fp16 autocast with loss scaling); only on CUDA.
    pub mixed_precision: bool,
    /// libtorch intra-op threads (0 = all cores).
    pub threads: usize,
    /// Batch-assembly threads and how many batches they may prepare ahead.
    pub loader_threads: usize,
    pub prefetch: usize,
    pub spg: SpgConfig,
    pub moco: MocoConfig,
    pub ivpp: IvppConfig,
    pub hard_negative_schedule: HardNegativeSchedule,
    pub augment: AugmentConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 0,
            epochs: 300,
            batch_size: 32,
            image_size: 224,
            device: DeviceChoice::Auto,
            pairs: Pairs::Spg,
            method: Method::NtXent,
            temperature: 0.5,
            hard_negatives: 0,
            lambda: 0.2,
            label_rate: 0.01,
            contrastive: true,
            classifier_on: ClassifierOn::Backbone,
            lr: 3e-4,
            weight_decay: 1e-4,
            warmup_epochs: 10,
            val_fraction: 0.2,
            subdatasets: Vec::new(),
            init: None,
            mixed_precision: true,
            threads: 0,
            loader_threads: 1,
            prefetch: 4,
            spg: SpgConfig::default(),
            moco: MocoConfig::default(),
            ivpp: IvppConfig::default(),
            hard_negative_schedule: HardNegativeSchedule::default(),
            augment: AugmentConfig::default(),
        }
    }
}

/// Training flags that change what a run computes; `--resume` refuses each of them (a resumed run
/// continues exactly). Each field is a config key of the same name; `None` keeps the file's (or
/// the default) value.
#[derive(Debug, Clone, Default, Serialize, Args)]
pub struct RunOverrides {
    /// Passes over the training videos (paper: 300).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    /// Training images are SIZE×SIZE (paper: 224).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<i64>,
    /// Videos per batch.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// spg, rstfv, rsofv, rs (or simclr) or ivpp.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<Pairs>,
    /// nt-xent (in-batch negatives) or moco (momentum encoder and a queue of negatives).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// In-video hard negatives per video and batch (0: none).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard_negatives: Option<u32>,
    /// Weight of the classification loss (0: pure self-supervision).
    #[arg(long, allow_hyphen_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// Fraction of labelled videos whose labels are used.
    #[arg(long, allow_hyphen_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_rate: Option<f64>,
    /// The one seed everything random derives from.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Adam learning rate (peak, after warm-up).
    #[arg(long, allow_hyphen_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Epochs of linear learning-rate warm-up before the cosine decay (paper: 10).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<u32>,
    /// on, or off for pure supervised pretraining.
    #[arg(long, value_parser = parse_on_off)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contrastive: Option<bool>,
    /// A torchvision-named ResNet-18 safetensors file for the backbone, or "random".
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "random_is_none")]
    pub init: Option<String>,
    /// Train on these sub-datasets of the store only, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdatasets: Option<Vec<String>>,
}

/// `--init random` is the config's `init = none`.
fn random_is_none<S: serde::Serializer>(init: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    init.as_deref().filter(|i| *i != "random").serialize(s)
}

/// Training flags that change only how a run runs, not its results: the only ones `--resume`
/// accepts.
#[derive(Debug, Clone, Default, Serialize, Args)]
pub struct HowOverrides {
    /// auto, cpu or cuda.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceChoice>,
    /// libtorch threads (0: all cores).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Batch-assembly threads.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loader_threads: Option<usize>,
}

/// Every training flag that overrides a config key.
#[derive(Debug, Clone, Default, Serialize, Args)]
pub struct Overrides {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunOverrides,
    #[command(flatten)]
    #[serde(flatten)]
    pub how: HowOverrides,
}

impl RunOverrides {
    /// The flags given (`--epochs`, …), as typed on the command line.
    pub fn given(&self) -> Vec<String> {
        given_flags(self)
    }
}

/// `config` with `overrides` on top: both serialised, each given override replacing the config
/// key of its name. An override whose name is no config key is an error, never silently nothing;
/// so is a value the key cannot take (NaN and infinities serialise to no number), naming the key.
pub fn merge<C: Serialize + serde::de::DeserializeOwned>(config: &C, overrides: &impl Serialize) -> Result<C, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid { key: key.into(), message };
    let (base, given) = (serde_json::to_value(config), serde_json::to_value(overrides));
    let (Ok(serde_json::Value::Object(base)), Ok(serde_json::Value::Object(given))) = (base, given) else {
        return Err(invalid("(command line)", "config and overrides must serialise to tables".into()));
    };
    let with = |pairs: &[(&String, &serde_json::Value)]| -> Result<C, ConfigError> {
        let mut merged = base.clone();
        for (key, value) in pairs {
            let slot = merged.get_mut(key.as_str()).ok_or_else(|| invalid(key, "is set by a command-line flag but is no config key".into()))?;
            *slot = (*value).clone();
        }
        serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| invalid(pairs.first().map_or("", |p| p.0), format!("cannot take the value given on the command line ({e})")))
    };
    let pairs: Vec<(&String, &serde_json::Value)> = given.iter().collect();
    for pair in &pairs {
        with(std::slice::from_ref(pair))?;
    }
    with(&pairs)
}

/// `T`'s arguments as (id, `--long`) pairs, in the order they are declared.
fn flags_of<T: Args>() -> Vec<(String, String)> {
    let command = T::augment_args(clap::Command::new("flags"));
    command.get_arguments().map(|a| (a.get_id().to_string(), format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())))).collect()
}

/// `T`'s long flags (`--name`), in the order they are declared.
pub fn long_flags<T: Args>() -> Vec<String> {
    flags_of::<T>().into_iter().map(|(_, flag)| flag).collect()
}

/// The long flags of the fields that `overrides` serialises, i.e. the ones given.
pub fn given_flags<T: Serialize + Args>(overrides: &T) -> Vec<String> {
    let given = serde_json::to_value(overrides).unwrap_or_default();
    flags_of::<T>().into_iter().filter(|(id, _)| given.get(id).is_some()).map(|(_, flag)| flag).collect()
}

/// For each long flag of `T`, the values of `T` that parse from it with each of `samples` (a flag
/// that takes no value is given alone). Lets tests cover every flag of a struct without listing
/// them by hand.
pub fn each_flag<T: Args + FromArgMatches>(samples: &[&str]) -> Vec<(String, Vec<T>)> {
    let command = T::augment_args(clap::Command::new("flags").no_binary_name(true));
    let parse = |args: &[&str]| command.clone().try_get_matches_from(args).ok().and_then(|m| T::from_arg_matches(&m).ok());
    long_flags::<T>()
        .into_iter()
        .map(|flag| {
            let alone = parse(&[flag.as_str()]);
            let values = match alone {
                Some(v) => vec![v],
                None => samples.iter().filter_map(|v| parse(&[flag.as_str(), v])).collect(),
            };
            (flag, values)
        })
        .collect()
}

impl TrainConfig {
    pub fn load(path: &Path) -> Result<TrainConfig, ConfigError> {
        load_toml(path)
    }

    pub fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        *self = merge(self, o)?;
        Ok(())
    }

    /// Rejects values that would fail later or train nonsense, naming the key to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid { key: key.into(), message: why.into() });
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.contrastive && self.batch_size < 2 {
            return bad("batch_size", "must be at least 2 with contrastive on: NT-Xent needs at least 2 pairs per batch (the other videos are the negatives); batch size 1 is only for contrastive off");
        }
        if !(16..=1024).contains(&self.image_size) {
            return bad("image_size", "must be between 16 and 1024 pixels");
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return bad("temperature", "must be > 0");
        }
        if self.lambda.is_nan() || self.lambda < 0.0 {
            return bad("lambda", "must be ≥ 0");
        }
        if !(0.0..=1.0).contains(&self.label_rate) {
            return bad("label_rate", "must be in [0, 1]");
        }
        if !self.contrastive && (self.lambda == 0.0 || self.label_rate == 0.0) {
            return bad("contrastive", "off leaves only the classification loss: set lambda > 0 and label_rate > 0");
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad("val_fraction", "must be in [0, 1)");
        }
        if self.lr.is_nan() || self.lr <= 0.0 || self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad("lr", "lr must be > 0 and weight_decay ≥ 0");
        }
        if self.loader_threads == 0 || self.prefetch == 0 {
            return bad("loader_threads", "loader_threads and prefetch must be at least 1");
        }
        if self.spg.alpha.is_nan() || self.spg.alpha <= 0.0 || self.spg.beta.is_nan() || self.spg.beta <= 0.0 {
            return bad("spg.alpha", "Beta parameters alpha and beta must be > 0");
        }
        let m = &self.moco;
        if m.momentum.is_nan() || !(0.0..1.0).contains(&m.momentum) {
            return bad("moco.momentum", "must be in [0, 1)");
        }
        if m.queue == 0 {
            return bad("moco.queue", "must be at least 1");
        }
        if m.temperature.is_nan() || m.temperature <= 0.0 {
            return bad("moco.temperature", "must be > 0");
        }
        if self.ivpp.window_s.is_nan() || self.ivpp.window_s < 0.0 {
            return bad("ivpp.window_s", "must be ≥ 0 seconds");
        }
        let h = &self.hard_negative_schedule;
        let band = |b: [f64; 2]| 0.0 < b[0] && b[0] <= b[1] && b[1] <= 1.0;
        if !band(h.start) || !band(h.end) {
            return bad("hard_negative_schedule", "start and end must be bands [lo, hi] with 0 < lo ≤ hi ≤ 1 (fractions of a video's duration)");
        }
        if !(0.0..=1.0).contains(&h.hold) {
            return bad("hard_negative_schedule.hold", "is a fraction of the epochs: must be in [0, 1]");
        }
        if self.hard_negatives > 0 && self.method == Method::Moco {
            return bad("hard_negatives", "is for method nt-xent; MoCo's negatives are its queue");
        }
        if self.hard_negatives > 0 && self.pairs == Pairs::Rs {
            return bad("hard_negatives", "needs a video-aware pair strategy (rs ignores videos)");
        }
        if self.hard_negatives > 16 {
            return bad("hard_negatives", "must be at most 16 per video (each is one more image through the network)");
        }
        self.augment.validate()?;
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        // Serialising a plain struct of numbers, strings and enums cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_unknown_keys_fail() {
        let c = TrainConfig::default();
        c.validate().unwrap();
        let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        let partial: TrainConfig = toml::from_str("epochs = 3\n[spg]\nshared_xi = true\n").unwrap();
        assert_eq!((partial.epochs, partial.spg.shared_xi, partial.spg.alpha), (3, true, 0.5));
        let err = toml::from_str::<TrainConfig>("epoch = 3\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
        assert!(toml::from_str::<TrainConfig>("[augment]\nflip_p = 1\n").is_err());
    }

    #[test]
    fn overrides_and_validation() {
        let mut c = TrainConfig { init: Some("x.safetensors".into()), ..Default::default() };
        let run = RunOverrides { epochs: Some(2), pairs: Some(Pairs::Rs), init: Some("random".into()), ..Default::default() };
        c.apply(&Overrides { run, ..Default::default() }).unwrap();
        assert_eq!((c.epochs, c.pairs, c.init.clone()), (2, Pairs::Rs, None));
        // SimCLR as the paper ran it is RS, by either name, on the command line and in a config.
        assert_eq!(("simclr".parse::<Pairs>(), "rs".parse::<Pairs>()), (Ok(Pairs::Rs), Ok(Pairs::Rs)));
        assert_eq!(toml::from_str::<TrainConfig>("pairs = \"simclr\"\n").unwrap().pairs, Pairs::Rs);
        c.label_rate = 1.5;
        assert!(matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "label_rate"));
        let mut c = TrainConfig { contrastive: false, lambda: 0.0, ..Default::default() };
        assert!(c.validate().is_err());
        c.lambda = 1.0;
        c.validate().unwrap();
    }

    /// Applies each flag of `O` (every value `samples` gives it) to `default` and returns, per
    /// flag, the one config key it changes; panics naming a flag that changes no key, or several.
    pub(crate) fn key_of_each_flag<C: Serialize + Clone, O: Args + FromArgMatches>(
        default: &C,
        samples: &[&str],
        apply: impl Fn(&mut C, &O) -> Result<(), ConfigError>,
    ) -> Vec<(String, String)> {
        let before = serde_json::to_value(default).unwrap();
        let flags = each_flag::<O>(samples);
        assert!(!flags.is_empty());
        let mut keys = Vec::new();
        for (flag, values) in flags {
            let key = values.iter().find_map(|o| {
                let mut c = default.clone();
                apply(&mut c, o).unwrap_or_else(|e| panic!("{flag}: {e}"));
                let after = serde_json::to_value(&c).unwrap();
                let changed: Vec<&String> = after.as_object().unwrap().iter().filter(|(k, v)| before[k.as_str()] != **v).map(|(k, _)| k).collect();
                (changed.len() == 1).then(|| changed[0].clone())
            });
            keys.push((flag.clone(), key.unwrap_or_else(|| panic!("{flag} must change exactly one config key; values tried: {samples:?}"))));
        }
        keys
    }

    #[test]
    fn every_training_flag_sets_the_config_key_of_its_name() {
        let keys =
            key_of_each_flag(&TrainConfig::default(), &["7", "rs", "moco", "cpu", "off", "x.safetensors"], |c: &mut TrainConfig, o: &Overrides| c.apply(o));
        assert_eq!(keys.len(), 17, "{keys:?}");
        for (flag, key) in keys {
            assert_eq!(flag, format!("--{}", key.replace('_', "-")));
        }
        // A name that is no config key is an error, not an override that silently does nothing.
        #[derive(Serialize)]
        struct Stray {
            epoch: u32,
        }
        let err = merge(&TrainConfig::default(), &Stray { epoch: 3 }).unwrap_err();
        assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "epoch"), "{err}");
        // A value the key cannot take is named by its key.
        let run = RunOverrides { epochs: Some(3), lr: Some(f64::NAN), ..Default::default() };
        let err = TrainConfig::default().apply(&Overrides { run, ..Default::default() }).unwrap_err();
        assert!(matches!(&err, ConfigError::Invalid { key, .. } if key == "lr"), "{err}");
    }

    #[test]
    fn contrastive_training_needs_two_videos_per_batch() {
        let one = TrainConfig { batch_size: 1, ..Default::default() };
        let err = one.validate().unwrap_err().to_string();
        assert!(matches!(one.validate(), Err(ConfigError::Invalid { key, .. }) if key == "batch_size"), "{err}");
        assert!(err.contains("NT-Xent") && err.contains("at least 2"), "{err}");
        TrainConfig { batch_size: 2, ..Default::default() }.validate().unwrap();
        // Supervised pretraining alone has no negatives to need: one video (two views) per batch.
        TrainConfig { batch_size: 1, contrastive: false, label_rate: 1.0, ..Default::default() }.validate().unwrap();
    }
}
