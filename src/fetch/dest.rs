//! The folder `usctl fetch` fills (--into): where each file and its partial download go, one
//! fetch at a time (a lock), and nothing written outside it, symbolic links included.
//!
//! Layout: `DIR/<path>` for a verified file; `DIR/.usctl-fetch/<path>.part` while it downloads;
//! `DIR/.usctl-fetch/lock` held by the running fetch.

use crate::error::FetchError;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The folder under --into that holds partial downloads and the lock.
pub const WORK_DIR: &str = crate::manifest::pin::FETCH_WORK_DIR;
const LOCK_FILE: &str = "lock";

pub struct Dest {
    root: PathBuf,
    canonical: PathBuf,
    work: PathBuf,
    _lock: File,
}

impl Dest {
    /// Creates `root` and its work folder when absent and takes the lock; fails when it cannot
    /// write there or another fetch holds it.
    pub fn open(root: &Path) -> Result<Dest, FetchError> {
        let into = |source| FetchError::Into { path: root.to_path_buf(), source };
        let work = root.join(WORK_DIR);
        std::fs::create_dir_all(&work).map_err(into)?;
        let canonical = root.canonicalize().map_err(into)?;
        let lock_path = work.join(LOCK_FILE);
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(into)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(FetchError::Busy { dir: root.to_path_buf(), lock: lock_path }),
            Err(std::fs::TryLockError::Error(e)) => return Err(into(e)),
        }
        Ok(Dest { root: root.to_path_buf(), canonical, work, _lock: lock })
    }

    /// Where the verified file goes.
    pub fn target(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Where its partial download goes.
    pub fn part(&self, rel: &str) -> PathBuf {
        self.work.join(format!("{rel}.part"))
    }

    /// Refuses `path` when the part of its folder that exists leads outside --into (a symbolic
    /// link on the way). Creates nothing.
    pub fn confined(&self, path: &Path) -> Result<(), String> {
        let existing = path.ancestors().skip(1).find(|a| a.exists()).unwrap_or(&self.root);
        let real = existing.canonicalize().map_err(|e| format!("cannot resolve folder {}: {e}", existing.display()))?;
        if !real.starts_with(&self.canonical) {
            return Err(format!(
                "folder {} leads to {}, outside --into, so nothing is written there; remove the symbolic link",
                existing.display(),
                real.display()
            ));
        }
        Ok(())
    }

    /// Creates the folder `path` goes in, inside --into (`confined` before and after).
    pub fn make_parent(&self, path: &Path) -> Result<(), String> {
        self.confined(path)?;
        let parent = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create folder {}: {e}", parent.display()))?;
        self.confined(path)
    }

    /// After a run that left nothing to resume: removes the lock and the empty work folders.
    pub fn tidy(self) {
        let _ = std::fs::remove_file(self.work.join(LOCK_FILE));
        for entry in walkdir::WalkDir::new(&self.work).contents_first(true).into_iter().flatten() {
            if entry.file_type().is_dir() {
                // Fails, as it should, for a folder that still holds something.
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}
