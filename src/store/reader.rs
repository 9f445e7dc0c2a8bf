//! Opens a published store version and maps its payload into memory. Readers (the trainer's
//! loader, verify, tools) get frames as borrowed slices of the map: no copy, no file opens per
//! frame, and resident memory that the kernel can drop under pressure.

use super::*;
use super::index::{self, FrameRow, VideoRow};
use memmap2::Mmap;

pub struct Store {
    pub dir: PathBuf,
    pub meta: StoreMeta,
    pub videos: Vec<VideoRow>,
    pub frames: Vec<FrameRow>,
    map: Option<Mmap>,
}

impl Store {
    /// Opens a version directory (see `locate` for the ways a user can name one).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let meta = StoreMeta::load(dir)?;
        let videos = index::read_videos(&dir.join(VIDEOS_FILE))?;
        let frames = index::read_frames(&dir.join(FRAMES_FILE))?;
        let payload_path = dir.join(PAYLOAD_FILE);
        let corrupt = |message: String| StoreError::Corrupt { path: payload_path.clone(), message };
        let file = std::fs::File::open(&payload_path).map_err(StoreError::io(&payload_path))?;
        let len = file.metadata().map_err(StoreError::io(&payload_path))?.len();
        let expected = meta.frames * meta.frame_bytes;
        if frames.len() as u64 != meta.frames || len != expected {
            return Err(corrupt(format!(
                "{} bytes and {} index rows, but store.json says {} frames of {} bytes",
                len,
                frames.len(),
                meta.frames,
                meta.frame_bytes
            )));
        }
        for v in &videos {
            let end = v.first_frame_row.checked_add(v.frames_kept);
            if v.first_frame_row < 0 || v.frames_kept < 0 || end.is_none_or(|e| e as u64 > meta.frames) {
                return Err(corrupt(format!("video {} points outside the payload", v.source_path)));
            }
        }
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only and private to this process. Published versions
            // are immutable: usctl never writes into a version directory after its rename, and
            // a new ingest always writes a new directory. The remaining hazard is another program
            // truncating frames.u8 while it is mapped, which would raise SIGBUS on access; that
            // is outside what a store promises (docs/store-format.md says never to edit a
            // version in place), and the length was checked against the index just above.
            Some(unsafe { Mmap::map(&file) }.map_err(StoreError::io(&payload_path))?)
        };
        Ok(Store { dir: dir.to_path_buf(), meta, videos, frames, map })
    }

    /// The whole payload.
    pub fn payload(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub fn frame_bytes(&self) -> usize {
        self.meta.frame_bytes as usize
    }

    /// Pixels of one stored frame (size × size bytes, row-major).
    pub fn frame(&self, row: usize) -> &[u8] {
        let n = self.frame_bytes();
        &self.payload()[row * n..(row + 1) * n]
    }

    /// All frames of one video, in time order.
    pub fn video_pixels(&self, video: &VideoRow) -> &[u8] {
        let n = self.frame_bytes();
        let start = video.first_frame_row as usize * n;
        &self.payload()[start..start + video.frames_kept as usize * n]
    }
}
