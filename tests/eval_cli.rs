//! Pretrain → evaluate → export → report through the `usctl` front door on a small synthetic
//! store, and the exported backbone in torchvision itself (the project's venv).
mod common;
use common::*;
use safetensors::tensor::{Dtype, SafeTensors};
use std::path::Path;
use usctl::export::{write_safetensors, RawTensor};

fn eval(store: &Path, init: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(usctl()
        .args(["eval", "--quiet", "--store"])
        .arg(store)
        .arg("--init")
        .arg(init)
        .arg("--out")
        .arg(out)
        .args(["--folds", "2", "--seeds", "1", "--epochs", "2", "--image-size", "32", "--batch-size", "4", "--threads", "1"])
        .args(extra))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn f32s(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name).unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Backbone features of `input` with `weights`, computed by usctl.
fn features(weights: &Path, input: &Path, out: &Path) -> Vec<f32> {
    let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_usctl-torch"))
        .arg("features")
        .arg("--weights")
        .arg(weights)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out));
    assert!(o.status.success(), "{}", text(&o));
    f32s(out, "features")
}

#[test]
fn pretrain_evaluate_export_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = clips_store(d);
    let run_dir = d.join("run");
    let out = run(usctl()
        .args(["train", "--quiet", "--epochs", "1", "--image-size", "32", "--batch-size", "3", "--threads", "1", "--store"])
        .arg(&store)
        .arg("--out")
        .arg(&run_dir));
    assert!(out.status.success(), "{}", text(&out));
    let ckpt = run_dir.join("last.safetensors");

    // The clips differ only in hue, so in grey they are near-duplicates of each other: one
    // duplicate cluster, which leaves no second group for two folds.
    let out = eval(&store, &ckpt, &d.join("ev-grouped"), &["--protocol", "last3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("found 1") && text(&out).contains("--duplicate-groups off"), "{}", text(&out));

    // Evaluate the pretrained backbone (last3) and a random one (linear) on the same folds.
    let ev = d.join("ev-last3");
    let out = eval(&store, &ckpt, &ev, &["--protocol", "last3", "--duplicate-groups", "off"]);
    assert!(out.status.success(), "{}", text(&out));
    for f in ["eval.toml", "folds.json", "runs.jsonl", "report.json", "report.md", "confusion_frame.png", "confusion_video.png", "fold_accuracy.png"] {
        assert!(ev.join(f).is_file(), "{f}");
    }
    let report = json(&ev.join("report.json"));
    assert_eq!((report["label"].as_str(), report["protocol"].as_str(), report["videos"].as_u64()), (Some("run"), Some("last3"), Some(8)));
    assert_eq!(report["runs"].as_array().unwrap().len(), 2);
    assert_eq!(report["classes"], serde_json::json!(["a", "b"]));
    let ev2 = d.join("ev-random");
    let out = eval(
        &store,
        Path::new("random"),
        &ev2,
        &["--protocol", "linear", "--duplicate-groups", "off", "--folds-file", ev.join("folds.json").to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&ev2.join("folds.json")), json(&ev.join("folds.json")), "a reused split is the same split");
    // A folds file edited so that one video sits in two folds is refused.
    let mut leaky = json(&ev.join("folds.json"));
    leaky["items"][1]["patient"] = leaky["items"][0]["patient"].clone();
    leaky["items"][1]["video"] = leaky["items"][0]["video"].clone();
    let f0 = leaky["fold"][0].as_u64().unwrap();
    leaky["fold"][1] = serde_json::json!(1 - f0);
    std::fs::write(d.join("leaky.json"), leaky.to_string()).unwrap();
    let out = eval(&store, Path::new("random"), &d.join("ev-leaky"), &["--duplicate-groups", "off", "--folds-file", d.join("leaky.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("leaky.json") && text(&out).contains("both sides"), "{}", text(&out));

    // Side by side.
    let out = run(usctl().arg("report").arg(&ev).arg(&ev2).arg("--json").arg(d.join("table.json")));
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.contains("| run | – |") && table.contains("| random |"), "{table}");
    let j = json(&d.join("table.json"));
    assert_eq!((j["format"].as_str(), j["reports"].as_array().map(Vec::len)), (Some("usctl-report-table"), Some(2)));
    assert_eq!(j["reports"][0]["runs"].as_u64().unwrap() as usize, json(&ev.join("report.json"))["runs"].as_array().unwrap().len());

    // Export: torchvision names, a model card with the evaluation, and features identical to the
    // checkpoint's.
    let exported = d.join("backbone.safetensors");
    let out = run(usctl().arg("export").arg("--checkpoint").arg(&ckpt).arg("--out").arg(&exported).arg("--eval").arg(&ev));
    assert!(out.status.success(), "{}", text(&out));
    let card = json(&d.join("backbone.json"));
    assert_eq!(card["evaluation"]["protocol"], "last3");
    assert_eq!(card["training_config"]["image_size"], 32);
    assert_eq!((card["parameters"].as_u64(), card["tensors"].as_u64()), (Some(11_176_512), Some(120)), "torchvision's resnet18 without fc");
    let x: Vec<f32> = (0..2 * 48 * 48).map(|i| ((i as f32) * 0.37).sin() * 1.5).collect();
    let input = d.join("x.safetensors");
    write_safetensors(
        &input,
        &[("x".to_string(), RawTensor { dtype: Dtype::F32, shape: vec![2, 1, 48, 48], data: x.iter().flat_map(|v| v.to_le_bytes()).collect() })],
        None,
    )
    .unwrap();
    let from_ckpt = features(&ckpt, &input, &d.join("f1.safetensors"));
    let from_export = features(&exported, &input, &d.join("f2.safetensors"));
    assert_eq!(from_ckpt.len(), 2 * 512);
    assert_eq!(from_ckpt, from_export, "checkpoint → export → usctl gives identical features");

    let Some(python) = venv_python() else {
        eprintln!("eval_cli: no .venv python (make setup installs it); torchvision parity not checked");
        return;
    };
    let script = r#"
import json, os, sys, torch, torchvision
sys.path.insert(0, os.path.join(sys.argv[3], "scripts"))
from maskrcnn_from_export import load_safetensors as load
m = torchvision.models.resnet18()
r = m.load_state_dict(load(sys.argv[1]), strict=False)
m.fc = torch.nn.Identity()
m.eval()
x = load(sys.argv[2])["x"]
with torch.no_grad():
    f = m(x.expand(-1, 3, -1, -1))
print(json.dumps({"missing": sorted(r.missing_keys), "unexpected": sorted(r.unexpected_keys), "tracked": int(m.bn1.num_batches_tracked), "features": f.flatten().tolist()}))
"#;
    let out = run(std::process::Command::new(python).args(["-c", script]).arg(&exported).arg(&input).arg(env!("CARGO_MANIFEST_DIR")));
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["missing"], serde_json::json!(["fc.bias", "fc.weight"]));
    assert_eq!(v["unexpected"], serde_json::json!([]));
    assert!(v["tracked"].as_i64().unwrap() > 0, "num_batches_tracked carries the training steps");
    let tv: Vec<f32> = v["features"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let scale = tv.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1.0);
    let diff = tv.iter().zip(&from_export).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-4 * scale, "torchvision and usctl features differ by {diff} (scale {scale})");

    // The same file as the body of torchvision's Mask R-CNN (ResNet-18 FPN), as docs/export-format.md shows.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/maskrcnn_from_export.py");
    let out = run(std::process::Command::new(venv_python().unwrap()).arg(&script).arg(&exported));
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&v["missing"], &v["unexpected"]), (&serde_json::json!([]), &serde_json::json!([])), "{v}");
    assert_eq!(v["conv1_max_abs_diff"].as_f64(), Some(0.0), "{v}");
    assert_eq!(v["outputs"], serde_json::json!(["boxes", "labels", "masks", "scores"]));
}

#[test]
fn negative_numbers_are_values_and_fail_validation_by_key() {
    // No store is needed: flags are read and the config validated before the store is opened.
    let dir = tempfile::tempdir().unwrap();
    for lr in ["-1", "-1e-3"] {
        let out = eval(&dir.path().join("no-store"), Path::new("random"), &dir.path().join("ev"), &["--lr", lr]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out).contains("`lr`") && text(&out).contains("must be > 0"), "{lr}: {}", text(&out));
    }
    assert!(!dir.path().join("ev").exists());
}

/// A pseudo-random picture for `key`: 8×8 blocks of random grey levels (so two keys' perceptual
/// hashes differ in about half their bits), with a little noise that changes with `frame`.
fn blocks(key: u64, frame: usize, size: usize) -> Vec<u8> {
    let mix = |mut x: u64| {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 29)
    };
    let cell = size / 8;
    (0..size * size)
        .map(|i| {
            let (y, x) = (i / size, i % size);
            let level = mix(key * 64 + ((y / cell) * 8 + x / cell) as u64) % 200;
            let noise = mix(key ^ (frame as u64 * 7919 + i as u64) << 20) % 9;
            (28 + level + noise) as u8
        })
        .collect()
}

/// Publishes a store `dataset` under `root` whose video i shows `keys[i]` (3 frames of 32 px), is
/// called `{prefix}{i:03}.mp4`, has class a or b by i's parity and its own patient.
fn picture_store(root: &Path, dataset: &str, prefix: &str, keys: &[u64]) -> std::path::PathBuf {
    use usctl::store::index::VideoRow;
    use usctl::store::writer::{FrameMeta, StoreWriter};
    use usctl::store::{IngestParams, StoreMeta, FORMAT_NAME, FORMAT_VERSION};
    let size = 32;
    let mut w = StoreWriter::create(&root.join(dataset), "0123456789abcdef", size).unwrap();
    for (i, &key) in keys.iter().enumerate() {
        let pixels: Vec<u8> = (0..3).flat_map(|f| blocks(key, f, size)).collect();
        let meta: Vec<FrameMeta> = (0..3).map(|f| FrameMeta { time_s: f as f64 / 3.0, source_index: f, pts: f }).collect();
        let row = VideoRow {
            video_id: 0,
            subdataset: dataset.into(),
            source_path: format!("{prefix}{i:03}.mp4"),
            kind: "video".into(),
            class_name: Some(["a", "b"][i % 2].into()),
            class_index: Some((i % 2) as i32),
            patient_id: Some(format!("{prefix}-p{i}")),
            width: Some(size as i32),
            height: Some(size as i32),
            frames_decoded: 3,
            status: "ok".into(),
            ..Default::default()
        };
        w.add(row, &pixels, &meta).unwrap();
    }
    let meta = StoreMeta {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        dataset: dataset.into(),
        version_id: "0123456789abcdef".into(),
        version_sha256: "0123456789abcdef".repeat(4),
        params: IngestParams { fps: "3".into(), size: size as u32, pixel_format: "gray8".into(), fit: "letterbox".into(), decoder: "synthetic".into() },
        frame_bytes: 0,
        frames: 0,
        videos: 0,
        classes: vec!["a".into(), "b".into()],
        files: Default::default(),
        meta_sha256: None,
    };
    let manifest = format!("schema = 1\nname = \"{dataset}\"\nclasses = [\"a\", \"b\"]\n");
    w.publish(meta, manifest.as_bytes()).unwrap().path
}

/// Fold of each video in an evaluation's folds.json.
fn folds_of(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let f = json(&dir.join("folds.json"));
    f["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(f["fold"].as_array().unwrap())
        .map(|(it, k)| (it["video"].as_str().unwrap().to_string(), k.as_u64().unwrap()))
        .collect()
}

#[test]
fn near_duplicates_share_a_fold_and_overlap_with_another_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // v003 is a copy of v001 (both class b), of another patient.
    let keys: Vec<u64> = (0..12).map(|i| if i == 3 { 1 } else { i }).collect();
    let version = picture_store(&d.join("store"), "eval", "v", &keys);
    let store = usctl::store::reader::Store::open(&version).unwrap();
    let groups = usctl::audit::corpus::duplicate_groups(&store, Default::default());
    assert_eq!(groups.iter().filter(|g| g.is_some()).count(), 2, "only v001 and v003 are near-duplicates: {groups:?}");
    assert!(groups[1].is_some() && groups[1] == groups[3]);

    // With grouping off some seed splits the copies; with it on (the default) that seed keeps
    // them in one fold, and the report says so.
    let eval_seed = |seed: u64, extra: &[&str]| {
        let out_dir = d.join(format!("ev-{seed}-{}", extra.join("-")));
        let out = eval(&version, Path::new("random"), &out_dir, &[&["--seed", &seed.to_string()], extra].concat());
        assert!(out.status.success(), "{}", text(&out));
        out_dir
    };
    let split_seed = (0..12)
        .find(|&s| {
            let f = folds_of(&eval_seed(s, &["--duplicate-groups", "off"]));
            f["v001.mp4"] != f["v003.mp4"]
        })
        .expect("some ungrouped 2-fold split separates two of 12 patients");
    let off = d.join(format!("ev-{split_seed}---duplicate-groups-off"));
    let report = json(&off.join("report.json"));
    assert_eq!(report["format_version"], usctl::eval::report::FORMAT_VERSION);
    assert_eq!(
        report["duplicates"],
        serde_json::json!({"grouped": false, "rule": {"radius": 10, "still_radius": 8, "share": 0.5}, "clusters": 1, "videos": 2})
    );
    assert!(std::fs::read_to_string(off.join("report.md")).unwrap().contains("duplicate grouping was OFF, so 1 clusters joining 2 near-duplicate videos"));
    let on = eval_seed(split_seed, &[]);
    let f = folds_of(&on);
    assert_eq!(f["v001.mp4"], f["v003.mp4"]);
    assert_eq!(json(&on.join("report.json"))["duplicates"]["grouped"], true);
    assert!(std::fs::read_to_string(on.join("report.md")).unwrap().contains("and duplicate cluster: 1 clusters joining 2 videos, each kept within one fold"));
    assert_eq!(json(&on.join("folds.json"))["items"][1]["cluster"], 0);
    // The ungrouped split is not reused while the copies exist.
    let out = eval(&version, Path::new("random"), &d.join("ev-reuse"), &["--folds-file", off.join("folds.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("v001.mp4, v003.mp4") && text(&out).contains("--duplicate-groups off"), "{}", text(&out));

    // A "pretraining" store holding a copy of v005 and two unrelated videos: exactly v005 goes.
    let other = picture_store(&d.join("pretrain"), "pre", "w", &[100, 5, 101]);
    let ex = d.join("ev-excluded");
    let out = eval(&version, Path::new("random"), &ex, &["--exclude-overlap-with", d.join("pretrain").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&ex.join("report.json"));
    assert_eq!(report["excluded"]["dropped"], serde_json::json!([{"path": "v005.mp4", "matches": ["w001.mp4"]}]));
    assert_eq!(report["excluded"]["store"]["dir"], other.canonicalize().unwrap().display().to_string());
    assert_eq!(report["videos"], 11);
    let f = folds_of(&ex);
    assert!(f.len() == 11 && !f.contains_key("v005.mp4"));
    assert!(std::fs::read_to_string(ex.join("report.md")).unwrap().contains("| `v005.mp4` | `w001.mp4` |"));
    let out = eval(&version, Path::new("random"), &d.join("ev-nowhere"), &["--exclude-overlap-with", d.join("nowhere").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("exclude_overlap_with") && text(&out).contains("nowhere"), "{}", text(&out));
}
