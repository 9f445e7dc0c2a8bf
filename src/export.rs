//! `usctl export` (docs/export-format.md, format 1): the backbone of a training checkpoint alone,
//! under torchvision's ResNet-18 names and shapes (no `fc`), with the `num_batches_tracked`
//! counters torchvision's batch norms carry, so that
//! `torchvision.models.resnet18().load_state_dict(file, strict=False)` misses only `fc.*`.
//! A model card (JSON) goes into the file's header and beside it. Needs no libtorch: tensors
//! are copied byte for byte.

use crate::error::ExportError;
use crate::eval::report::Report;
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "usctl-backbone";
pub const FORMAT_VERSION: u32 = 1;
/// Header key of a training checkpoint's state (src/torch/checkpoint.rs writes it).
pub const STATE_KEY: &str = "usctl";
const BACKBONE: &str = "backbone.";

/// One tensor's bytes as safetensors stores them (little-endian, row-major).
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes a safetensors file under a temporary name, syncs it and renames it into place, so a
/// crash never leaves a half-written file under the real name.
pub fn write_safetensors(path: &Path, tensors: &[(String, RawTensor)], metadata: Option<HashMap<String, String>>) -> Result<(), String> {
    crate::files::replace_with(path, |tmp| {
        safetensors::tensor::serialize_to_file(tensors.iter().map(|(n, r)| (n.as_str(), r)), &metadata, tmp).map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The model card's path: FILE.safetensors → FILE.json.
pub fn card_path(out: &Path) -> PathBuf {
    out.with_extension("json")
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn read_toml(path: &Path) -> Option<Value> {
    let v: toml::Value = toml::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    serde_json::to_value(v).ok()
}

#[derive(Debug)]
pub struct Exported {
    pub tensors: usize,
    pub parameters: usize,
    pub card: Value,
}

/// Whether the files an export writes may be written: an existing `out` or model card only with
/// `force`, and a `.json` that is not a usctl model card never.
fn check_targets(out: &Path, force: bool) -> Result<(), ExportError> {
    let card = card_path(out);
    if card == out {
        return Err(ExportError::JsonOut { path: out.to_path_buf() });
    }
    if card.exists() && read_json(&card).is_none_or(|v| v.get("format").and_then(Value::as_str) != Some(FORMAT)) {
        return Err(ExportError::NotACard { path: card });
    }
    if let Some(p) = [out, card.as_path()].into_iter().find(|p| p.exists()).filter(|_| !force) {
        return Err(ExportError::Exists { path: p.to_path_buf() });
    }
    Ok(())
}

/// Exports `checkpoint`'s backbone to `out` (and its card to `card_path(out)`); `eval` is an
/// evaluation directory whose summary goes into the card. Existing files are replaced only with
/// `force` (and a `.json` that is not a model card never).
pub fn export(checkpoint: &Path, out: &Path, eval: Option<&Path>, force: bool) -> Result<Exported, ExportError> {
    let fail = |message: String| ExportError::Checkpoint { path: checkpoint.to_path_buf(), message };
    if out.canonicalize().ok().is_some_and(|o| checkpoint.canonicalize().ok() == Some(o)) {
        return Err(fail("--out names the checkpoint itself; choose another file".into()));
    }
    check_targets(out, force)?;
    let bytes = std::fs::read(checkpoint).map_err(ExportError::io(checkpoint))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| fail(format!("not a safetensors file ({e:?}); give last.safetensors or best.safetensors of a `usctl train` run")))?;
    let state: Value = SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().as_ref()?.get(STATE_KEY).cloned())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    let mut tensors: Vec<(String, RawTensor)> = Vec::new();
    for (name, view) in st.tensors() {
        if let Some(short) = name.strip_prefix(BACKBONE) {
            tensors.push((short.to_string(), RawTensor { dtype: view.dtype(), shape: view.shape().to_vec(), data: view.data().to_vec() }));
        }
    }
    let has = |n: &str| tensors.iter().any(|(k, _)| k == n);
    if tensors.is_empty() || !has("conv1.weight") || !has("layer4.1.bn2.running_var") {
        return Err(fail(format!(
            "holds no complete `backbone.*` ResNet-18 ({} backbone tensors); give last.safetensors or best.safetensors of a `usctl train` run",
            tensors.len()
        )));
    }
    // Batch norm counts its training batches; usctl's batch norms update once per training step.
    let steps = state.get("step").and_then(Value::as_i64).unwrap_or(0);
    let norms: Vec<String> = tensors.iter().filter_map(|(k, _)| k.strip_suffix(".running_mean").map(String::from)).collect();
    for n in norms {
        tensors.push((format!("{n}.num_batches_tracked"), RawTensor { dtype: Dtype::I64, shape: vec![], data: steps.to_le_bytes().to_vec() }));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let parameters: usize =
        tensors.iter().filter(|(k, t)| t.dtype != Dtype::I64 && !k.contains("running_")).map(|(_, t)| t.shape.iter().product::<usize>()).sum();

    let run_dir = checkpoint.parent().unwrap_or(Path::new("."));
    let config = read_toml(&run_dir.join("config.toml"));
    let evaluation = match eval {
        Some(dir) => {
            let r = Report::read(dir)?;
            Some(json!({
                "report": dir.display().to_string(),
                "title": r.title,
                "dataset": r.store.dataset,
                "store_version": r.store.version_id,
                "protocol": r.protocol,
                "selection": r.selection,
                "classes": r.classes,
                "folds": r.config.folds,
                "seeds": r.config.seeds,
                "frame": {"accuracy": r.frame.accuracy, "balanced_accuracy": r.frame.balanced_accuracy, "macro_f1": r.frame.macro_f1, "auc": r.frame.auc},
                "video": {"accuracy": r.video.accuracy, "balanced_accuracy": r.video.balanced_accuracy, "macro_f1": r.video.macro_f1, "auc": r.video.auc},
            }))
        }
        None => None,
    };
    let norm = |k: &str| config.as_ref().and_then(|c| c.get("augment")?.get(k)?.as_f64());
    let card = json!({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": "torchvision resnet18 without fc: 512-d features after global average pooling",
        "input": {
            "channels": "gray; give 3 identical channels (or sum conv1.weight over its input channels for 1)",
            "scale": "pixel / 255, then (x - mean) / std",
            "mean": norm("mean"),
            "std": norm("std"),
            "trained_image_size": config.as_ref().and_then(|c| c.get("image_size").cloned()),
        },
        "tensors": tensors.len(),
        "parameters": parameters,
        "checkpoint": {
            "path": checkpoint.display().to_string(),
            "sha256": crate::hash::sha256_hex(&bytes),
            "epoch": state.get("epoch"),
            "step": state.get("step"),
            "seed": state.get("seed"),
        },
        "store_version": state.get("store_version"),
        "pretraining_classes": state.get("classes"),
        "training_config": config,
        "provenance": read_json(&run_dir.join("provenance.json")),
        "evaluation": evaluation,
        "exported_by": format!("usctl {} ({})", env!("CARGO_PKG_VERSION"), option_env!("USCTL_GIT_COMMIT").unwrap_or("unknown")),
    });
    let card_text = serde_json::to_string_pretty(&card).unwrap_or_default();
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("model_card".to_string(), card_text.clone()),
    ]);
    write_safetensors(out, &tensors, Some(metadata)).map_err(|message| ExportError::Checkpoint { path: out.to_path_buf(), message })?;
    let card_file = card_path(out);
    crate::eval::report::write_atomic(&card_file, format!("{card_text}\n").as_bytes())?;
    Ok(Exported { tensors: tensors.len(), parameters, card })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: &[usize], start: f32) -> RawTensor {
        let n: usize = shape.iter().product();
        RawTensor { dtype: Dtype::F32, shape: shape.to_vec(), data: (0..n).flat_map(|i| (start + i as f32).to_le_bytes()).collect() }
    }

    #[test]
    fn keeps_the_backbone_renamed_and_adds_batch_norm_counters() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("last.safetensors");
        let tensors = vec![
            ("backbone.conv1.weight".to_string(), f32s(&[2, 1, 1, 1], 0.0)),
            ("backbone.bn1.running_mean".to_string(), f32s(&[2], 5.0)),
            ("backbone.layer4.1.bn2.running_mean".to_string(), f32s(&[2], 7.0)),
            ("backbone.layer4.1.bn2.running_var".to_string(), f32s(&[2], 9.0)),
            ("heads.classifier.weight".to_string(), f32s(&[3, 2], 0.0)),
            ("adam.m.backbone.conv1.weight".to_string(), f32s(&[2, 1, 1, 1], 0.0)),
        ];
        let state = HashMap::from([(STATE_KEY.to_string(), json!({"step": 42, "epoch": 3, "store_version": "abc"}).to_string())]);
        write_safetensors(&ckpt, &tensors, Some(state)).unwrap();
        std::fs::write(dir.path().join("config.toml"), "image_size = 64\n[augment]\nmean = 0.5\nstd = 0.25\n").unwrap();
        let out = dir.path().join("backbone.safetensors");
        let e = export(&ckpt, &out, None, false).unwrap();
        assert_eq!((e.tensors, e.parameters), (6, 2));
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = st.names().into_iter().cloned().collect::<Vec<_>>();
        names.sort();
        assert_eq!(
            names,
            [
                "bn1.num_batches_tracked",
                "bn1.running_mean",
                "conv1.weight",
                "layer4.1.bn2.num_batches_tracked",
                "layer4.1.bn2.running_mean",
                "layer4.1.bn2.running_var"
            ]
        );
        let counter = st.tensor("bn1.num_batches_tracked").unwrap();
        assert_eq!((counter.dtype(), counter.shape(), counter.data()), (Dtype::I64, &[][..], &42i64.to_le_bytes()[..]));
        assert_eq!(st.tensor("bn1.running_mean").unwrap().data(), &tensors[1].1.data[..], "bytes are copied unchanged");
        let card: Value = serde_json::from_slice(&std::fs::read(card_path(&out)).unwrap()).unwrap();
        assert_eq!(
            (card["input"]["mean"].as_f64(), card["input"]["trained_image_size"].as_i64(), card["store_version"].as_str()),
            (Some(0.5), Some(64), Some("abc"))
        );
        assert_eq!(card["checkpoint"]["step"], 42);

        // Not a checkpoint, a checkpoint without a backbone, and --out = the checkpoint: refused.
        std::fs::write(dir.path().join("x.safetensors"), b"nope").unwrap();
        assert!(export(&dir.path().join("x.safetensors"), &out, None, true).unwrap_err().to_string().contains("not a safetensors file"));
        let err = export(&out, &dir.path().join("again.safetensors"), None, false).unwrap_err().to_string();
        assert!(err.contains("no complete `backbone.*`"), "{err}");
        assert!(export(&ckpt, &ckpt, None, true).is_err());
    }

    #[test]
    fn never_overwrites_without_force_nor_a_json_that_is_not_a_model_card() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("last.safetensors");
        let tensors = vec![("backbone.conv1.weight".to_string(), f32s(&[2, 1, 1, 1], 0.0)), ("backbone.layer4.1.bn2.running_var".to_string(), f32s(&[2], 9.0))];
        write_safetensors(&ckpt, &tensors, None).unwrap();
        let out = dir.path().join("backbone.safetensors");
        export(&ckpt, &out, None, false).unwrap();

        // An existing export (file and card): refused without --force, naming the file and flag.
        std::fs::write(&out, b"older export").unwrap();
        let err = export(&ckpt, &out, None, false).unwrap_err().to_string();
        assert!(err.contains("backbone.safetensors") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"older export", "untouched");
        // Only the card left: refused too, naming the card.
        std::fs::remove_file(&out).unwrap();
        let err = export(&ckpt, &out, None, false).unwrap_err().to_string();
        assert!(err.contains("backbone.json") && err.contains("--force"), "{err}");
        assert!(!out.exists());
        // With --force both are replaced.
        export(&ckpt, &out, None, true).unwrap();
        assert!(SafeTensors::deserialize(&std::fs::read(&out).unwrap()).is_ok() && card_path(&out).is_file());

        // A .json beside --out that is not a usctl model card is never overwritten, even with --force.
        let other = dir.path().join("weights.safetensors");
        std::fs::write(card_path(&other), b"{\"my\": \"notes\"}").unwrap();
        for force in [false, true] {
            let err = export(&ckpt, &other, None, force).unwrap_err().to_string();
            assert!(err.contains("weights.json") && err.contains("not a usctl model card") && err.contains("even with --force"), "{err}");
            assert_eq!(std::fs::read(card_path(&other)).unwrap(), b"{\"my\": \"notes\"}");
            assert!(!other.exists(), "nothing written");
        }
        // --out FILE.json would put the card over the backbone.
        let err = export(&ckpt, &dir.path().join("b.json"), None, true).unwrap_err().to_string();
        assert!(err.contains("b.json"), "{err}");
    }
}
