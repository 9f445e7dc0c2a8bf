//! `usctl verify`: checks store.json against its self-digest, re-hashes every other file of a
//! version and every video's frames against the digests recorded at ingest, runs the checks of
//! opening (`check`), and names what differs; from format 4 also each instance's pixel count
//! and box against its stored mask.

use super::check::meta_intact;
use super::index::FrameHashes;
use super::reader::Store;
use super::{StoreMeta, FRAMES_FILE, MASKS_FILE, META_FILE, VIDEOS_FILE};
use crate::error::StoreError;
use crate::hash::{sha256_file, sha256_hex};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerifyReport {
    pub version_dir: String,
    pub files_checked: usize,
    pub videos_checked: usize,
    /// Files whose size or sha256 differ from store.json, or that disagree with it.
    pub bad_files: Vec<String>,
    /// Source paths of videos whose stored frames differ from their recorded digest.
    pub bad_videos: Vec<String>,
    /// What could not be checked: store.json of a format-1 store, which has no self-digest.
    pub unchecked: Vec<String>,
}

impl VerifyReport {
    /// Everything was checked and matches.
    pub fn is_ok(&self) -> bool {
        self.bad_files.is_empty() && self.bad_videos.is_empty() && self.unchecked.is_empty()
    }
}

pub fn verify(dir: &Path) -> Result<VerifyReport, StoreError> {
    let meta = StoreMeta::load(dir)?;
    let mut report = VerifyReport {
        version_dir: dir.display().to_string(),
        files_checked: 0,
        videos_checked: 0,
        bad_files: Vec::new(),
        bad_videos: Vec::new(),
        unchecked: Vec::new(),
    };
    match meta_intact(&meta) {
        Some(true) => report.files_checked += 1,
        Some(false) => {
            report.files_checked += 1;
            report.bad_files.push(format!("{META_FILE} (its content does not match its meta_sha256)"));
        }
        None => report
            .unchecked
            .push(format!("{META_FILE} (format {} has no self-digest, so edits to it cannot be detected; re-ingest to upgrade)", meta.format_version)),
    }
    for (name, want) in &meta.files {
        let path = dir.join(name);
        report.files_checked += 1;
        match sha256_file(&path) {
            Ok((bytes, sha)) if bytes == want.bytes && sha == want.sha256 => {}
            Ok((bytes, _)) => report.bad_files.push(format!("{name} (sha256 differs; {bytes} bytes, recorded {})", want.bytes)),
            Err(e) => report.bad_files.push(format!("{name} ({e})")),
        }
    }
    // Per-video digests need an index and a store.json that are themselves intact.
    let index_bad = report.bad_files.iter().any(|f| [VIDEOS_FILE, FRAMES_FILE, MASKS_FILE, META_FILE].iter().any(|n| f.starts_with(n)));
    if index_bad {
        return Ok(report);
    }
    let store = match Store::open(dir) {
        Ok(s) => s,
        Err(e) => {
            report.bad_files.push(e.to_string());
            return Ok(report);
        }
    };
    for v in &store.videos {
        if v.frames_kept == 0 {
            continue;
        }
        report.videos_checked += 1;
        if v.payload_sha256.as_deref() != Some(sha256_hex(store.video_pixels(v)).as_str()) {
            report.bad_videos.push(v.source_path.clone());
            continue;
        }
        // Format 3: each frame's recorded hashes are those of its pixels.
        let rows = v.first_frame_row as usize..(v.first_frame_row + v.frames_kept) as usize;
        let size = store.meta.params.size as usize;
        let wrong = rows.filter(|&r| store.frames[r].hashes.as_ref().is_some_and(|h| *h != FrameHashes::of(store.frame(r), size))).collect::<Vec<_>>();
        if let Some(&first) = wrong.first() {
            report.bad_videos.push(format!(
                "{} (frames.parquet hashes of {} frame(s), first row {first}, are not those of its pixels)",
                v.source_path,
                wrong.len()
            ));
        }
    }
    // Format 4: each instance's recorded pixel count and box are those of its stored mask.
    let size = store.meta.params.size as usize;
    for frame in store.masks.iter().map(|m| m.frame_row as usize).collect::<std::collections::BTreeSet<_>>() {
        for inst in store.masks_of(frame).unwrap_or_default() {
            if super::masks::measure(inst.mask, size) != (inst.row.pixels, inst.row.bbox) {
                report.bad_files.push(format!("{MASKS_FILE} (pixels or bbox of {} are not those of its mask in masks.u8)", inst.row.source_path));
            }
        }
    }
    Ok(report)
}
