//! Checkpoint files (docs/checkpoint-format.md, format 3): one safetensors file holding the
//! weights (`backbone.*` with torchvision names, `heads.*`), the optimiser moments (`adam.*`), for
//! MoCo runs the key encoder and queue (`moco.*`) and,
//! in the header's `__metadata__`, the training state as JSON under the key `usctl`. One file means
//! weights and state can never disagree; it is written to a temporary name, synced and renamed.

use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};
use usctl::error::TrainError;
use usctl::export::{write_safetensors, RawTensor, STATE_KEY};

pub const FORMAT: &str = "usctl-checkpoint";
pub const FORMAT_VERSION: u32 = 3;
/// Format 1 lacks `adam_waiting`, formats 1 and 2 `moco_ptr` (they predate MoCo runs); both are
/// still read (docs/checkpoint-format.md).
const READS: [u32; 3] = [1, 2, 3];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: String,
    pub format_version: u32,
    /// Epochs completed; a resumed run starts at this epoch.
    pub epoch: u32,
    /// Training steps taken (the learning-rate schedule counts them).
    pub step: u64,
    /// Adam updates applied (its bias correction counts them; fewer than `step` when fp16 loss
    /// scaling skipped overflowing steps).
    pub adam_step: u64,
    /// Trainable tensors that have had no gradient yet, which Adam skips until their first (format
    /// 2; absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adam_waiting: Option<Vec<String>>,
    pub seed: u64,
    pub best_val: Option<f64>,
    pub best_epoch: Option<u32>,
    pub loss_scale: crate::optim::LossScale,
    pub store_version: String,
    pub classes: Vec<String>,
    /// sha256 of the resolved config.toml the run was started with.
    pub config_sha256: String,
    /// MoCo runs (format 3): where the next key goes in the queue (`moco.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moco_ptr: Option<u64>,
}

impl State {
    /// The state of a run that has not trained yet.
    pub fn new(c: &usctl::config::TrainConfig, store: &usctl::store::StoreMeta, config_sha256: String) -> State {
        State {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            epoch: 0,
            step: 0,
            adam_step: 0,
            adam_waiting: None,
            seed: c.seed,
            best_val: None,
            best_epoch: None,
            loss_scale: crate::optim::LossScale::new(),
            store_version: store.version_id.clone(),
            classes: store.classes.clone(),
            config_sha256,
            moco_ptr: None,
        }
    }
}

fn raw(t: &Tensor) -> Result<RawTensor, String> {
    let t = t.detach().to_device(Device::Cpu).contiguous();
    let shape = t.size().iter().map(|&d| d as usize).collect();
    let (dtype, data) = match t.kind() {
        Kind::Int64 => (Dtype::I64, Vec::<i64>::try_from(t.flatten(0, -1)).map_err(|e| e.to_string())?.iter().flat_map(|x| x.to_le_bytes()).collect()),
        _ => {
            (Dtype::F32, Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).map_err(|e| e.to_string())?.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    };
    Ok(RawTensor { dtype, shape, data })
}

/// Writes named tensors (f32, or i64 for integer ones) and an optional state, atomically.
pub fn write(path: &Path, tensors: &[(String, Tensor)], state: Option<&State>) -> Result<(), TrainError> {
    let fail = |message: String| TrainError::Checkpoint { path: path.to_path_buf(), message };
    let raws = tensors.iter().map(|(n, t)| Ok((n.clone(), raw(t)?))).collect::<Result<Vec<_>, String>>().map_err(fail)?;
    let meta = state.map(|s| HashMap::from([(STATE_KEY.to_string(), serde_json::to_string(s).unwrap_or_default())]));
    write_safetensors(path, &raws, meta).map_err(fail)
}

/// Reads every tensor (f32, f64, f16, bf16 or i64) onto the CPU, and the state if there is one.
pub fn read(path: &Path) -> Result<(HashMap<String, Tensor>, Option<State>), TrainError> {
    let fail = |message: String| TrainError::Checkpoint { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| fail(format!("not a safetensors file ({e:?}); give a file written by usctl or by safetensors.torch.save_file")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let d = view.data();
        let t = match view.dtype() {
            Dtype::F32 => Tensor::from_slice(&d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>()),
            Dtype::F64 => Tensor::from_slice(&d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect::<Vec<_>>()),
            Dtype::I64 => Tensor::from_slice(&d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect::<Vec<_>>()),
            Dtype::F16 | Dtype::BF16 => {
                let kind = if view.dtype() == Dtype::F16 { Kind::Half } else { Kind::BFloat16 };
                let bits: Vec<i16> = d.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
                Tensor::from_slice(&bits).view_dtype(kind).to_kind(Kind::Float)
            }
            other => return Err(fail(format!("tensor {name} has dtype {other:?}; only f32, f64, f16, bf16 and i64 are read"))),
        };
        out.insert(name, t.reshape(&shape));
    }
    let state = match SafeTensors::read_metadata(&bytes).map_err(|e| fail(format!("{e:?}")))?.1.metadata().as_ref().and_then(|m| m.get(STATE_KEY)) {
        None => None,
        Some(json) => {
            let s: State = serde_json::from_str(json).map_err(|e| fail(format!("its usctl state is not readable: {e}")))?;
            if s.format != FORMAT || !READS.contains(&s.format_version) {
                return Err(fail(format!("checkpoint format {} {}; this usctl reads {FORMAT} {READS:?}", s.format, s.format_version)));
            }
            Some(s)
        }
    };
    Ok((out, state))
}

/// Tensors under `prefix.`, with the prefix removed.
pub fn strip(tensors: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    let p = format!("{prefix}.");
    tensors.iter().filter_map(|(k, t)| Some((k.strip_prefix(&p)?.to_string(), t.shallow_clone()))).collect()
}

/// Loads a backbone from a usctl checkpoint (its `backbone.*` tensors) or from a file with
/// torchvision's names (an export, or torchvision's own weights); returns the names not used.
pub fn load_backbone(vs: &tch::nn::VarStore, path: &Path) -> Result<Vec<String>, TrainError> {
    let (saved, _) = read(path)?;
    let weights = if saved.keys().any(|k| k.starts_with("backbone.")) { strip(&saved, "backbone") } else { saved };
    load_into(vs, &weights, path)
}

/// Copies `saved` into the variables of `vs` (moving to their device and kind). Every variable must
/// be present with its shape; extra saved tensors are returned (e.g. torchvision's fc.*).
pub fn load_into(vs: &tch::nn::VarStore, saved: &HashMap<String, Tensor>, path: &Path) -> Result<Vec<String>, TrainError> {
    let fail = |message: String| TrainError::Checkpoint { path: path.to_path_buf(), message };
    let vars = vs.variables();
    let mut missing: Vec<&String> = vars.keys().filter(|k| !saved.contains_key(*k)).collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(fail(format!("lacks {} of the model's tensors, e.g. {}; is it a ResNet-18 with torchvision names?", missing.len(), missing[0])));
    }
    tch::no_grad(|| {
        for (name, mut var) in vars.iter().map(|(k, v)| (k, v.shallow_clone())) {
            let src = &saved[name];
            if src.size() != var.size() {
                return Err(fail(format!("{name} has shape {:?}, the model needs {:?}", src.size(), var.size())));
            }
            var.copy_(&src.to_device(var.device()).to_kind(var.kind()));
        }
        Ok(())
    })?;
    let mut extra: Vec<String> = saved.keys().filter(|k| !vars.contains_key(*k)).cloned().collect();
    extra.sort();
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let a = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        let b = Tensor::from_slice(&[7i64]);
        let state = State {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            epoch: 3,
            step: 42,
            adam_step: 41,
            adam_waiting: Some(vec!["heads.classifier.bias".into()]),
            seed: 9,
            best_val: Some(1.5),
            best_epoch: Some(2),
            loss_scale: Default::default(),
            store_version: "abc".into(),
            classes: vec!["x".into()],
            config_sha256: "00".into(),
            moco_ptr: Some(5),
        };
        write(&path, &[("backbone.w".into(), a.shallow_clone()), ("n".into(), b.shallow_clone())], Some(&state)).unwrap();
        let (t, s) = read(&path).unwrap();
        assert!(t["backbone.w"].equal(&a) && t["n"].equal(&b));
        assert_eq!(s, Some(state));
        assert_eq!(strip(&t, "backbone").len(), 1);
        assert!(!dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("tmp")));
        std::fs::write(&path, b"not a checkpoint").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("c.safetensors") && err.contains("not a safetensors file"), "{err}");
    }
}
