//! `usctl fetch` (docs/fetch.md): downloads the files a manifest pins (`[pinned]`, schema 3)
//! into a folder, verified against their size and sha256, resumable, several at a time.
//!
//! `http` is the client, `dest` the folder written (layout, lock, confinement), `file` one file's
//! download and verification, `report` what is said about it; this module runs the workers.

pub mod dest;
pub mod file;
pub mod http;
pub mod report;

use crate::error::FetchError;
use crate::manifest::pin::Pin;
use crate::manifest::{Manifest, Source};
use globset::{GlobBuilder, GlobSetBuilder};
use report::{Counts, FileReport, GetFrom, Report, Status, REPORT_FORMAT, REPORT_VERSION};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub const DEFAULT_JOBS: u16 = 4;

#[derive(Debug, Clone)]
pub struct Options {
    pub manifest: PathBuf,
    /// The folder the files go to, each at its pinned path.
    pub into: PathBuf,
    /// Files downloaded at once.
    pub jobs: usize,
}

/// Fetches every pinned file; `on_file` sees each file's entry as soon as it is done (from the
/// worker threads, in the order they finish). The report lists them in the manifest's order.
pub fn fetch(opts: &Options, on_file: &(dyn Fn(&FileReport) + Sync)) -> Result<Report, FetchError> {
    let started = std::time::Instant::now();
    if opts.jobs == 0 {
        return Err(FetchError::Jobs);
    }
    let (manifest, _) = Manifest::load(&opts.manifest)?;
    let pins = &manifest.pinned.as_ref().ok_or_else(|| FetchError::NoPins { path: opts.manifest.clone() })?.files;
    let dest = dest::Dest::open(&opts.into)?;
    let client = http::Client::new();
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<FileReport>>> = Mutex::new(vec![None; pins.len()]);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.min(pins.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(pin) = pins.get(i) else { break };
                let entry = entry(&manifest, pin, file::fetch(&client, &dest, pin));
                on_file(&entry);
                done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(entry);
            });
        }
    });
    let files: Vec<FileReport> = done.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect();
    let report = Report {
        format: REPORT_FORMAT,
        version: REPORT_VERSION,
        manifest: opts.manifest.display().to_string(),
        into: opts.into.display().to_string(),
        jobs: opts.jobs,
        counts: counts(&files),
        get_from: get_from(&manifest, &files),
        files,
        seconds: started.elapsed().as_secs_f64(),
    };
    if report.all_ok() {
        dest.tidy();
    }
    Ok(report)
}

fn entry(manifest: &Manifest, pin: &Pin, outcome: report::Outcome) -> FileReport {
    let source = source_of(manifest, &pin.path).map(|i| &manifest.sources[i]);
    FileReport {
        path: pin.path.clone(),
        size: pin.size,
        sha256: pin.sha256.clone(),
        url: pin.url.clone(),
        licence: pin.licence.clone().or_else(|| source.and_then(|s| s.licence.clone())),
        source: source.map(|s| s.subdataset.clone()),
        ok: matches!(outcome.status, Status::Present | Status::Downloaded),
        message: outcome.describe(),
        outcome,
    }
}

fn counts(files: &[FileReport]) -> Counts {
    let count = |s: Status| files.iter().filter(|f| f.outcome.status == s).count();
    Counts {
        pinned: files.len(),
        present: count(Status::Present),
        downloaded: count(Status::Downloaded),
        no_url: count(Status::NoUrl),
        failed: count(Status::Failed),
        bytes: files.iter().map(|f| f.outcome.bytes).sum(),
    }
}

/// The files still missing, grouped by their source, with its homepage and citation.
fn get_from(manifest: &Manifest, files: &[FileReport]) -> Vec<GetFrom> {
    let mut out: Vec<GetFrom> = Vec::new();
    for f in files.iter().filter(|f| !f.ok) {
        let source = manifest.sources.iter().find(|s| Some(&s.subdataset) == f.source.as_ref());
        let (homepage, citation) = (source.and_then(|s| s.homepage.clone()), source.and_then(|s| s.citation.clone()));
        match out.iter_mut().find(|g| g.source == f.source && g.homepage == homepage && g.citation == citation) {
            Some(g) => g.files.push(f.path.clone()),
            None => out.push(GetFrom { source: f.source.clone(), homepage, citation, files: vec![f.path.clone()] }),
        }
    }
    out
}

/// The first source that names `path` (relative to --raw): by its `include` globs (less its
/// `exclude`), its `files` list or its metadata CSVs; else the first whose folder holds it.
pub fn source_of(manifest: &Manifest, path: &str) -> Option<usize> {
    let inside = |s: &Source| path.strip_prefix(&s.prefix()).map(str::to_string);
    let names = |s: &Source| {
        let Some(rel) = inside(s) else { return false };
        let mut include = GlobSetBuilder::new();
        for g in &s.include {
            if let Ok(g) = GlobBuilder::new(g).literal_separator(true).build() {
                include.add(g);
            }
        }
        let globbed = include.build().is_ok_and(|set| set.is_match(&rel)) && !s.excludes(&rel);
        globbed || s.files.iter().any(|f| f.trim_start_matches("./") == rel) || s.metadata_files().iter().any(|m| m == path)
    };
    manifest.sources.iter().position(names).or_else(|| manifest.sources.iter().position(|s| inside(s).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn files_are_matched_to_the_source_that_names_them() {
        let text = r#"
schema = 3
name = "d"
[[source]]
subdataset = "videos"
dir = "v"
include = ["**/*.mp4"]
exclude = ["skip/**"]
homepage = "https://example.org/v"
[[source]]
subdataset = "stills"
dir = "v"
files = ["a.png", "./b.png"]
[source.class_csv]
file = "meta.csv"
key_column = "k"
column = "c"
[[source]]
subdataset = "rest"
include = ["*.gif"]
"#;
        let m = Manifest::parse(text.as_bytes(), Path::new("m.toml")).unwrap();
        let of = |p: &str| source_of(&m, p).map(|i| m.sources[i].subdataset.as_str());
        assert_eq!(of("v/x/y.mp4"), Some("videos"));
        assert_eq!(of("v/a.png"), Some("stills"));
        assert_eq!(of("v/b.png"), Some("stills"));
        assert_eq!(of("v/meta.csv"), Some("stills"));
        assert_eq!(of("c.gif"), Some("rest"));
        // Named by none: the first whose folder holds it.
        assert_eq!(of("v/skip/z.mp4"), Some("videos"));
        assert_eq!(of("other/z.txt"), Some("rest"));
    }
}
