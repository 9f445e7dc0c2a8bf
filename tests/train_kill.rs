//! A real kill: `usctl train` killed with SIGKILL while it trains, then `--resume`, ends with the
//! uninterrupted run's per-step losses and checkpoint, and a run directory that describes one run.
mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// A new run (`resume` false: the run's settings) or its resumption (they come from the run).
fn train_command(store: &Path, out: &Path, resume: bool) -> std::process::Command {
    let mut cmd = usctl();
    cmd.args(["train", "--quiet", "--threads", "1", "--store"]).arg(store).arg("--out").arg(out);
    if resume {
        cmd.arg("--resume");
    } else {
        cmd.args(["--epochs", "6", "--image-size", "32", "--batch-size", "3", "--label-rate", "0.2"]);
    }
    cmd
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl")).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn losses(out: &Path) -> Vec<f64> {
    metrics(out).iter().filter_map(|v| v.get("loss")?.as_f64()).collect()
}

fn epoch_ends(out: &Path) -> Vec<u64> {
    metrics(out).iter().filter(|v| v["event"] == "epoch_end").map(|v| v["epoch"].as_u64().unwrap()).collect()
}

#[test]
fn sigkill_while_training_then_resume_equals_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = clips_store(dir.path());
    let whole = dir.path().join("whole");
    let out = run(&mut train_command(&store, &whole, false));
    assert!(out.status.success(), "{}", text(&out));

    // Killed as soon as two epochs are committed: somewhere in the four that remain.
    let killed = dir.path().join("killed");
    let mut child = train_command(&store, &killed, false).spawn().unwrap();
    let start = Instant::now();
    while epoch_ends(&killed).len() < 2 && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before the kill; make it longer");

    let resumed = run(&mut train_command(&store, &killed, true));
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(losses(&killed), losses(&whole), "per-step losses");
    assert_eq!(epoch_ends(&killed), (0..6).collect::<Vec<u64>>(), "each epoch ended once");
    for f in ["last.safetensors", "best.safetensors"] {
        assert!(std::fs::read(killed.join(f)).unwrap() == std::fs::read(whole.join(f)).unwrap(), "{f} differs from the uninterrupted run's");
    }
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(killed.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs_done"], 6);
    let names: Vec<String> = std::fs::read_dir(&killed).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}
