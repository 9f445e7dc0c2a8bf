//! Keeping what a manifest names inside `--raw`. Written paths and globs must be relative and
//! free of `..` (checked when the manifest is validated); what is actually read must lie inside
//! the canonical `--raw` once symbolic links are resolved (checked when files are listed).

use std::path::{Path, PathBuf};

/// Why a path or glob written in a manifest could name something outside the folder it is
/// relative to, if it could.
pub fn leaves(text: &str) -> Option<&'static str> {
    if text.starts_with('/') {
        Some("is absolute")
    } else if text.split('/').any(|c| c == "..") {
        Some("has a '..' component")
    } else {
        None
    }
}

/// The corpus folder, symbolic links resolved.
#[derive(Debug)]
pub struct RawRoot {
    canonical: PathBuf,
}

impl RawRoot {
    pub fn new(raw: &Path) -> std::io::Result<RawRoot> {
        Ok(RawRoot { canonical: raw.canonicalize()? })
    }

    /// Where `path` really leads when that is outside `--raw`. A path that cannot be resolved
    /// (absent, a dangling link, a link loop) is not outside: reading it fails later and reports
    /// why.
    pub fn outside(&self, path: &Path) -> Option<PathBuf> {
        path.canonicalize().ok().filter(|real| !real.starts_with(&self.canonical))
    }
}

/// The problem reported for a link that leads outside `--raw`.
pub fn outside_reason(target: &Path) -> String {
    format!("symbolic link to {}, outside --raw, so it is not read; point the link inside --raw or copy the data in", target.display())
}

/// A path for messages: valid UTF-8 as it is, every other byte as `\xNN`.
pub fn escaped(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_are_named() {
        assert_eq!(leaves("/etc/passwd"), Some("is absolute"));
        assert_eq!(leaves("a/../../b"), Some("has a '..' component"));
        assert_eq!(leaves("../*"), Some("has a '..' component"));
        assert_eq!(leaves("a/..b/*.mp4"), None);
        assert_eq!(leaves("./x/**"), None);
    }

    #[test]
    fn links_are_judged_by_where_they_lead() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        std::fs::write(raw.join("in"), b"x").unwrap();
        std::fs::write(tmp.path().join("out"), b"x").unwrap();
        std::os::unix::fs::symlink(raw.join("in"), raw.join("to_in")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("out"), raw.join("to_out")).unwrap();
        let root = RawRoot::new(&raw).unwrap();
        assert_eq!(root.outside(&raw.join("to_in")), None);
        assert_eq!(root.outside(&raw.join("absent")), None);
        assert_eq!(root.outside(&raw.join("to_out")), Some(tmp.path().canonicalize().unwrap().join("out")));
    }

    #[test]
    fn invalid_bytes_are_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"r\xc3\xa9/a\xff2.png"));
        assert_eq!(escaped(p), "r\u{e9}/a\\xff2.png");
    }
}
