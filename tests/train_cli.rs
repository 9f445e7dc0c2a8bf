//! `usctl train` end to end from raw files: ingest small synthetic videos, pretrain through the
//! `usctl` front door (which runs `usctl-torch`), and the errors a user meets.
mod common;
use common::*;
use std::path::Path;

fn train(store: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(usctl()
        .args(["train", "--quiet", "--store"])
        .arg(store)
        .arg("--out")
        .arg(out)
        .args(["--epochs", "2", "--image-size", "32", "--batch-size", "3", "--threads", "1"])
        .args(extra))
}

#[test]
fn trains_from_the_front_door_and_refuses_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let store = clips_store(dir.path());
    let run_dir = dir.path().join("run");
    let out = train(&store, &run_dir, &["--json", "--label-rate", "0.5"]);
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints the summary");
    assert_eq!(summary["epochs_done"], 2);
    assert_eq!(summary["train_videos"].as_u64().unwrap() + summary["val_videos"].as_u64().unwrap(), 8);
    for f in ["config.toml", "provenance.json", "metrics.jsonl", "last.safetensors", "loss.png", "summary.json"] {
        assert!(run_dir.join(f).is_file(), "{f} in the run directory");
    }
    let config = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(config.contains("epochs = 2") && config.contains("image_size = 32") && config.contains("label_rate = 0.5"), "{config}");
    let provenance: serde_json::Value = serde_json::from_slice(&std::fs::read(run_dir.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(provenance["store"]["dataset"], "clips");
    assert!(provenance["git_commit"].as_str().is_some_and(|s| !s.is_empty()));

    // The same directory again without --resume: refused, nothing overwritten.
    let before = std::fs::read(run_dir.join("last.safetensors")).unwrap();
    let again = train(&store, &run_dir, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("--resume"), "{}", text(&again));
    assert_eq!(std::fs::read(run_dir.join("last.safetensors")).unwrap(), before);
    // Resuming a finished run with a changed setting: refused, naming the flag.
    let changed = train(&store, &run_dir, &["--resume"]);
    assert_eq!(changed.status.code(), Some(2));
    assert!(text(&changed).contains("--epochs"), "{}", text(&changed));

    // A config with a misspelt key names the key and the doc.
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "epochs = 1\nbatchsize = 4\n").unwrap();
    let bad = train(&store, &dir.path().join("run2"), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("batchsize") && text(&bad).contains("docs/config.md"), "{}", text(&bad));
    // A value out of range names the key.
    let bad = train(&store, &dir.path().join("run3"), &["--label-rate", "2"]);
    assert!(text(&bad).contains("label_rate"), "{}", text(&bad));
    // Batch size 1 is refused with NT-Xent (one pair has no negatives), naming the key…
    let one = train(&store, &dir.path().join("run4"), &["--batch-size", "1", "--epochs", "1"]);
    assert_eq!(one.status.code(), Some(2));
    assert!(text(&one).contains("batch_size") && text(&one).contains("NT-Xent"), "{}", text(&one));
    assert!(!dir.path().join("run4").join("config.toml").exists());
    // …and works for supervised pretraining (the reference's squeeze() broke it).
    let one = train(&store, &dir.path().join("run5"), &["--batch-size", "1", "--epochs", "1", "--contrastive", "off", "--label-rate", "1"]);
    assert!(one.status.success(), "{}", text(&one));
}

#[test]
fn cuda_requested_without_a_gpu_is_a_clear_error() {
    let version = run(usctl().arg("--version"));
    if !text(&version).contains("CUDA available: no") {
        return; // a GPU machine: --device cuda is valid there
    }
    let dir = tempfile::tempdir().unwrap();
    let store = clips_store(dir.path());
    let out = train(&store, &dir.path().join("run"), &["--device", "cuda"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--device cpu"), "{}", text(&out));
}

/// A torchvision ResNet-18 state dict (random init, no download) written as safetensors by the
/// project's venv Python, in the format's plain layout (8-byte header length, JSON header, data).
fn torchvision_weights(path: &Path) -> bool {
    let Some(python) = venv_python() else {
        eprintln!("train_cli: no .venv python (make setup installs it); --init from torchvision not checked");
        return false;
    };
    let script = r#"
import json, struct, sys, torch, torchvision
torch.manual_seed(0)
sd = torchvision.models.resnet18().state_dict()
header, blobs, offset = {}, [], 0
for name, t in sd.items():
    t = t.contiguous()
    dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
    data = t.numpy().tobytes()
    header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
"#;
    let out = std::process::Command::new(python).args(["-c", script]).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    true
}

#[test]
fn init_reads_torchvision_weights() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("resnet18.safetensors");
    if !torchvision_weights(&weights) {
        return;
    }
    let store = clips_store(dir.path());
    // A learning rate so small that one epoch leaves the convolutions where --init put them.
    let run_dir = dir.path().join("run");
    let out = train(&store, &run_dir, &["--epochs", "1", "--lr", "1e-12", "--init", weights.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let provenance = std::fs::read_to_string(run_dir.join("provenance.json")).unwrap();
    assert!(provenance.contains("22 tensors not used"), "fc.weight, fc.bias and 20 num_batches_tracked: {provenance}");
    let read = |p: &Path, name: &str| -> Vec<f32> {
        let bytes = std::fs::read(p).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let off = &header[name]["data_offsets"];
        let (a, b) = (off[0].as_u64().unwrap() as usize, off[1].as_u64().unwrap() as usize);
        bytes[8 + n + a..8 + n + b].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    };
    for name in ["conv1.weight", "layer3.1.conv2.weight", "layer4.0.downsample.0.weight"] {
        let (want, got) = (read(&weights, name), read(&run_dir.join("last.safetensors"), &format!("backbone.{name}")));
        assert_eq!(want.len(), got.len(), "{name}");
        let diff = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-6, "{name} moved by {diff} from the --init weights");
    }
    // A file that is not a ResNet-18 is refused, naming it.
    std::fs::write(dir.path().join("bad.safetensors"), b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").unwrap();
    let bad = train(&store, &dir.path().join("run2"), &["--init", dir.path().join("bad.safetensors").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("bad.safetensors") && text(&bad).contains("torchvision names"), "{}", text(&bad));
}

#[test]
fn negative_numbers_are_values_and_fail_validation_by_key() {
    // No store is needed: flags are read and the config validated before the store is opened.
    let dir = tempfile::tempdir().unwrap();
    let out = train(&dir.path().join("no-store"), &dir.path().join("run"), &["--lr", "-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("`lr`") && text(&out).contains("must be > 0"), "{}", text(&out));
    // A negative exponent too (clap alone takes `-1e-3` for short flags).
    let out = train(&dir.path().join("no-store"), &dir.path().join("run"), &["--lr", "-1e-3"]);
    assert!(text(&out).contains("`lr`") && text(&out).contains("must be > 0"), "{}", text(&out));
    let out = train(&dir.path().join("no-store"), &dir.path().join("run"), &["--lambda", "-0.5"]);
    assert!(text(&out).contains("`lambda`") && text(&out).contains("≥ 0"), "{}", text(&out));
    assert!(!dir.path().join("run").exists());
}
