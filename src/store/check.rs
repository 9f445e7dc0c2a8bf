//! What opening a version checks before anything is read from it (docs/store-format.md,
//! "Reader contract"): store.json's self-digest, the size and sha256 of the small files, the
//! payload's size, and that store.json, the stored manifest, the folder names and both tables
//! agree. All of it is cheap next to training; only the payload's bytes are left to
//! `usctl verify`. `Store::open` runs it, and with it `usctl verify`, `info`, `train`, `eval` and an
//! ingest that reuses a version.

use super::index::{self, FrameRow, MaskRow, VideoRow};
use super::*;
use crate::hash::{sha256_file, sha256_hex};
use std::fs::File;

/// Files whose size and sha256 are checked on every open (and, from format 4, masks.parquet);
/// the payloads' sizes only.
pub const HASHED_ON_OPEN: [&str; 3] = [FRAMES_FILE, MANIFEST_FILE, VIDEOS_FILE];

/// A version that passed every check, with its payload file open.
pub struct Checked {
    pub meta: StoreMeta,
    pub videos: Vec<VideoRow>,
    pub frames: Vec<FrameRow>,
    pub payload: File,
    /// Format 4: the rows of masks.parquet and masks.u8, open; formats 1 to 3: none.
    pub masks: Vec<MaskRow>,
    pub masks_payload: Option<File>,
}

/// store.json's bytes: the object pretty-printed by serde_json (2-space indent), then a newline.
pub fn meta_bytes(meta: &StoreMeta) -> Vec<u8> {
    // Strings, numbers and maps with string keys: serialising them cannot fail.
    let mut json = serde_json::to_vec_pretty(meta).unwrap_or_default();
    json.push(b'\n');
    json
}

/// The self-digest: sha256 of `meta_bytes` of the metadata without `meta_sha256`.
pub fn meta_digest(meta: &StoreMeta) -> String {
    sha256_hex(&meta_bytes(&StoreMeta { meta_sha256: None, ..meta.clone() }))
}

/// Whether store.json is as it was written; None for format 1, which has no self-digest.
pub fn meta_intact(meta: &StoreMeta) -> Option<bool> {
    if meta.format_version < 2 && meta.meta_sha256.is_none() {
        return None;
    }
    Some(meta.meta_sha256.as_deref() == Some(meta_digest(meta).as_str()))
}

pub fn check(dir: &Path) -> Result<Checked, StoreError> {
    let (dataset, folder) = folder_names(dir)?;
    check_named(dir, &dataset, &folder)
}

/// `check` of a version whose folders are, or will be once it is published, `dataset/folder`
/// (`usctl unpack` checks its temporary folder under the name it will get).
pub fn check_named(dir: &Path, dataset: &str, folder: &str) -> Result<Checked, StoreError> {
    let differs = |name: &str, message: String| StoreError::Differs { path: dir.join(name), message };
    let meta = StoreMeta::load(dir)?;
    if meta_intact(&meta) == Some(false) {
        return Err(differs(META_FILE, "its content does not match its meta_sha256 (it was edited after ingest)".into()));
    }
    let has_masks = meta.format_version >= MASKS_FORMAT;
    for name in HASHED_ON_OPEN.into_iter().chain(has_masks.then_some(MASKS_FILE)) {
        let path = dir.join(name);
        let want = meta.files.get(name).ok_or_else(|| differs(META_FILE, format!("it records no digest for {name}")))?;
        let (bytes, sha256) = sha256_file(&path).map_err(StoreError::io(&path))?;
        if bytes != want.bytes || sha256 != want.sha256 {
            return Err(differs(name, format!("{bytes} bytes with sha256 {sha256}, but store.json records {} bytes with sha256 {}", want.bytes, want.sha256)));
        }
    }
    let payload_path = dir.join(PAYLOAD_FILE);
    let payload = File::open(&payload_path).map_err(StoreError::io(&payload_path))?;
    let len = payload.metadata().map_err(StoreError::io(&payload_path))?.len();
    let recorded = meta.files.get(PAYLOAD_FILE).map(|f| f.bytes);
    if recorded != Some(len) || meta.frames.checked_mul(meta.frame_bytes) != Some(len) {
        return Err(differs(
            PAYLOAD_FILE,
            format!("{len} bytes, but store.json records {recorded:?} bytes and {} frames of {} bytes", meta.frames, meta.frame_bytes),
        ));
    }
    let (masks, masks_payload) = if has_masks {
        let masks = index::read_masks(&dir.join(MASKS_FILE))?;
        let path = dir.join(MASKS_PAYLOAD_FILE);
        let file = File::open(&path).map_err(StoreError::io(&path))?;
        let len = file.metadata().map_err(StoreError::io(&path))?.len();
        let instances = masks.iter().filter(|m| m.instance.is_some()).count() as u64;
        let recorded = meta.files.get(MASKS_PAYLOAD_FILE).map(|f| f.bytes);
        if recorded != Some(len) || instances.checked_mul(meta.frame_bytes) != Some(len) {
            return Err(differs(
                MASKS_PAYLOAD_FILE,
                format!("{len} bytes, but store.json records {recorded:?} bytes and masks.parquet {instances} instances of {} bytes", meta.frame_bytes),
            ));
        }
        (masks, Some(file))
    } else {
        (Vec::new(), None)
    };
    let manifest = stored_manifest(dir)?;
    let videos = index::read_videos(&dir.join(VIDEOS_FILE))?;
    let frames = index::read_frames(&dir.join(FRAMES_FILE), meta.format_version)?;
    let meta_agrees = meta_agrees(&meta, &manifest, dataset, folder, videos.len(), frames.len());
    meta_agrees.map_err(|m| differs(META_FILE, m))?;
    tables_agree(&meta, &videos, &frames).map_err(|m| differs(VIDEOS_FILE, m))?;
    masks_agree(&masks, &frames, meta.params.size).map_err(|m| differs(MASKS_FILE, m))?;
    Ok(Checked { meta, videos, frames, payload, masks, masks_payload })
}

/// The names of the dataset folder and of the version folder (symbolic links resolved).
fn folder_names(dir: &Path) -> Result<(String, String), StoreError> {
    let full = dir.canonicalize().map_err(StoreError::io(dir))?;
    let name = |p: Option<&Path>| p.and_then(|p| p.file_name()).map_or(String::new(), |n| n.to_string_lossy().to_string());
    Ok((name(full.parent()), name(Some(&full))))
}

/// The two things store.json repeats from the manifest.
#[derive(Deserialize)]
struct ManifestNames {
    name: String,
    #[serde(default)]
    classes: Vec<String>,
}

fn stored_manifest(dir: &Path) -> Result<ManifestNames, StoreError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(StoreError::io(&path))?;
    toml::from_str(&text).map_err(|e| StoreError::Differs { path, message: format!("its name and classes cannot be read: {e}") })
}

fn meta_agrees(meta: &StoreMeta, manifest: &ManifestNames, dataset: &str, folder: &str, videos: usize, frames: usize) -> Result<(), String> {
    let size = u64::from(meta.params.size);
    if meta.frame_bytes != size * size {
        return Err(format!("frame_bytes is {} but frames of {size}×{size} have {}", meta.frame_bytes, size * size));
    }
    if meta.frames != frames as u64 || meta.videos != videos as u64 {
        return Err(format!("it counts {} frames and {} videos, the index has {frames} and {videos} rows", meta.frames, meta.videos));
    }
    if meta.classes != manifest.classes {
        return Err(format!("classes {:?} differ from manifest.toml's {:?}", meta.classes, manifest.classes));
    }
    if meta.dataset != manifest.name || meta.dataset != dataset {
        return Err(format!("dataset '{}' differs from manifest.toml's name '{}' or the dataset folder '{dataset}'", meta.dataset, manifest.name));
    }
    let id_ok = parse_version_name(folder).is_some_and(|(_, id)| id == meta.version_id);
    if !id_ok || meta.version_id.is_empty() || !meta.version_sha256.starts_with(&meta.version_id) {
        return Err(format!(
            "version_id '{}' is not both the id in the folder name '{folder}' and the start of version_sha256 '{}'",
            meta.version_id, meta.version_sha256
        ));
    }
    Ok(())
}

/// Mask rows follow frame order, number a frame's files from 0, name the frame's own video, and
/// number the instances (rows with lesion pixels, and only those, with a box inside the frame)
/// 0, 1, 2, … in order.
fn masks_agree(masks: &[MaskRow], frames: &[FrameRow], size: u32) -> Result<(), String> {
    let mut next_instance = 0i64;
    for (i, m) in masks.iter().enumerate() {
        let at = format!("row {i} ({})", m.source_path);
        let frame = usize::try_from(m.frame_row).ok().and_then(|r| frames.get(r));
        if frame.is_none_or(|f| f.video_id != m.video_id) {
            return Err(format!("{at}: frame_row {} is not a stored frame of video {}", m.frame_row, m.video_id));
        }
        let expected_index = match i.checked_sub(1).map(|p| &masks[p]) {
            Some(prev) if prev.frame_row == m.frame_row => prev.mask_index + 1,
            Some(prev) if prev.frame_row > m.frame_row => return Err(format!("{at}: rows are not in frame order")),
            _ => 0,
        };
        if m.mask_index != expected_index {
            return Err(format!("{at}: mask_index {} where {expected_index} comes next", m.mask_index));
        }
        let inside = m.bbox.is_some_and(|[x, y, w, h]| x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= size as i32 && y + h <= size as i32);
        let consistent = match m.instance {
            Some(k) => m.pixels > 0 && inside && k == next_instance,
            None => m.pixels == 0 && m.bbox.is_none(),
        };
        if !consistent {
            return Err(format!("{at}: pixels {}, instance {:?} and bbox {:?} disagree (next instance {next_instance})", m.pixels, m.instance, m.bbox));
        }
        next_instance += i64::from(m.instance.is_some());
    }
    Ok(())
}

/// Video rows number themselves, carry one of the classes, and own consecutive runs of frame
/// rows that cover the payload exactly; each frame row names its video.
fn tables_agree(meta: &StoreMeta, videos: &[VideoRow], frames: &[FrameRow]) -> Result<(), String> {
    let mut next = 0usize;
    for (i, v) in videos.iter().enumerate() {
        let at = &v.source_path;
        if v.video_id as i64 != i as i64 {
            return Err(format!("row {i} ({at}) has video_id {}", v.video_id));
        }
        let class_ok = match (&v.class_name, v.class_index) {
            (None, None) => true,
            (Some(name), Some(c)) => usize::try_from(c).ok().and_then(|c| meta.classes.get(c)) == Some(name),
            _ => false,
        };
        if !class_ok {
            return Err(format!("{at}: class {:?} with class_index {:?} is not one of store.json's classes {:?}", v.class_name, v.class_index, meta.classes));
        }
        let kept = usize::try_from(v.frames_kept).ok();
        let end = kept.and_then(|k| next.checked_add(k)).filter(|&e| e <= frames.len());
        let Some(end) = end.filter(|_| v.first_frame_row == next as i64) else {
            return Err(format!(
                "{at}: frames {} + {} do not start at row {next} or run past the {} stored frames",
                v.first_frame_row,
                v.frames_kept,
                frames.len()
            ));
        };
        if let Some(f) = (next..end).find(|&r| frames[r].frame_row != r as i64 || frames[r].video_id != v.video_id) {
            return Err(format!("{at}: frames.parquet row {f} does not belong to it"));
        }
        next = end;
    }
    if next != frames.len() {
        return Err(format!("its videos own {next} frames, but {} are stored", frames.len()));
    }
    Ok(())
}
