//! `usctl train` end to end from raw files: ingest small synthetic videos, pretrain through the
//! `usctl` front door (which runs `usctl-torch`), and the errors a user meets.
mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Eight 2-second clips of differently coloured, moving test patterns, ingested at 32 px.
fn store(root: &Path) -> PathBuf {
    let raw = root.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    for i in 0..8 {
        let name = format!("{}{i}.mp4", if i % 2 == 0 { "a" } else { "b" });
        let src = format!("testsrc2=size=64x48:rate=15,trim=end_frame=30,hue=h={}", i * 45);
        ffmpeg(&["-f", "lavfi", "-i", &src, "-c:v", "libx264", "-pix_fmt", "yuv420p", raw.join(name).to_str().unwrap()]);
    }
    let m = root.join("m.toml");
    manifest(&m, "clips", &["*.mp4"], &[]);
    let out = ingest(&m, &raw, &root.join("store"), &["--size", "32"]);
    assert!(out.status.success(), "{}", text(&out));
    root.join("store")
}

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
    let store = store(dir.path());
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
    // Batch size 1 works (the reference's squeeze() broke it).
    let one = train(&store, &dir.path().join("run4"), &["--batch-size", "1", "--epochs", "1"]);
    assert!(one.status.success(), "{}", text(&one));
}

#[test]
fn cuda_requested_without_a_gpu_is_a_clear_error() {
    let version = run(usctl().arg("--version"));
    if !text(&version).contains("CUDA available: no") {
        return; // a GPU machine: --device cuda is valid there
    }
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let out = train(&store, &dir.path().join("run"), &["--device", "cuda"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--device cpu"), "{}", text(&out));
}
