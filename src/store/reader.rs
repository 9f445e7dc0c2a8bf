//! Opens a published store version and maps its payload into memory. Readers (the trainer's
//! loader, verify, tools) get frames as borrowed slices of the map: no copy, no file opens per
//! frame, and resident memory that the kernel can drop under pressure.

use super::index::{FrameRow, MaskRow, VideoRow};
use super::masks::Instance;
use super::*;
use memmap2::Mmap;

pub struct Store {
    pub dir: PathBuf,
    pub meta: StoreMeta,
    pub videos: Vec<VideoRow>,
    pub frames: Vec<FrameRow>,
    /// Format 4: one row per mask file of a stored frame (masks.parquet); empty before.
    pub masks: Vec<MaskRow>,
    map: Option<Mmap>,
    masks_map: Option<Mmap>,
}

impl Store {
    /// Opens a version directory (see `locate` for the ways a user can name one) after checking
    /// it (`check::check`): a version that differs from its store.json is refused.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let check::Checked { meta, videos, frames, payload, masks, masks_payload } = check::check(dir)?;
        let map = if meta.frames * meta.frame_bytes == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only and private to this process. Published versions
            // are immutable: usctl never writes into a version directory after its rename, and
            // a new ingest always writes a new directory. The remaining hazard is another program
            // truncating frames.u8 while it is mapped, which raises SIGBUS on access; that is
            // outside what a store promises (docs/store-format.md says never to edit a version in
            // place), the process then says so and exits (`exit_clearly_on_sigbus`), and the
            // length was checked against the index just above.
            let path = dir.join(PAYLOAD_FILE);
            Some(unsafe { Mmap::map(&payload) }.map_err(StoreError::io(&path))?)
        };
        let masks_map = match masks_payload {
            Some(file) if masks.iter().any(|m| m.instance.is_some()) => {
                // SAFETY: as for frames.u8 above: read-only, private, a file of an immutable
                // published version whose length was checked against masks.parquet in `check`.
                let path = dir.join(MASKS_PAYLOAD_FILE);
                Some(unsafe { Mmap::map(&file) }.map_err(StoreError::io(&path))?)
            }
            _ => None,
        };
        Ok(Store { dir: dir.to_path_buf(), meta, videos, frames, masks, map, masks_map })
    }

    /// The lesions of one stored frame, in mask-file order, their masks borrowed from the memory
    /// map: `None` when the frame has no mask files (no `[source.masks]`, a video, a store of
    /// format 1 to 3, or masks that were missing or unusable at ingest), `Some(vec![])` when its
    /// mask files were all empty (annotated, no lesion).
    pub fn masks_of(&self, frame_row: usize) -> Option<Vec<Instance<'_>>> {
        let start = self.masks.partition_point(|m| m.frame_row < frame_row as i64);
        let rows = &self.masks[start..start + self.masks[start..].partition_point(|m| m.frame_row == frame_row as i64)];
        if rows.is_empty() {
            return None;
        }
        let n = self.frame_bytes();
        let bytes = self.masks_map.as_deref().unwrap_or(&[]);
        Some(rows.iter().filter_map(|row| row.instance.map(|k| Instance { row, mask: &bytes[k as usize * n..(k as usize + 1) * n] })).collect())
    }

    /// Instances (mask files with lesion pixels) in the version.
    pub fn instance_count(&self) -> usize {
        self.masks.iter().filter(|m| m.instance.is_some()).count()
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

/// What a reader says when the kernel raises SIGBUS: the one way a mapped store fails at run time.
const SIGBUS_MESSAGE: &[u8] =
    b"usctl: a memory-mapped store file shrank while in use (SIGBUS); published store versions must never be modified; run `usctl verify` on the store\n";

extern "C" fn on_sigbus(_: libc::c_int) {
    // SAFETY: write(2) on a static buffer and _exit(2) are async-signal-safe (signal-safety(7));
    // nothing else runs in the handler, and the process ends here.
    unsafe {
        libc::write(2, SIGBUS_MESSAGE.as_ptr().cast(), SIGBUS_MESSAGE.len());
        libc::_exit(2)
    }
}

/// Makes SIGBUS (a mapped frames.u8 truncated under a running reader) print one line naming the
/// cause and the fix and exit with code 2, instead of dying without a word. Both binaries call it
/// first thing in `main`.
pub fn exit_clearly_on_sigbus() {
    // SAFETY: sigaction with a zeroed struct, an empty mask and a handler that only calls
    // async-signal-safe functions; it replaces only SIGBUS's disposition, which nothing else in
    // usctl sets.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}
