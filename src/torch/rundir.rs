//! A training run's directory (docs/training.md, "Run directory"): the files it holds, the order
//! in which an epoch is committed, and how a run stopped at any point (killed, out of disk) is
//! brought back to one consistent epoch by `--resume`. The training loop only calls `step`,
//! `commit_epoch` and `finish`.
//!
//! Epoch e is committed in this order, each file synced and each replacement a rename:
//! 1. metrics.jsonl gets the epoch's step lines and its `epoch_end` line;
//! 2. if the epoch is the best so far, best.safetensors: the full checkpoint of epoch e;
//! 3. last.safetensors, the commit record (a second name for best's file when the epoch is best):
//!    the run has done e + 1 epochs once it is renamed.
//!
//! So after any interruption, metrics lines of epochs that last.safetensors does not hold belong
//! to an unfinished epoch, and a best.safetensors newer than last is a commit that stopped between
//! steps 2 and 3. `RunDir::resume` drops the first, promotes the second, removes the temporary
//! files of dead processes and says what it did. summary.json describes a finished invocation:
//! it is removed when a new one starts and written when it ends.

use crate::checkpoint::{self, State};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;
use usctl::error::TrainError;
use usctl::files;

pub const CONFIG_FILE: &str = "config.toml";
pub const PROVENANCE: &str = "provenance.json";
pub const METRICS: &str = "metrics.jsonl";
pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const SUMMARY: &str = "summary.json";
pub const LOSS_PLOT: &str = "loss.png";

/// Where a test stops a run as a kill would: nothing after that point reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Right after this many training steps of the whole run (mid-epoch).
    Step(u64),
    /// Right after epoch e's metrics are synced, before its checkpoints.
    Metrics(u32),
    /// Right after epoch e's best.safetensors, before last.safetensors.
    Best(u32),
}

/// A checkpoint as read: its tensors by name and its training state.
type Saved = (HashMap<String, Tensor>, State);

pub fn killed(at: Kill) -> TrainError {
    TrainError::Torch(format!("stopped as if killed ({at:?})"))
}

pub struct RunDir {
    dir: PathBuf,
    metrics: std::io::BufWriter<File>,
    kill: Option<Kill>,
}

/// What `--resume` found on disk and did about it.
pub struct Recovered {
    /// The committed checkpoint to continue from; None when no epoch was committed (start at 0).
    pub checkpoint: Option<Saved>,
    /// One line per repair, for the terminal and the `resume` event of metrics.jsonl.
    pub notes: Vec<String>,
}

impl RunDir {
    /// A new run in `dir`: refuses a directory that already holds one, writes config.toml.
    pub fn create(dir: &Path, config_text: &str) -> Result<RunDir, TrainError> {
        if [CONFIG_FILE, LAST, BEST, METRICS].iter().any(|f| dir.join(f).exists()) {
            return Err(TrainError::RunExists { path: dir.into() });
        }
        std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        let config = dir.join(CONFIG_FILE);
        files::write_atomic(&config, config_text.as_bytes()).map_err(TrainError::io(&config))?;
        RunDir::open(dir)
    }

    /// An existing run, repaired to its last committed epoch (see the module comment).
    pub fn resume(dir: &Path) -> Result<(RunDir, Recovered), TrainError> {
        let mut notes: Vec<String> =
            files::remove_leftover_temps(dir).iter().map(|p| format!("removed {}, left by an interrupted process", p.display())).collect();
        let (last, best) = (dir.join(LAST), dir.join(BEST));
        let mut committed = read_if_present(&last)?;
        let best_state = read_if_present(&best)?.map(|(_, s)| s);
        if let Some(b) = &best_state {
            if committed.as_ref().is_none_or(|(_, s)| b.epoch > s.epoch && b.config_sha256 == s.config_sha256) {
                files::link_atomic(&best, &last).map_err(TrainError::io(&last))?;
                notes.push(format!("{BEST} held epoch {}, newer than {LAST}: the commit of that epoch was cut short, so it now is {LAST}", b.epoch));
                committed = read_if_present(&last)?;
            }
        }
        if let Some((_, s)) = &committed {
            match (s.best_epoch, best_state.as_ref().map(|b| b.epoch)) {
                (Some(want), have) if have != Some(want) && want == s.epoch => {
                    files::link_atomic(&last, &best).map_err(TrainError::io(&best))?;
                    notes.push(format!("{BEST} did not hold the best epoch {want}; restored it from {LAST}"));
                }
                (Some(want), have) if have != Some(want) => notes.push(format!(
                    "{BEST} holds epoch {}, not the best epoch {want}, whose weights are no longer on disk; it is replaced at the next improvement",
                    have.map_or("none".into(), |e| e.to_string())
                )),
                _ => {}
            }
        }
        let done = committed.as_ref().map_or(0, |(_, s)| s.epoch);
        notes.extend(recover_metrics(&dir.join(METRICS), done)?);
        let summary = dir.join(SUMMARY);
        if summary.exists() {
            std::fs::remove_file(&summary).map_err(TrainError::io(&summary))?;
        }
        Ok((RunDir::open(dir)?, Recovered { checkpoint: committed, notes }))
    }

    fn open(dir: &Path) -> Result<RunDir, TrainError> {
        let path = dir.join(METRICS);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(TrainError::io(&path))?;
        Ok(RunDir { dir: dir.into(), metrics: std::io::BufWriter::new(file), kill: None })
    }

    /// Makes the run stop as if killed at `at` (tests of resume).
    pub fn kill_at(&mut self, at: Option<Kill>) {
        self.kill = at;
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write_json(&self, name: &str, v: &impl Serialize) -> Result<(), TrainError> {
        let path = self.file(name);
        let bytes = serde_json::to_vec_pretty(v).map_err(|e| TrainError::Io { path: path.clone(), source: e.into() })?;
        files::write_atomic(&path, &bytes).map_err(TrainError::io(&path))
    }

    /// One line of metrics.jsonl (a step, an event); it reaches the disk with the next commit.
    pub fn line(&mut self, v: Value) -> Result<(), TrainError> {
        let path = self.dir.join(METRICS);
        writeln!(self.metrics, "{v}").map_err(TrainError::io(&path))
    }

    /// Commits an epoch: its `epoch_end` line, then best (if `improved`), then last.
    pub fn commit_epoch(&mut self, epoch: u32, end: Value, tensors: &[(String, Tensor)], state: &State, improved: bool) -> Result<(), TrainError> {
        self.line(end)?;
        let path = self.dir.join(METRICS);
        self.metrics.flush().and_then(|()| self.metrics.get_ref().sync_data()).map_err(TrainError::io(&path))?;
        self.cut(Kill::Metrics(epoch))?;
        let (last, best) = (self.file(LAST), self.file(BEST));
        if improved {
            checkpoint::write(&best, tensors, Some(state))?;
            self.cut(Kill::Best(epoch))?;
            files::link_atomic(&best, &last).map_err(TrainError::io(&last))
        } else {
            checkpoint::write(&last, tensors, Some(state))
        }
    }

    /// Returns the kill error when a test asked to stop at `at`.
    pub fn cut(&self, at: Kill) -> Result<(), TrainError> {
        if self.kill == Some(at) {
            return Err(killed(at));
        }
        Ok(())
    }

    /// Ends an invocation: flushes metrics and writes summary.json.
    pub fn finish(mut self, summary: &impl Serialize) -> Result<(), TrainError> {
        let path = self.dir.join(METRICS);
        self.metrics.flush().map_err(TrainError::io(&path))?;
        self.write_json(SUMMARY, summary)
    }
}

fn read_if_present(path: &Path) -> Result<Option<Saved>, TrainError> {
    if !path.exists() {
        return Ok(None);
    }
    let (tensors, state) = checkpoint::read(path)?;
    let state = state.ok_or_else(|| TrainError::Resume { path: path.into(), message: "it holds weights but no training state".into() })?;
    Ok(Some((tensors, state)))
}

/// Keeps the lines of committed epochs (and events); drops the lines of an unfinished epoch and
/// torn lines a kill cut short. Returns what it did.
fn recover_metrics(path: &Path, epochs_done: u32) -> Result<Vec<String>, TrainError> {
    let mut notes = Vec::new();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(notes),
        Err(e) => return Err(TrainError::Io { path: path.into(), source: e }),
    };
    let text = String::from_utf8_lossy(&bytes);
    let (mut keep, mut torn, mut dropped) = (String::new(), 0usize, BTreeSet::new());
    let mut ended = BTreeSet::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            torn += 1;
            continue;
        };
        match v.get("epoch").and_then(Value::as_u64) {
            Some(e) if e >= epochs_done as u64 => {
                dropped.insert(e);
            }
            e => {
                if v.get("event").and_then(Value::as_str) == Some("epoch_end") {
                    ended.extend(e);
                }
                keep.push_str(line);
                keep.push('\n');
            }
        }
    }
    if torn > 0 {
        notes.push(format!("dropped {torn} incomplete line(s) of {METRICS}"));
    }
    if !dropped.is_empty() {
        notes.push(format!("dropped the {METRICS} lines of unfinished epoch(s) {:?}; they are trained again", dropped.iter().collect::<Vec<_>>()));
    }
    let missing: Vec<u32> = (0..epochs_done).filter(|e| !ended.contains(&(*e as u64))).collect();
    if !missing.is_empty() {
        notes.push(format!(
            "{METRICS} has no epoch_end line for epoch(s) {missing:?} (an interrupted run of an older usctl); their step lines may be missing too"
        ));
    }
    if torn > 0 || !dropped.is_empty() {
        files::write_atomic(path, keep.as_bytes()).map_err(TrainError::io(path))?;
    }
    Ok(notes)
}

/// Points of a plotted curve: (x, y).
pub type Curve = Vec<(f64, f64)>;

/// (epoch fraction, loss) per step and (epoch, validation NT-Xent) per epoch, from metrics.jsonl,
/// so that a resumed run's plot covers the whole run.
pub fn read_curve(path: &Path) -> Option<(Curve, Curve)> {
    let text = std::fs::read_to_string(path).ok()?;
    let rows: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut per_epoch: HashMap<u64, usize> = HashMap::new();
    for r in &rows {
        if let (Some(e), Some(_)) = (r.get("epoch").and_then(|e| e.as_u64()), r.get("step")) {
            *per_epoch.entry(e).or_default() += 1;
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in &rows {
        let Some(e) = r.get("epoch").and_then(|e| e.as_u64()) else { continue };
        if let (Some(_), Some(loss)) = (r.get("step"), r.get("loss").and_then(|l| l.as_f64())) {
            let k = seen.entry(e).or_default();
            *k += 1;
            train.push((e as f64 + *k as f64 / per_epoch[&e] as f64, loss));
        } else if let Some(v) = r.get("val_nt_xent").and_then(|v| v.as_f64()) {
            val.push(((e + 1) as f64, v));
        }
    }
    Some((train, val))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metrics_keep_committed_epochs_and_drop_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS);
        let lines = [
            json!({"event": "start", "from_epoch": 0}).to_string(),
            json!({"epoch": 0, "step": 1, "loss": 1.0}).to_string(),
            json!({"epoch": 0, "event": "epoch_end"}).to_string(),
            json!({"epoch": 1, "step": 2, "loss": 0.9}).to_string(),
            json!({"epoch": 1, "event": "epoch_end"}).to_string(),
            "{\"epoch\": 2, \"st".to_string(),
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let notes = recover_metrics(&path, 1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", lines[..3].join("\n")));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("incomplete") && notes[1].contains("[1]"), "{notes:?}");
        // Nothing to repair: the file is left alone and nothing is said.
        assert!(recover_metrics(&path, 1).unwrap().is_empty());
        assert!(recover_metrics(&path, 2).unwrap()[0].contains("no epoch_end line for epoch(s) [1]"));
    }
}
