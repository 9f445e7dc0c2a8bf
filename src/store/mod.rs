//! The versioned frame store (docs/store-format.md).
//!
//! ```text
//! STORE/<dataset>/<seq>-<version id>/
//!     store.json       format, version id, ingest parameters, counts, sha256 of every file below
//!     frames.u8        payload: all kept frames, S×S bytes each, row-major, in frames.parquet order
//!     frames.parquet   one row per stored frame
//!     videos.parquet   one row per manifest entry (skipped ones too, with their reason)
//!     manifest.toml    the manifest exactly as ingested
//!     masks.u8         format 4: lesion masks, S×S bytes (0/1) per instance, in masks.parquet order
//!     masks.parquet    format 4: one row per mask file of a stored frame (instance or empty)
//! ```
//! A version directory is written under a temporary name and renamed into place when complete;
//! published versions are never modified. `<seq>` orders versions by publication.

pub mod check;
pub mod diff;
pub mod index;
pub mod interrupt;
pub mod lock;
pub mod masks;
pub mod pack;
pub mod reader;
pub mod verify;
pub mod version;
pub mod writer;

use crate::error::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The format this usctl writes. It reads every format from `OLDEST_READABLE_FORMAT` on: format 1
/// has no `meta_sha256`, formats 1 and 2 have no frame hashes, formats 1 to 3 have no masks
/// (docs/store-format.md).
pub const FORMAT_VERSION: u32 = 4;
/// The first format with masks.u8 and masks.parquet.
pub const MASKS_FORMAT: u32 = 4;
pub const OLDEST_READABLE_FORMAT: u32 = 1;
pub const FORMAT_NAME: &str = "usctl-store";
pub const META_FILE: &str = "store.json";
pub const PAYLOAD_FILE: &str = "frames.u8";
pub const FRAMES_FILE: &str = "frames.parquet";
pub const VIDEOS_FILE: &str = "videos.parquet";
pub const MANIFEST_FILE: &str = "manifest.toml";
pub const MASKS_PAYLOAD_FILE: &str = "masks.u8";
pub const MASKS_FILE: &str = "masks.parquet";
pub const TMP_PREFIX: &str = ".tmp-";
/// Held (and present) in a dataset folder while a version is being published there.
pub const LOCK_FILE: &str = ".publish.lock";

/// Everything that decides the stored bytes besides the inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    /// Sampling rate in frames per second (a rational, e.g. "3" or "30000/1001").
    pub fps: String,
    /// Stored frames are size × size.
    pub size: u32,
    pub pixel_format: String,
    /// How aspect ratio is handled: "letterbox" (fit the long side, pad with black).
    pub fit: String,
    /// Decoder library versions: a different FFmpeg may give different pixels.
    pub decoder: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreMeta {
    pub format: String,
    pub format_version: u32,
    pub dataset: String,
    pub version_id: String,
    pub version_sha256: String,
    pub params: IngestParams,
    pub frame_bytes: u64,
    pub frames: u64,
    pub videos: u64,
    pub classes: Vec<String>,
    pub files: BTreeMap<String, FileDigest>,
    /// sha256 of this store.json as written without this field (`check::meta_digest`); absent in
    /// format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_sha256: Option<String>,
}

impl StoreMeta {
    pub fn load(dir: &Path) -> Result<StoreMeta, StoreError> {
        let path = dir.join(META_FILE);
        let bytes = std::fs::read(&path).map_err(StoreError::io(&path))?;
        StoreMeta::parse(&bytes, path)
    }

    /// store.json's bytes, read from `path` (named in errors); format and version are checked first.
    pub fn parse(bytes: &[u8], path: PathBuf) -> Result<StoreMeta, StoreError> {
        #[derive(Deserialize)]
        struct Probe {
            format: String,
            format_version: u32,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { path: path.clone(), message: e.to_string() })?;
        if probe.format != FORMAT_NAME {
            return Err(StoreError::Corrupt { path, message: format!("format is '{}', not '{FORMAT_NAME}'", probe.format) });
        }
        if !(OLDEST_READABLE_FORMAT..=FORMAT_VERSION).contains(&probe.format_version) {
            return Err(StoreError::FormatVersion { path, found: probe.format_version, expected: FORMAT_VERSION });
        }
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { path, message: e.to_string() })
    }
}

/// A published version directory `<seq>-<id>`.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionDir {
    pub seq: u32,
    pub id: String,
    pub path: PathBuf,
}

pub fn parse_version_name(name: &str) -> Option<(u32, String)> {
    let (seq, id) = name.split_once('-')?;
    let seq_ok = seq.len() >= 4 && seq.chars().all(|c| c.is_ascii_digit());
    let id_ok = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit());
    (seq_ok && id_ok).then(|| Some((seq.parse().ok()?, id.to_string())))?
}

/// Published versions of one dataset, oldest first. Temporary directories are ignored.
pub fn list_versions(dataset_dir: &Path) -> Result<Vec<VersionDir>, StoreError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dataset_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::Io { path: dataset_dir.to_path_buf(), source: e }),
    };
    for item in rd {
        let item = item.map_err(StoreError::io(dataset_dir))?;
        let name = item.file_name().to_string_lossy().to_string();
        if let Some((seq, id)) = parse_version_name(&name) {
            if item.path().join(META_FILE).is_file() {
                out.push(VersionDir { seq, id, path: item.path() });
            }
        }
    }
    out.sort_by_key(|v| v.seq);
    Ok(out)
}

/// Finds the version directory a command should read. `store` may be a store root (datasets
/// below it), a dataset directory, or a version directory itself. Without `version` the newest.
pub fn locate(store: &Path, dataset: Option<&str>, version: Option<&str>) -> Result<PathBuf, StoreError> {
    let not_found = |why: String| StoreError::NotFound { path: store.to_path_buf(), why };
    if store.join(META_FILE).is_file() {
        return Ok(store.to_path_buf());
    }
    if !store.is_dir() {
        return Err(not_found("it is not a directory".into()));
    }
    let dataset_dir = if !list_versions(store)?.is_empty() {
        store.to_path_buf()
    } else if let Some(name) = dataset {
        store.join(name)
    } else {
        let mut names = Vec::new();
        for item in std::fs::read_dir(store).map_err(StoreError::io(store))? {
            let item = item.map_err(StoreError::io(store))?;
            if !list_versions(&item.path())?.is_empty() {
                names.push(item.file_name().to_string_lossy().to_string());
            }
        }
        names.sort();
        match names.as_slice() {
            [] => return Err(not_found("it holds no dataset".into())),
            [one] => store.join(one),
            many => {
                return Err(StoreError::Ambiguous {
                    path: store.to_path_buf(),
                    message: format!("holds several datasets ({}); pick one with --dataset", many.join(", ")),
                })
            }
        }
    };
    let versions = list_versions(&dataset_dir)?;
    let Some(newest) = versions.last() else {
        return Err(not_found(format!("{} holds no published version", dataset_dir.display())));
    };
    let Some(want) = version else {
        return Ok(newest.path.clone());
    };
    // Precedence: the folder name, then a sequence number (up to 4 digits), then an id prefix.
    let by_name = versions.iter().filter(|v| v.path.file_name().is_some_and(|n| n == want)).collect::<Vec<_>>();
    let by_seq = match want.parse::<u32>() {
        Ok(s) if want.len() <= 4 => versions.iter().filter(|v| v.seq == s).collect(),
        _ => Vec::new(),
    };
    let matches = if !by_name.is_empty() {
        by_name
    } else if !by_seq.is_empty() {
        by_seq
    } else {
        versions.iter().filter(|v| v.id.starts_with(want)).collect::<Vec<_>>()
    };
    match matches.as_slice() {
        [one] => Ok(one.path.clone()),
        [] => Err(not_found(format!(
            "no version '{want}' in {} (have: {})",
            dataset_dir.display(),
            versions.iter().map(|v| format!("{:04}-{}", v.seq, v.id)).collect::<Vec<_>>().join(", ")
        ))),
        _ => Err(StoreError::Ambiguous { path: dataset_dir, message: format!("version '{want}' matches several versions; give more of its id") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names() {
        assert_eq!(parse_version_name("0003-9f2c"), Some((3, "9f2c".into())));
        assert_eq!(parse_version_name(".tmp-9f2c-12"), None);
        assert_eq!(parse_version_name("3-9f2c"), None);
        assert_eq!(parse_version_name("0003-xyz"), None);
    }
}
