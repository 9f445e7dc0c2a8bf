//! `usctl verify`: re-hashes a store version's files and every video's frames against the
//! digests recorded at ingest, and names what differs.

use crate::error::StoreError;
use crate::hash::{sha256_file, sha256_hex};
use super::reader::Store;
use super::{StoreMeta, FRAMES_FILE, VIDEOS_FILE};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerifyReport {
    pub version_dir: String,
    pub files_checked: usize,
    pub videos_checked: usize,
    /// Files whose size or sha256 differ from store.json.
    pub bad_files: Vec<String>,
    /// Source paths of videos whose stored frames differ from their recorded digest.
    pub bad_videos: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.bad_files.is_empty() && self.bad_videos.is_empty()
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
    };
    for (name, want) in &meta.files {
        let path = dir.join(name);
        report.files_checked += 1;
        match sha256_file(&path) {
            Ok((bytes, sha)) if bytes == want.bytes && sha == want.sha256 => {}
            Ok((bytes, _)) => report.bad_files.push(format!("{name} (sha256 differs; {bytes} bytes, recorded {})", want.bytes)),
            Err(e) => report.bad_files.push(format!("{name} ({e})")),
        }
    }
    // Per-video digests need an index that is itself intact.
    let index_bad = report.bad_files.iter().any(|f| f.starts_with(VIDEOS_FILE) || f.starts_with(FRAMES_FILE));
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
        }
    }
    Ok(report)
}
