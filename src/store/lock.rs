//! The publish lock of a dataset folder: one ingest at a time decides whether its version id is
//! new and renames its directory into place, so that two identical ingests never publish two
//! versions with one id. The lock file exists only while held; a killed holder's file is harmless
//! (its lock died with it) and is removed by the next holder.

use super::{StoreError, LOCK_FILE};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct PublishLock {
    path: PathBuf,
    // Closing it releases the lock, after `drop` removed the name.
    _file: File,
}

impl PublishLock {
    /// Waits until this process holds the lock of `dataset_dir`.
    pub fn acquire(dataset_dir: &Path) -> Result<PublishLock, StoreError> {
        let path = dataset_dir.join(LOCK_FILE);
        loop {
            let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(StoreError::io(&path))?;
            file.lock().map_err(StoreError::io(&path))?;
            // The previous holder removes the file before releasing it: a lock on a file that no
            // longer has this name is no lock at all, so open the name again.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
                _ => false,
            };
            if same {
                return Ok(PublishLock { path, _file: file });
            }
        }
    }
}

impl Drop for PublishLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
