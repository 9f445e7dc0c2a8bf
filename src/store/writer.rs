//! Writes one store version into a temporary directory beside its final place, then publishes it
//! with a single rename, under the dataset's publish lock: a version id is published once, and an
//! identical ingest that finishes second reuses the first one's version. A failed or interrupted
//! ingest leaves published versions untouched and removes its temporary directory.

use super::index::{self, FrameHashes, FrameRow, MaskRow, VideoRow};
use super::lock::PublishLock;
use super::*;
use crate::files::sync_dir;
use crate::hash::{hex, sha256_file};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};

pub struct StoreWriter {
    dataset_dir: PathBuf,
    tmp: PathBuf,
    version_id: String,
    size: usize,
    frame_bytes: usize,
    payload: Option<BufWriter<File>>,
    hasher: Sha256,
    payload_bytes: u64,
    frames: Vec<FrameRow>,
    videos: Vec<VideoRow>,
    masks_payload: Option<BufWriter<File>>,
    masks_hasher: Sha256,
    masks: Vec<MaskRow>,
    instances: i64,
    published: bool,
}

/// One mask file of a frame, already in stored geometry (S×S bytes, nonzero = lesion).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMask {
    pub source_path: String,
    pub source_sha256: String,
    /// Lesion pixels in the source mask.
    pub source_pixels: i64,
    pub mask: Vec<u8>,
}

/// The version a `publish` left in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub seq: u32,
    pub path: PathBuf,
    /// True when an identical ingest had published this id first and this one was discarded.
    pub reused: bool,
}

/// One kept frame's place in its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameMeta {
    pub time_s: f64,
    pub source_index: i64,
    pub pts: i64,
}

impl StoreWriter {
    /// A writer of `size × size` frames.
    pub fn create(dataset_dir: &Path, version_id: &str, size: usize) -> Result<StoreWriter, StoreError> {
        std::fs::create_dir_all(dataset_dir).map_err(StoreError::io(dataset_dir))?;
        let tmp = dataset_dir.join(format!("{TMP_PREFIX}{version_id}-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(StoreError::io(&tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(StoreError::io(&tmp))?;
        interrupt::register(&tmp);
        let payload_path = tmp.join(PAYLOAD_FILE);
        let file = File::create(&payload_path).map_err(StoreError::io(&payload_path))?;
        let masks_path = tmp.join(MASKS_PAYLOAD_FILE);
        let masks_file = File::create(&masks_path).map_err(StoreError::io(&masks_path))?;
        Ok(StoreWriter {
            dataset_dir: dataset_dir.to_path_buf(),
            tmp,
            version_id: version_id.to_string(),
            size,
            frame_bytes: size * size,
            payload: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: Sha256::new(),
            payload_bytes: 0,
            frames: Vec::new(),
            videos: Vec::new(),
            masks_payload: Some(BufWriter::with_capacity(1 << 20, masks_file)),
            masks_hasher: Sha256::new(),
            masks: Vec::new(),
            instances: 0,
            published: false,
        })
    }

    /// Appends a manifest entry: its frames (`meta.len()` × frame_bytes bytes) go to the payload,
    /// and `row` gets its video id, first frame row, frame count and payload digest filled in.
    pub fn add(&mut self, mut row: VideoRow, pixels: &[u8], meta: &[FrameMeta]) -> Result<(), StoreError> {
        if pixels.len() != meta.len() * self.frame_bytes {
            return Err(StoreError::Corrupt {
                path: self.tmp.clone(),
                message: format!("{}: {} bytes for {} frames", row.source_path, pixels.len(), meta.len()),
            });
        }
        row.video_id = self.videos.len() as i32;
        row.first_frame_row = self.frames.len() as i64;
        row.frames_kept = meta.len() as i64;
        row.payload_sha256 = (!meta.is_empty()).then(|| hex(&Sha256::digest(pixels)));
        let hashes: Vec<FrameHashes> = pixels.par_chunks(self.frame_bytes.max(1)).map(|f| FrameHashes::of(f, self.size)).collect();
        for (m, hashes) in meta.iter().zip(hashes) {
            self.frames.push(FrameRow {
                frame_row: self.frames.len() as i64,
                video_id: row.video_id,
                time_s: m.time_s,
                source_index: m.source_index,
                pts: m.pts,
                hashes: Some(hashes),
            });
        }
        let path = self.tmp.join(PAYLOAD_FILE);
        if let Some(w) = self.payload.as_mut() {
            w.write_all(pixels).map_err(StoreError::io(&path))?;
        }
        self.hasher.update(pixels);
        self.payload_bytes += pixels.len() as u64;
        self.videos.push(row);
        Ok(())
    }

    /// Records the mask files of the first frame of the entry added last (a still image's one
    /// frame), in the order given: each with lesion pixels becomes the next instance of masks.u8
    /// (as 0/1 bytes), an empty one a row without instance. No files: nothing is recorded (the
    /// frame is not annotated).
    pub fn add_masks(&mut self, masks: &[NewMask]) -> Result<(), StoreError> {
        if masks.is_empty() {
            return Ok(());
        }
        let corrupt = |message: String| StoreError::Corrupt { path: self.tmp.clone(), message };
        let Some(video) = self.videos.last().filter(|v| v.frames_kept > 0) else {
            return Err(corrupt("masks given for an entry without a stored frame".into()));
        };
        let (frame_row, video_id) = (video.first_frame_row, video.video_id);
        let path = self.tmp.join(MASKS_PAYLOAD_FILE);
        for (i, m) in masks.iter().enumerate() {
            if m.mask.len() != self.frame_bytes {
                return Err(corrupt(format!("{}: a mask of {} bytes, frames have {}", m.source_path, m.mask.len(), self.frame_bytes)));
            }
            let (pixels, bbox) = super::masks::measure(&m.mask, self.size);
            let instance = (pixels > 0).then_some(self.instances);
            if pixels > 0 {
                let bits: Vec<u8> = m.mask.iter().map(|&v| u8::from(v != 0)).collect();
                if let Some(w) = self.masks_payload.as_mut() {
                    w.write_all(&bits).map_err(StoreError::io(&path))?;
                }
                self.masks_hasher.update(&bits);
                self.instances += 1;
            }
            self.masks.push(MaskRow {
                frame_row,
                video_id,
                mask_index: i as i32,
                source_path: m.source_path.clone(),
                source_sha256: m.source_sha256.clone(),
                source_pixels: m.source_pixels,
                pixels,
                instance,
                bbox,
            });
        }
        Ok(())
    }

    pub fn videos(&self) -> &[VideoRow] {
        &self.videos
    }

    /// Writes the index and metadata, syncs everything and renames the directory into place.
    /// `meta.files`, `frames`, `videos` and `meta_sha256` are filled in here. If a version with
    /// this id was published meanwhile, this one is discarded and that one returned (`reused`).
    pub fn publish(mut self, mut meta: StoreMeta, manifest: &[u8]) -> Result<Published, StoreError> {
        let payload_path = self.tmp.join(PAYLOAD_FILE);
        if let Some(w) = self.payload.take() {
            let file = w.into_inner().map_err(|e| StoreError::Io { path: payload_path.clone(), source: e.into_error() })?;
            file.sync_all().map_err(StoreError::io(&payload_path))?;
        }
        let masks_path = self.tmp.join(MASKS_PAYLOAD_FILE);
        if let Some(w) = self.masks_payload.take() {
            let file = w.into_inner().map_err(|e| StoreError::Io { path: masks_path.clone(), source: e.into_error() })?;
            file.sync_all().map_err(StoreError::io(&masks_path))?;
        }
        let mut files = BTreeMap::new();
        files.insert(PAYLOAD_FILE.to_string(), FileDigest { bytes: self.payload_bytes, sha256: hex(&std::mem::take(&mut self.hasher).finalize()) });
        let mask_bytes = self.instances as u64 * self.frame_bytes as u64;
        files.insert(MASKS_PAYLOAD_FILE.to_string(), FileDigest { bytes: mask_bytes, sha256: hex(&std::mem::take(&mut self.masks_hasher).finalize()) });
        index::write_frames(&self.tmp.join(FRAMES_FILE), &self.frames)?;
        index::write_videos(&self.tmp.join(VIDEOS_FILE), &self.videos)?;
        index::write_masks(&self.tmp.join(MASKS_FILE), &self.masks)?;
        write_synced(&self.tmp.join(MANIFEST_FILE), manifest)?;
        for name in [FRAMES_FILE, VIDEOS_FILE, MANIFEST_FILE, MASKS_FILE] {
            let path = self.tmp.join(name);
            let (bytes, sha256) = sha256_file(&path).map_err(StoreError::io(&path))?;
            files.insert(name.to_string(), FileDigest { bytes, sha256 });
        }
        meta.files = files;
        meta.frames = self.frames.len() as u64;
        meta.videos = self.videos.len() as u64;
        meta.frame_bytes = self.frame_bytes as u64;
        meta.meta_sha256 = Some(check::meta_digest(&meta));
        write_synced(&self.tmp.join(META_FILE), &check::meta_bytes(&meta))?;
        sync_dir(&self.tmp).map_err(StoreError::io(&self.tmp))?;
        let _lock = PublishLock::acquire(&self.dataset_dir)?;
        let versions = list_versions(&self.dataset_dir)?;
        if let Some(v) = versions.iter().find(|v| v.id == self.version_id) {
            return Ok(Published { seq: v.seq, path: v.path.clone(), reused: true });
        }
        let first = versions.last().map_or(1, |v| v.seq + 1);
        let (seq, path) = rename_into_place(&self.tmp, &self.dataset_dir, &self.version_id, &versions, first)?;
        self.published = true;
        Ok(Published { seq, path, reused: false })
    }
}

/// Renames the finished temporary folder `tmp` to `<seq>-<id>` in `dataset_dir`, with the first
/// sequence number from `first` on that no published version (`versions`) has and no stray
/// folder's name holds, and syncs the dataset folder. The caller holds the publish lock.
pub(super) fn rename_into_place(tmp: &Path, dataset_dir: &Path, id: &str, versions: &[VersionDir], first: u32) -> Result<(u32, PathBuf), StoreError> {
    let mut seq = first;
    loop {
        let target = dataset_dir.join(format!("{seq:04}-{id}"));
        if !versions.iter().any(|v| v.seq == seq) && !target.exists() {
            match interrupt::rename(tmp, &target) {
                Ok(()) => {
                    sync_dir(dataset_dir).map_err(StoreError::io(dataset_dir))?;
                    return Ok((seq, target));
                }
                Err(_) if target.exists() => {}
                Err(e) => return Err(StoreError::Io { path: target, source: e }),
            }
        }
        seq += 1;
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if !self.published {
            self.payload = None;
            self.masks_payload = None;
            interrupt::remove(&self.tmp);
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(StoreError::io(path))?;
    f.write_all(bytes).map_err(StoreError::io(path))?;
    f.sync_all().map_err(StoreError::io(path))
}
