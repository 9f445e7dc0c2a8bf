//! Small file-system rules every writer shares: replace a file atomically (temporary name beside
//! it, synced, renamed, directory synced), recognise the temporary files a killed process left,
//! and the thread count a `0 = all cores` option means.
//!
//! Temporary names are `.<name>.tmp-<pid>`: hidden, beside their target (same file system, so the
//! rename is atomic), and naming the process that writes them, so that a later run can tell a
//! leftover of a dead process from the work of a live one.

use std::io::Write;
use std::path::{Path, PathBuf};

const TMP_MARK: &str = ".tmp-";

/// `dir/.NAME.tmp-<pid>` for `dir/NAME`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".{name}{TMP_MARK}{}", std::process::id()))
}

/// Writes the file through `fill` under a temporary name, syncs it, renames it over `path` and
/// syncs the directory. On failure the temporary file is removed and `path` is untouched.
pub fn replace_with(path: &Path, fill: impl FnOnce(&Path) -> std::io::Result<()>) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let result = fill(&tmp)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| sync_dir(path.parent().unwrap_or(Path::new("."))));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `replace_with` for bytes in memory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.flush()
    })
}

/// `replace_with` for a copy of another file.
pub fn copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    replace_with(to, |tmp| std::fs::copy(from, tmp).map(|_| ()))
}

/// Replaces `to` with a second name for `from`'s file (a hard link; a copy where the file system
/// has none). Only for files that are always replaced by rename and never written in place, so
/// that the two names can share their bytes.
pub fn link_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    replace_with(to, |tmp| std::fs::hard_link(from, tmp).or_else(|_| std::fs::copy(from, tmp).map(|_| ())))
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::File::open(dir)?.sync_all()
}

/// The process id in a temporary name made by `tmp_path` (or any name ending `.tmp-<pid>` or
/// `.tmp-<anything>-<pid>`), if it has one.
pub fn tmp_owner(name: &str) -> Option<u32> {
    let (_, tail) = name.rsplit_once(TMP_MARK)?;
    tail.rsplit('-').next()?.parse().ok()
}

/// Whether a process with this id is running on this machine.
pub fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Temporary files and folders directly in `dir` whose owner process is gone: what a kill or a
/// full disk left behind. The caller decides whether to remove or report them.
pub fn leftover_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> =
        rd.flatten().filter(|e| e.file_name().to_str().and_then(tmp_owner).is_some_and(|pid| !process_alive(pid))).map(|e| e.path()).collect();
    out.sort();
    out
}

/// Removes what `leftover_temps` finds; returns what it removed.
pub fn remove_leftover_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for p in leftover_temps(dir) {
        let ok = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        if ok.is_ok() {
            removed.push(p);
        }
    }
    removed
}

/// The threads an option means where 0 stands for every core.
pub fn threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temporary_and_keep_the_old_file_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let err = replace_with(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
        copy_atomic(&path, &dir.path().join("b.json")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("b.json")).unwrap(), b"two");
        link_atomic(&path, &dir.path().join("c.json")).unwrap();
        write_atomic(&path, b"three").unwrap();
        assert_eq!(std::fs::read(dir.path().join("c.json")).unwrap(), b"two", "replacing one name leaves the other");
    }

    #[test]
    fn leftovers_of_dead_processes_are_found_and_live_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max on Linux is at most 2^22, so this pid cannot be running.
        let dead = 4_194_999u32;
        let mine = tmp_path(&dir.path().join("last.safetensors"));
        std::fs::write(&mine, b"x").unwrap();
        std::fs::write(dir.path().join(format!(".last.safetensors.tmp-{dead}")), b"x").unwrap();
        std::fs::create_dir(dir.path().join(format!(".tmp-abcd-{dead}"))).unwrap();
        std::fs::write(dir.path().join("metrics.jsonl"), b"x").unwrap();
        assert_eq!(tmp_owner(&format!(".tmp-abcd-{dead}")), Some(dead));
        assert_eq!(tmp_owner("metrics.jsonl"), None);
        let found = leftover_temps(dir.path());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(!found.contains(&mine));
        assert_eq!(remove_leftover_temps(dir.path()).len(), 2);
        assert!(leftover_temps(dir.path()).is_empty() && mine.exists());
    }

    #[test]
    fn zero_threads_means_every_core() {
        assert_eq!(threads(3), 3);
        assert!(threads(0) >= 1);
    }
}
