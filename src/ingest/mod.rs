//! `usctl ingest`: manifest → decoded, sampled frames → a new (or reused) store version.
//!
//! Sources are hashed first, so that the version id is known before any decoding and an
//! unchanged corpus is not decoded again. Decoding runs on a rayon pool of `threads` workers
//! that take files in manifest order; a single writer appends finished files in that same order,
//! so the store's bytes do not depend on the thread count or on which file finishes first.

pub mod decode;
pub mod geometry;
pub mod masks;
pub mod resample;
mod same_bytes;

use crate::audit::inventory::{check_expectations, counts, ExpectCheck, SubdatasetCount};
use crate::error::{IngestError, SourceError};
use crate::hash::sha256_file;
use crate::manifest::pin::{self, PinCheck};
use crate::manifest::{AbsentSource, Entry, Manifest, Problem, WhenAbsent};
use crate::store::index::VideoRow;
use crate::store::reader::Store;
use crate::store::version::{version_id, MaskState, SourceState};
use crate::store::writer::StoreWriter;
use crate::store::{list_versions, IngestParams, StoreMeta, FORMAT_NAME, FORMAT_VERSION};
use decode::{Decoded, Mode};
use rayon::prelude::*;
use resample::Rational;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub const DEFAULT_SIZE: u32 = 256;
pub const PIXEL_FORMAT: &str = "gray8";
pub const FIT: &str = "letterbox";

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub manifest: PathBuf,
    pub raw: PathBuf,
    pub store: PathBuf,
    pub fps: Rational,
    pub size: u32,
    pub threads: usize,
    pub progress: bool,
    /// Ingest files whose bytes differ from their pin, or that have none (the report lists them).
    pub accept_changed: bool,
    /// Leave out (and report) sources whose folder is absent or matches no file, instead of
    /// stopping; the ingest still stops when every source is absent.
    pub skip_absent_sources: bool,
}

impl IngestOptions {
    fn when_absent(&self) -> WhenAbsent {
        if self.skip_absent_sources {
            WhenAbsent::Skip
        } else {
            WhenAbsent::Fail
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ClassCount {
    pub class: String,
    pub videos: u64,
    pub frames: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub dataset: String,
    pub version_id: String,
    pub version_dir: PathBuf,
    /// True when an identical earlier ingest was found and reused.
    pub reused: bool,
    pub videos: u64,
    pub ok: u64,
    pub partial: u64,
    pub failed: u64,
    pub missing: u64,
    pub frames_decoded: u64,
    pub frames_kept: u64,
    pub classes: Vec<ClassCount>,
    /// Stored per sub-dataset (manifest order), each split by class (as `usctl audit` counts).
    pub subdatasets: Vec<SubdatasetCount>,
    /// The manifest's `[[expect]]` rows against what this version holds (shown, never an error).
    pub expectations: Vec<ExpectCheck>,
    /// Sources left out under `--skip-absent-sources`: not an error.
    pub absent: Vec<AbsentSource>,
    pub threads: usize,
    pub seconds: f64,
    /// Files skipped or only partly read, and folders that could not be listed.
    pub problems: Vec<Problem>,
    /// Worth a look but nothing was skipped (e.g. files without a class).
    pub notes: Vec<Problem>,
    /// How the files compared with the manifest's pins; absent when it has none.
    pub pins: Option<PinCheck>,
}

impl IngestReport {
    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }
}

struct Hashed {
    bytes: Option<u64>,
    sha256: Option<String>,
    error: Option<SourceError>,
}

fn hash_entry(e: &Entry) -> Hashed {
    if e.missing {
        return Hashed { bytes: None, sha256: None, error: Some(SourceError::Missing) };
    }
    match sha256_file(&e.path) {
        Ok((0, _)) => Hashed { bytes: Some(0), sha256: None, error: Some(SourceError::Empty) },
        Ok((n, sha)) => Hashed { bytes: Some(n), sha256: Some(sha), error: None },
        Err(err) => Hashed { bytes: None, sha256: None, error: Some(SourceError::Unreadable(err.to_string())) },
    }
}

/// The mask files of each entry, hashed (empty for an entry without masks).
fn hash_masks(e: &Entry) -> Vec<masks::HashedMask> {
    e.masks
        .iter()
        .flatten()
        .map(|m| {
            let (bytes, sha256, error) = match sha256_file(&m.path) {
                Ok((0, _)) => (Some(0), None, Some(SourceError::Empty.to_string())),
                Ok((n, sha)) => (Some(n), Some(sha), None),
                Err(err) => (None, None, Some(SourceError::Unreadable(err.to_string()).to_string())),
            };
            masks::HashedMask { rel_path: m.rel_path.clone(), path: m.path.clone(), bytes, sha256, error }
        })
        .collect()
}

pub fn params(fps: Rational, size: u32) -> IngestParams {
    IngestParams { fps: fps.to_string(), size, pixel_format: PIXEL_FORMAT.into(), fit: FIT.into(), decoder: decode::runtime_versions() }
}

fn check(opts: &IngestOptions) -> Result<(), IngestError> {
    if !(8..=4096).contains(&opts.size) {
        return Err(IngestError::Param(format!("--size {} must be between 8 and 4096", opts.size)));
    }
    if opts.threads == 0 {
        return Err(IngestError::Param("--threads must be at least 1".into()));
    }
    match std::fs::read_dir(&opts.raw) {
        Ok(_) => Ok(()),
        Err(source) => Err(IngestError::Raw { path: opts.raw.clone(), source }),
    }
}

fn pool(threads: usize) -> Result<rayon::ThreadPool, IngestError> {
    rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("usctl-ingest-{i}")).build().map_err(|e| IngestError::Pool(e.to_string()))
}

/// Runs `work(i)` for i in 0..n on the pool, workers taking indices in increasing order, and
/// hands each result to `sink` in index order. Stops early when `sink` fails.
fn run_ordered<T: Send, E>(
    pool: &rayon::ThreadPool,
    n: usize,
    work: impl Fn(usize) -> T + Sync,
    mut sink: impl FnMut(usize, T) -> Result<(), E>,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, T)>();
    std::thread::scope(|scope| {
        let (work, next) = (&work, &next);
        scope.spawn(move || {
            pool.scope(|s| {
                for _ in 0..pool.current_num_threads() {
                    let tx = tx.clone();
                    s.spawn(move |_| loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n || tx.send((i, work(i))).is_err() {
                            break;
                        }
                    });
                }
            });
            drop(tx);
        });
        let mut pending = BTreeMap::new();
        let mut expected = 0;
        for (i, item) in rx.iter() {
            pending.insert(i, item);
            while let Some(item) = pending.remove(&expected) {
                if let Err(e) = sink(expected, item) {
                    // Workers stop at their next send; make sure none is still queued for.
                    next.store(n, Ordering::Relaxed);
                    return Err(e);
                }
                expected += 1;
            }
        }
        Ok(())
    })
}

fn progress_bar(show: bool, n: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} files [{bar:30}] {elapsed} ETA {eta} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub fn ingest(opts: &IngestOptions) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    check(opts)?;
    let (manifest, manifest_bytes) = Manifest::load(&opts.manifest)?;
    let resolved = manifest.resolve_with(&opts.raw, &opts.manifest, opts.when_absent())?;
    let entries = &resolved.entries;
    let pool = pool(opts.threads)?;
    let bar = progress_bar(opts.progress, entries.len());
    bar.set_message("hashing");
    let hashed: Vec<Hashed> = pool.install(|| entries.par_iter().map(hash_entry).collect());
    let mask_hashes: Vec<Vec<masks::HashedMask>> = pool.install(|| entries.par_iter().map(hash_masks).collect());
    let pins = check_pins(opts, &manifest, entries, &hashed, &mask_hashes)?;

    let params = params(opts.fps, opts.size);
    let unreadable: Vec<Option<String>> = hashed.iter().map(|h| h.error.as_ref().map(|e| e.to_string())).collect();
    let states: Vec<SourceState> = entries
        .iter()
        .zip(&hashed)
        .zip(&unreadable)
        .zip(&mask_hashes)
        .map(|(((e, h), why), masks)| SourceState {
            rel_path: &e.rel_path,
            subdataset: &e.subdataset,
            class: e.class.as_ref().map(|c| c.0.as_str()),
            patient: e.patient.as_deref(),
            sha256: h.sha256.as_deref(),
            unreadable: why.as_deref(),
            masks: masks.iter().map(|m| MaskState { rel_path: &m.rel_path, sha256: m.sha256.as_deref(), unreadable: m.error.as_deref() }).collect(),
        })
        .collect();
    let (id, full_id) = version_id(&manifest_bytes, &params, &states);
    let dataset_dir = opts.store.join(&manifest.name);

    let cleaned = remove_leftovers(&dataset_dir);
    let existing = list_versions(&dataset_dir)?.into_iter().rev().find(|v| v.id == id);
    let reuse = |path: PathBuf| -> Result<_, IngestError> {
        let store = Store::open(&path)?;
        let problems = unstored_masks(entries, &store);
        Ok((path, store.videos, true, problems, Vec::new()))
    };
    let (version_dir, rows, reused, mask_problems, mask_notes) = if let Some(v) = existing {
        reuse(v.path)?
    } else {
        bar.set_message("decoding");
        let frame_bytes = (opts.size * opts.size) as usize;
        let (mut mask_problems, mut mask_notes) = (Vec::new(), Vec::new());
        let mut writer = StoreWriter::create(&dataset_dir, &id, opts.size as usize)?;
        run_ordered(
            &pool,
            entries.len(),
            |i| {
                let d = match &hashed[i].error {
                    Some(e) => Decoded::failed(if decode::is_still_image(&entries[i].path) { "image" } else { "video" }, e.clone()),
                    None => decode::decode(&entries[i].path, opts.fps, opts.size, Mode::Store),
                };
                let m = masks_of(&entries[i], &mask_hashes[i], &d, opts.size);
                (d, m)
            },
            |i, (d, m)| {
                bar.inc(1);
                writer.add(row(&entries[i], &hashed[i], &d), &d.pixels, &d.frames)?;
                writer.add_masks(&m.masks)?;
                mask_problems.extend(m.problems);
                mask_notes.extend(m.notes);
                Ok::<(), IngestError>(())
            },
        )?;
        let meta = StoreMeta {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            dataset: manifest.name.clone(),
            version_id: id.clone(),
            version_sha256: full_id,
            params,
            frame_bytes: frame_bytes as u64,
            frames: 0,
            videos: 0,
            classes: manifest.classes.clone(),
            files: BTreeMap::new(),
            meta_sha256: None,
        };
        let rows = writer.videos().to_vec();
        let v = writer.publish(meta, &manifest_bytes)?;
        if v.reused {
            // An identical ingest published first: report what that version holds.
            reuse(v.path)?
        } else {
            (v.path, rows, false, mask_problems, mask_notes)
        }
    };
    bar.finish_and_clear();

    let mut report = summarize(&manifest, &rows, &opts.raw);
    // Folder-level problems (unreadable folders, link loops) have no row of their own.
    let listed: std::collections::BTreeSet<&str> = entries.iter().map(|e| e.rel_path.as_str()).collect();
    let mut problems: Vec<Problem> = resolved.problems.iter().filter(|p| !listed.contains(p.path.as_str())).cloned().collect();
    problems.append(&mut report.problems);
    problems.extend(mask_problems);
    report.problems = problems;
    // Identical files with different classes first: the terminal shows only the first notes.
    let shas: Vec<Option<&str>> = hashed.iter().map(|h| h.sha256.as_deref()).collect();
    let (mut notes, mut copies) = same_bytes::same_bytes(entries, &shas);
    notes.extend(resolved.notes.iter().cloned());
    notes.append(&mut copies);
    notes.extend(cleaned);
    notes.extend(mask_notes);
    report.notes = notes;
    if let Some(p) = &pins {
        // Pins of a sub-dataset left out as absent are not problems: the sub-dataset is reported.
        let left_out: Vec<String> = resolved.absent.iter().map(|a| format!("{}/", a.dir)).filter(|d| d != "./").collect();
        let reported: std::collections::BTreeSet<String> = report.problems.iter().map(|p| p.path.clone()).collect();
        let gone = p.absent.iter().filter(|a| !reported.contains(*a) && !left_out.iter().any(|d| a.starts_with(d.as_str())));
        report.problems.extend(gone.map(|a| Problem {
            path: a.clone(),
            reason: "pinned in the manifest but not found under --raw; restore it (`usctl fetch`) or pin the manifest again".into(),
        }));
    }
    report.pins = pins;
    report.dataset = manifest.name.clone();
    report.version_id = id;
    report.version_dir = version_dir;
    report.reused = reused;
    report.absent = resolved.absent.clone();
    report.threads = opts.threads;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Compares the sources (and metadata CSVs) with the manifest's pins, before anything is decoded:
/// a file with other bytes than its pin stops the ingest unless `accept_changed`; files without a
/// pin are ingested and listed.
fn check_pins(
    opts: &IngestOptions,
    manifest: &Manifest,
    entries: &[Entry],
    hashed: &[Hashed],
    mask_hashes: &[Vec<masks::HashedMask>],
) -> Result<Option<PinCheck>, IngestError> {
    let Some(pinned) = &manifest.pinned else { return Ok(None) };
    let metadata = pin::metadata_digests(manifest, &opts.raw);
    let media = entries.iter().zip(hashed).map(|(e, h)| (e.rel_path.as_str(), h.bytes.zip(h.sha256.as_deref())));
    let masks = mask_hashes.iter().flatten().map(|m| (m.rel_path.as_str(), m.bytes.zip(m.sha256.as_deref())));
    let csvs = metadata.iter().map(|(p, d)| (p.as_str(), d.as_ref().map(|(n, s)| (*n, s.as_str()))));
    let mut check = pin::check(pinned, media.chain(masks).chain(csvs));
    if check.refuses() && !opts.accept_changed {
        return Err(IngestError::Pins { manifest: opts.manifest.clone(), raw: opts.raw.clone(), count: check.changed.len(), listing: check.listing(5) });
    }
    check.accepted = check.refuses();
    Ok(Some(check))
}

/// The masks of one decoded entry (`[source.masks]`): none without a rule or without a stored
/// frame; a problem for a video, whose masks are not read (still images only).
fn masks_of(e: &Entry, hashed: &[masks::HashedMask], d: &Decoded, size: u32) -> masks::MaskOutcome {
    if e.masks.is_none() || d.frames.is_empty() {
        return masks::MaskOutcome::default();
    }
    match (d.kind, d.width, d.height) {
        ("image", Some(w), Some(h)) => masks::load(&e.rel_path, hashed, w as u32, h as u32, size),
        _ => masks::MaskOutcome {
            problems: vec![Problem {
                path: e.rel_path.clone(),
                reason: "its source declares [source.masks] but it is a video: masks are read for still images only, so none are stored".into(),
            }],
            ..Default::default()
        },
    }
}

/// For a reused version: the entries whose source declares masks and whose stored frame has none
/// (the ingest that made the version reported why).
fn unstored_masks(entries: &[Entry], store: &Store) -> Vec<Problem> {
    let stored: std::collections::BTreeSet<i64> = store.masks.iter().map(|m| m.frame_row).collect();
    entries
        .iter()
        .zip(&store.videos)
        .filter(|(e, v)| e.masks.is_some() && v.frames_kept > 0 && !stored.contains(&v.first_frame_row))
        .map(|(e, _)| Problem {
            path: e.rel_path.clone(),
            reason:
                "its frame was stored without masks (none found, unreadable, or of another size than the image; the ingest that made this version said which)"
                    .into(),
        })
        .collect()
}

/// Removes the temporary version directories that dead ingests left in the dataset folder
/// (`.tmp-<id>-<pid>`), as notes for the report.
fn remove_leftovers(dataset_dir: &Path) -> Vec<Problem> {
    crate::files::remove_leftover_temps(dataset_dir)
        .into_iter()
        .map(|p| Problem { path: p.display().to_string(), reason: "removed: the unfinished version of an ingest that was stopped".into() })
        .collect()
}

fn row(e: &Entry, h: &Hashed, d: &Decoded) -> VideoRow {
    let status = match (&d.error, d.frames.is_empty()) {
        (Some(SourceError::Missing), _) => "missing",
        (None, _) => "ok",
        (Some(_), false) => "partial",
        (Some(_), true) => "failed",
    };
    VideoRow {
        video_id: 0,
        subdataset: e.subdataset.clone(),
        source_path: e.rel_path.clone(),
        kind: d.kind.to_string(),
        class_name: e.class.as_ref().map(|c| c.0.clone()),
        class_index: e.class.as_ref().map(|c| c.1),
        patient_id: e.patient.clone(),
        source_bytes: h.bytes.map(|b| b as i64),
        source_sha256: h.sha256.clone(),
        width: d.width,
        height: d.height,
        duration_s: d.duration_s,
        native_fps: d.native_fps,
        frames_decoded: d.frames_decoded,
        frames_kept: 0,
        first_frame_row: 0,
        payload_sha256: None,
        status: status.to_string(),
        message: d.error.as_ref().map(|e| e.to_string()),
    }
}

/// Counts and per-file problems from the videos table (the same for a new and a reused version).
fn summarize(manifest: &Manifest, rows: &[VideoRow], raw: &Path) -> IngestReport {
    let mut classes: Vec<ClassCount> = manifest.classes.iter().map(|c| ClassCount { class: c.clone(), ..Default::default() }).collect();
    let mut unlabelled = ClassCount { class: "(no class)".into(), ..Default::default() };
    let mut r = IngestReport {
        dataset: String::new(),
        version_id: String::new(),
        version_dir: PathBuf::new(),
        reused: false,
        videos: rows.len() as u64,
        ok: 0,
        partial: 0,
        failed: 0,
        missing: 0,
        frames_decoded: 0,
        frames_kept: 0,
        classes: Vec::new(),
        subdatasets: counts(rows, &manifest.classes),
        expectations: check_expectations(&manifest.expectations, rows),
        absent: Vec::new(),
        threads: 0,
        seconds: 0.0,
        problems: Vec::new(),
        notes: Vec::new(),
        pins: None,
    };
    for v in rows {
        match v.status.as_str() {
            "ok" => r.ok += 1,
            "partial" => r.partial += 1,
            "missing" => r.missing += 1,
            _ => r.failed += 1,
        }
        r.frames_decoded += v.frames_decoded as u64;
        r.frames_kept += v.frames_kept as u64;
        if v.status != "ok" {
            r.problems.push(Problem {
                path: raw.join(&v.source_path).display().to_string(),
                reason: format!("{}: {}", v.status, v.message.as_deref().unwrap_or("")),
            });
        }
        if v.frames_kept > 0 {
            let slot = v.class_index.and_then(|i| classes.get_mut(i as usize)).unwrap_or(&mut unlabelled);
            slot.videos += 1;
            slot.frames += v.frames_kept as u64;
        }
    }
    if unlabelled.videos > 0 {
        classes.push(unlabelled);
    }
    r.classes = classes;
    r
}

/// Decodes every file without converting or storing anything: the decoder's throughput
/// ceiling, for the benchmark. Returns (files, frames decoded, seconds).
pub fn decode_only(opts: &IngestOptions) -> Result<(usize, u64, f64), IngestError> {
    check(opts)?;
    let (manifest, _) = Manifest::load(&opts.manifest)?;
    let resolved = manifest.resolve_with(&opts.raw, &opts.manifest, opts.when_absent())?;
    let pool = pool(opts.threads)?;
    let started = Instant::now();
    let mut frames = 0u64;
    let entries = &resolved.entries;
    run_ordered(
        &pool,
        entries.len(),
        |i| if entries[i].missing { 0 } else { decode::decode(&entries[i].path, opts.fps, opts.size, Mode::DecodeOnly).frames_decoded },
        |_, n| -> Result<(), IngestError> {
            frames += n as u64;
            Ok(())
        },
    )?;
    Ok((entries.len(), frames, started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_runner_is_ordered_and_complete() {
        let pool = pool(3).unwrap();
        let mut seen = Vec::new();
        run_ordered(
            &pool,
            100,
            |i| {
                std::thread::sleep(std::time::Duration::from_micros(((i * 7919) % 13) as u64 * 50));
                i * 2
            },
            |i, v| -> Result<(), ()> {
                seen.push((i, v));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..100).map(|i| (i, i * 2)).collect::<Vec<_>>());
    }

    #[test]
    fn ordered_runner_stops_on_sink_error() {
        let pool = pool(2).unwrap();
        let mut count = 0;
        let r = run_ordered(
            &pool,
            1000,
            |i| i,
            |i, _| {
                count += 1;
                if i == 10 {
                    Err("disk full")
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err("disk full"));
        assert_eq!(count, 11);
    }
}
