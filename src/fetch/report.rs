//! What `usctl fetch` reports (fetch report v1, docs/fetch.md): one entry per pinned file, the
//! counts, and where to get what is still missing. The text lines and the JSON say the same.

use serde::Serialize;

pub const REPORT_FORMAT: &str = "usctl fetch report";
pub const REPORT_VERSION: u32 = 1;

/// Where a file stands after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It was already there with the pinned size and sha256: no request made.
    Present,
    /// Downloaded (or completed, `resumed_from`) and verified in this run.
    Downloaded,
    /// Not there, and its pin has no URL.
    NoUrl,
    /// Not there with the pinned bytes: `failure` says why.
    Failed,
}

/// Why a download did not give the pinned file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// The server answered with a status other than 200, 206 or 416 (after redirects).
    Http { status: u16, reason: String },
    /// The body ended or stalled before the whole file arrived; the partial file is kept.
    Cut { received: u64, expected: u64, cause: String },
    /// The whole file arrived with the pinned size but another sha256; it was deleted.
    Corrupt { sha256: String, pinned: String },
    /// The server announced or sent a size other than the pinned one; nothing was kept.
    SizeMismatch { size: u64, pinned: u64, announced: bool },
    /// No answer: no connection, a timeout before the answer, too many redirects, a malformed one.
    Network { message: String },
    /// Reading or writing under --into failed.
    Disk { message: String },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Http { status, reason } => write!(f, "HTTP {status} {reason}"),
            Failure::Cut { received, expected, cause } => write!(f, "cut after {received} of {expected} bytes ({cause}); run again to resume"),
            Failure::Corrupt { sha256, pinned } => write!(f, "corrupt: sha256 {sha256}, pinned {pinned}; the download was deleted"),
            Failure::SizeMismatch { size, pinned, announced: true } => {
                write!(f, "size mismatch: the server has {size} bytes, pinned {pinned}; nothing downloaded")
            }
            Failure::SizeMismatch { pinned, .. } => write!(f, "size mismatch: the server sent more than the pinned {pinned} bytes; the download was deleted"),
            Failure::Network { message } => write!(f, "no answer: {message}"),
            Failure::Disk { message } => write!(f, "{message}"),
        }
    }
}

/// A file found at the target whose bytes are not the pinned ones (sha256 only when the size is
/// the pinned one: another size is enough).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    pub size: u64,
    pub sha256: Option<String>,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.sha256 {
            Some(sha) => write!(f, "{} bytes, sha256 {sha}", self.size),
            None => write!(f, "{} bytes", self.size),
        }
    }
}

/// What happened to one file (the part of its report entry that the download decides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub status: Status,
    /// Bytes received in this run.
    pub bytes: u64,
    /// The partial file this run continued (its length), when it asked for the rest.
    pub resumed_from: Option<u64>,
    /// A file already at the target with other bytes: replaced when `status` is `downloaded`,
    /// left as it was otherwise.
    pub other_bytes: Option<Found>,
    pub failure: Option<Failure>,
}

impl Outcome {
    pub fn new(status: Status) -> Outcome {
        Outcome { status, bytes: 0, resumed_from: None, other_bytes: None, failure: None }
    }

    /// The report line after the path.
    pub fn describe(&self) -> String {
        let mut text = match (&self.status, &self.failure) {
            (Status::Present, _) => "already present".to_string(),
            (Status::Downloaded, _) => match self.resumed_from {
                Some(from) => format!("resumed from {from}, downloaded {} bytes", self.bytes),
                None => format!("downloaded {} bytes", self.bytes),
            },
            (Status::NoUrl, _) => "no URL in its pin".to_string(),
            (Status::Failed, Some(failure)) => failure.to_string(),
            (Status::Failed, None) => "failed".to_string(),
        };
        if let Some(found) = &self.other_bytes {
            match self.status {
                Status::Downloaded => text.push_str(&format!("; replaced a file with other bytes ({found})")),
                _ => text.push_str(&format!("; the file there has other bytes ({found}) and was left as it is")),
            }
        }
        text
    }
}

/// One pinned file in the report.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The pin's path, relative to --into.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub url: Option<String>,
    /// The pin's licence, else its source's.
    pub licence: Option<String>,
    /// The subdataset of the manifest source the file belongs to, when one matches it.
    pub source: Option<String>,
    /// Present with the pinned bytes at the end of the run.
    pub ok: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The report line after the path.
    pub message: String,
}

impl FileReport {
    /// `ok       path: message` (`ok`, `FAILED` or `NO URL`).
    pub fn line(&self) -> String {
        let tag = match self.outcome.status {
            Status::Present | Status::Downloaded => "ok",
            Status::NoUrl => "NO URL",
            Status::Failed => "FAILED",
        };
        format!("{tag:<7} {}: {}", self.path, self.message)
    }
}

/// Where to get the files of one source that are still missing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GetFrom {
    /// The source's subdataset (None: files no source of the manifest matches).
    pub source: Option<String>,
    pub homepage: Option<String>,
    pub citation: Option<String>,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counts {
    pub pinned: usize,
    pub present: usize,
    pub downloaded: usize,
    pub no_url: usize,
    pub failed: usize,
    /// Bytes received in this run, all files together.
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub version: u32,
    pub manifest: String,
    pub into: String,
    pub jobs: usize,
    pub counts: Counts,
    pub files: Vec<FileReport>,
    pub get_from: Vec<GetFrom>,
    pub seconds: f64,
}

impl Report {
    /// Every pinned file is present with its pinned bytes.
    pub fn all_ok(&self) -> bool {
        self.files.iter().all(|f| f.ok)
    }

    /// The summary printed after the per-file lines.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let mut text = format!(
            "{}: {} pinned files: {} already present, {} downloaded ({} bytes), {} without URL, {} failed ({:.1} s)\n",
            self.into, c.pinned, c.present, c.downloaded, c.bytes, c.no_url, c.failed, self.seconds
        );
        if !self.get_from.is_empty() {
            text.push_str(&format!(
                "{} file(s) are missing or have other bytes; get them where their source says and put them under {}:\n",
                c.no_url + c.failed,
                self.into
            ));
            for g in &self.get_from {
                let name = g.source.as_deref().map(|s| format!("source '{s}'")).unwrap_or_else(|| "files no source matches".into());
                let whence = match (&g.homepage, &g.citation) {
                    (None, None) => "the manifest names no homepage or citation".to_string(),
                    (h, c) => [h.as_ref().map(|h| format!("homepage {h}")), c.as_ref().map(|c| format!("citation: {c}"))]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("; "),
                };
                text.push_str(&format!("  {name} ({} file(s)): {whence}\n", g.files.len()));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_happened() {
        let mut o = Outcome::new(Status::Downloaded);
        o.bytes = 500;
        o.resumed_from = Some(500);
        assert_eq!(o.describe(), "resumed from 500, downloaded 500 bytes");
        o.other_bytes = Some(Found { size: 3, sha256: None });
        assert_eq!(o.describe(), "resumed from 500, downloaded 500 bytes; replaced a file with other bytes (3 bytes)");
        let mut f = Outcome::new(Status::Failed);
        f.failure = Some(Failure::Http { status: 404, reason: "Not Found".into() });
        f.other_bytes = Some(Found { size: 4, sha256: Some("ab".into()) });
        assert_eq!(f.describe(), "HTTP 404 Not Found; the file there has other bytes (4 bytes, sha256 ab) and was left as it is");
        let cut = Failure::Cut { received: 5, expected: 10, cause: "peer disconnected".into() };
        assert_eq!(cut.to_string(), "cut after 5 of 10 bytes (peer disconnected); run again to resume");
    }

    #[test]
    fn failures_serialise_with_their_kind() {
        let j = serde_json::to_value(Failure::Corrupt { sha256: "a".into(), pinned: "b".into() }).unwrap();
        assert_eq!(j, serde_json::json!({"kind": "corrupt", "sha256": "a", "pinned": "b"}));
        let mut o = Outcome::new(Status::NoUrl);
        o.bytes = 0;
        let j = serde_json::to_value(&o).unwrap();
        assert_eq!(j["status"], "no_url");
        assert_eq!(j["failure"], serde_json::Value::Null);
    }
}
