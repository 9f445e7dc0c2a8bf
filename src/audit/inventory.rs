//! Manifest vs disk: what a store version could not use (missing, failed, partial, no frame
//! kept), its counts per sub-dataset and class against the manifest's `[[expect]]` rows
//! (docs/manifest-format.md), and, given the manifest and `--raw`, the corpus as it is now: files
//! no rule takes, files gone, changed since ingest, or not in the store. Reads only; nothing
//! outside `--raw` is read (links leading out are not followed).

use crate::error::ManifestError;
use crate::hash::sha256_file;
use crate::manifest::confine::{escaped, RawRoot};
use crate::manifest::{rel_string, Expect, Manifest, Problem};
use crate::store::index::VideoRow;
use crate::store::reader::Store;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot read the version's manifest {path}: {source}; run `usctl verify` on the version")]
    Stored { path: PathBuf, source: std::io::Error },
    #[error("manifest {manifest} describes dataset '{name}' but store version {version} holds dataset '{dataset}'; pass the manifest this version was ingested from, or the matching --store/--dataset")]
    OtherDataset { manifest: PathBuf, name: String, version: PathBuf, dataset: String },
}

/// The inventory section of an audit report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Inventory {
    pub dataset: String,
    pub version: PathBuf,
    /// Whose `[[expect]]` rows were checked: the version's own manifest.toml, or `--manifest`.
    pub expectations_from: PathBuf,
    /// Stored counts per sub-dataset (manifest order), each split by class.
    pub counts: Vec<SubdatasetCount>,
    /// One per `[[expect]]` row, in manifest order.
    pub expectations: Vec<ExpectCheck>,
    /// Rows of videos.parquet whose file gave no frames or only some.
    pub unusable: Vec<Unusable>,
    /// The corpus now, when `--manifest` and `--raw` were given.
    pub disk: Option<Disk>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Tally {
    /// Rows of videos.parquet (every file the manifest named, skipped ones included).
    pub rows: u64,
    /// Rows with at least one stored frame (a still image is one, of one frame).
    pub videos: u64,
    /// Stored frames (the USCL paper's "images").
    pub frames: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubdatasetCount {
    pub subdataset: String,
    pub total: Tally,
    pub classes: Vec<ClassCount>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassCount {
    /// None: files without a class.
    pub class: Option<String>,
    #[serde(flatten)]
    pub tally: Tally,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExpectCheck {
    pub subdataset: String,
    /// None: the whole sub-dataset.
    pub class: Option<String>,
    pub videos: Option<Versus>,
    pub frames: Option<Versus>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Versus {
    pub expected: u64,
    pub found: u64,
    /// found − expected: negative is a shortfall.
    pub difference: i64,
}

impl Versus {
    fn new(expected: u64, found: u64) -> Versus {
        Versus { expected, found, difference: found as i64 - expected as i64 }
    }
}

impl ExpectCheck {
    /// Every declared count found exactly.
    pub fn met(&self) -> bool {
        [self.videos, self.frames].iter().flatten().all(|v| v.difference == 0)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum UnusableKind {
    /// Listed in the manifest, not found at ingest (status `missing`).
    Missing,
    /// Could not be read or decoded at all (status `failed`).
    Failed,
    /// Decoded, but no frame was kept.
    NoFramesKept,
    /// Decoding stopped early; the frames before the error are stored (status `partial`).
    Partial,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Unusable {
    /// Path relative to --raw, as the store records it.
    pub path: String,
    pub subdataset: String,
    pub class: Option<String>,
    pub kind: UnusableKind,
    pub frames_kept: i64,
    pub message: Option<String>,
}

impl Unusable {
    pub fn action(&self) -> &'static str {
        match self.kind {
            UnusableKind::Missing => "restore the file under --raw, or remove it from the manifest's `files`; then re-ingest",
            UnusableKind::Failed => "replace or re-export the file (or `exclude` it); then re-ingest",
            UnusableKind::NoFramesKept => "check its length and timestamps (ffprobe) against --fps; re-export it or `exclude` it",
            UnusableKind::Partial => "the file is damaged after the stored frames: re-export or replace it, then re-ingest",
        }
    }
}

/// The corpus under `--raw` now, against the manifest and the version.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Disk {
    pub manifest: PathBuf,
    pub raw: PathBuf,
    /// The given manifest's bytes differ from the version's manifest.toml.
    pub manifest_differs: bool,
    /// Files under a source's folder that no source's `include` or `files` takes (and no
    /// `exclude` removes, and that are not a metadata CSV), relative to --raw.
    pub unmatched: Vec<String>,
    /// Listed in the manifest or stored in the version, with nothing at the path now.
    pub missing: Vec<OnDisk>,
    /// Size or sha256 differ from what the version recorded at ingest.
    pub changed: Vec<Changed>,
    /// On disk now and named by the manifest, without stored frames in the version.
    pub not_in_store: Vec<OnDisk>,
    /// Folders that cannot be read, links leading outside --raw or looping, files that cannot be
    /// read now.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OnDisk {
    pub path: String,
    /// The version's status for this file (ok, partial, failed, missing), None when it has no row.
    pub stored: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Changed {
    pub path: String,
    pub stored_bytes: Option<i64>,
    pub bytes: u64,
    pub stored_sha256: Option<String>,
    /// Computed only when the size is the same.
    pub sha256: Option<String>,
}

impl Disk {
    /// Problems a curator must act on; a file the version already records as missing is
    /// counted once, with the version's rows.
    pub fn findings(&self) -> usize {
        self.unmatched.len()
            + self.missing.iter().filter(|m| m.stored.as_deref() != Some("missing")).count()
            + self.changed.len()
            + self.not_in_store.len()
            + self.problems.len()
            + usize::from(self.manifest_differs)
    }
}

impl Inventory {
    /// Problems a curator must act on: unusable rows, expectation rows not met (short or over),
    /// and the disk's findings. Plain counts are not findings.
    pub fn findings(&self) -> usize {
        self.unusable.len() + self.expectations.iter().filter(|e| !e.met()).count() + self.disk.as_ref().map_or(0, Disk::findings)
    }
}

/// Takes stock of `store`; with `disk = Some((manifest, raw))` also of the corpus now, and the
/// expectations are that manifest's instead of the version's manifest.toml.
pub fn inventory(store: &Store, disk: Option<(&Path, &Path)>) -> Result<Inventory, InventoryError> {
    let stored_path = store.dir.join("manifest.toml");
    let stored_bytes = std::fs::read(&stored_path).map_err(|source| InventoryError::Stored { path: stored_path.clone(), source })?;
    let (manifest, expectations_from, disk) = match disk {
        None => (Manifest::parse(&stored_bytes, &stored_path)?, stored_path, None),
        Some((manifest_path, raw)) => {
            let (manifest, bytes) = Manifest::load(manifest_path)?;
            if manifest.name != store.meta.dataset {
                return Err(InventoryError::OtherDataset {
                    manifest: manifest_path.to_path_buf(),
                    name: manifest.name,
                    version: store.dir.clone(),
                    dataset: store.meta.dataset.clone(),
                });
            }
            let mut d = on_disk(&manifest, manifest_path, raw, &store.videos)?;
            d.manifest_differs = bytes != stored_bytes;
            (manifest, manifest_path.to_path_buf(), Some(d))
        }
    };
    Ok(Inventory {
        dataset: store.meta.dataset.clone(),
        version: store.dir.clone(),
        expectations_from,
        counts: counts(&store.videos, &store.meta.classes),
        expectations: check_expectations(&manifest.expectations, &store.videos),
        unusable: unusable(&store.videos),
        disk,
    })
}

fn tally<'a>(rows: impl Iterator<Item = &'a VideoRow>) -> Tally {
    let mut t = Tally::default();
    for v in rows {
        t.rows += 1;
        if v.frames_kept > 0 {
            t.videos += 1;
            t.frames += v.frames_kept as u64;
        }
    }
    t
}

/// Per sub-dataset in order of first row, classes in `classes` order, files without a class last.
pub fn counts(rows: &[VideoRow], classes: &[String]) -> Vec<SubdatasetCount> {
    let mut order: Vec<&str> = Vec::new();
    for v in rows {
        if !order.contains(&v.subdataset.as_str()) {
            order.push(&v.subdataset);
        }
    }
    let mut names: Vec<Option<&str>> = classes.iter().map(|c| Some(c.as_str())).collect();
    // Class names the version's list lacks cannot happen in a checked store; kept, not dropped.
    for v in rows {
        if let Some(c) = v.class_name.as_deref() {
            if !names.contains(&Some(c)) {
                names.push(Some(c));
            }
        }
    }
    names.push(None);
    order
        .into_iter()
        .map(|s| {
            let of = || rows.iter().filter(move |v| v.subdataset == s);
            let classes = names
                .iter()
                .map(|&c| ClassCount { class: c.map(str::to_string), tally: tally(of().filter(|v| v.class_name.as_deref() == c)) })
                .filter(|c| c.tally.rows > 0)
                .collect();
            SubdatasetCount { subdataset: s.to_string(), total: tally(of()), classes }
        })
        .collect()
}

pub fn check_expectations(expect: &[Expect], rows: &[VideoRow]) -> Vec<ExpectCheck> {
    expect
        .iter()
        .map(|e| {
            let found = tally(rows.iter().filter(|v| v.subdataset == e.subdataset && (e.class.is_none() || v.class_name == e.class)));
            ExpectCheck {
                subdataset: e.subdataset.clone(),
                class: e.class.clone(),
                videos: e.videos.map(|n| Versus::new(n, found.videos)),
                frames: e.frames.map(|n| Versus::new(n, found.frames)),
            }
        })
        .collect()
}

/// Rows that gave no frame or only some, in row order.
pub fn unusable(rows: &[VideoRow]) -> Vec<Unusable> {
    rows.iter()
        .filter_map(|v| {
            let kind = match v.status.as_str() {
                "missing" => UnusableKind::Missing,
                "failed" => UnusableKind::Failed,
                _ if v.frames_kept == 0 => UnusableKind::NoFramesKept,
                "partial" => UnusableKind::Partial,
                _ => return None,
            };
            Some(Unusable {
                path: v.source_path.clone(),
                subdataset: v.subdataset.clone(),
                class: v.class_name.clone(),
                kind,
                frames_kept: v.frames_kept,
                message: v.message.clone(),
            })
        })
        .collect()
}

fn on_disk(manifest: &Manifest, manifest_path: &Path, raw: &Path, rows: &[VideoRow]) -> Result<Disk, InventoryError> {
    let resolved = manifest.resolve(raw, manifest_path)?;
    let root = RawRoot::new(raw).map_err(|source| ManifestError::Raw { path: raw.to_path_buf(), source })?;
    let stored: BTreeMap<&str, &VideoRow> = rows.iter().map(|v| (v.source_path.as_str(), v)).collect();
    let listed: BTreeSet<&str> = resolved.entries.iter().map(|e| e.rel_path.as_str()).collect();
    let status = |path: &str| stored.get(path).map(|v| v.status.clone());
    // Problems of listed files are the `missing` list below.
    let mut problems: Vec<Problem> = resolved.problems.iter().filter(|p| !listed.contains(p.path.as_str())).cloned().collect();

    let mut missing: BTreeMap<String, OnDisk> = BTreeMap::new();
    let mut not_in_store = Vec::new();
    for e in &resolved.entries {
        if e.missing {
            missing.insert(e.rel_path.clone(), OnDisk { path: e.rel_path.clone(), stored: status(&e.rel_path) });
        } else if stored.get(e.rel_path.as_str()).is_none_or(|v| v.status == "missing") {
            not_in_store.push(OnDisk { path: e.rel_path.clone(), stored: status(&e.rel_path) });
        }
    }
    for v in rows {
        if std::fs::symlink_metadata(raw.join(&v.source_path)).is_err() && !missing.contains_key(&v.source_path) {
            missing.insert(v.source_path.clone(), OnDisk { path: v.source_path.clone(), stored: Some(v.status.clone()) });
        }
    }

    // Changed since ingest: size first, sha256 only when the size agrees.
    let candidates: Vec<&VideoRow> =
        rows.iter().filter(|v| v.status != "missing" && v.source_bytes.is_some() && !missing.contains_key(&v.source_path)).collect();
    let compared: Vec<Result<Option<Changed>, Problem>> = candidates.par_iter().map(|v| compare(v, raw, &root)).collect();
    let mut changed = Vec::new();
    for c in compared {
        match c {
            Ok(Some(c)) => changed.push(c),
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
    }

    // Mask files the manifest names (`[source.masks]`) are accounted for too.
    let named: BTreeSet<&str> =
        listed.iter().copied().chain(resolved.entries.iter().flat_map(|e| e.masks.iter().flatten()).map(|m| m.rel_path.as_str())).collect();
    let (unmatched, walk_problems) = unmatched(manifest, raw, &root, &named);
    for p in walk_problems {
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
    Ok(Disk {
        manifest: manifest_path.to_path_buf(),
        raw: raw.to_path_buf(),
        manifest_differs: false,
        unmatched,
        missing: missing.into_values().collect(),
        changed,
        not_in_store,
        problems,
    })
}

fn compare(v: &VideoRow, raw: &Path, root: &RawRoot) -> Result<Option<Changed>, Problem> {
    let path = raw.join(&v.source_path);
    if root.outside(&path).is_some() {
        // Ingest did not read it either; `resolve` reports the link.
        return Ok(None);
    }
    let problem = |e: std::io::Error| Problem { path: v.source_path.clone(), reason: format!("cannot read it now: {e}; fix its permissions") };
    let bytes = std::fs::metadata(&path).map_err(problem)?.len();
    let changed = |sha256| Changed { path: v.source_path.clone(), stored_bytes: v.source_bytes, bytes, stored_sha256: v.source_sha256.clone(), sha256 };
    if v.source_bytes != Some(bytes as i64) {
        return Ok(Some(changed(None)));
    }
    let Some(stored_sha) = &v.source_sha256 else { return Ok(None) };
    let (_, sha) = sha256_file(&path).map_err(problem)?;
    Ok((&sha != stored_sha).then(|| changed(Some(sha))))
}

/// Files under the sources' folders that nothing in the manifest accounts for, and the walk's
/// problems. Links leading outside --raw are neither listed nor entered.
fn unmatched(manifest: &Manifest, raw: &Path, root: &RawRoot, listed: &BTreeSet<&str>) -> (Vec<String>, Vec<Problem>) {
    let metadata: BTreeSet<String> = manifest.sources.iter().flat_map(|s| s.metadata_files()).collect();
    let excluded = |rel: &str| manifest.sources.iter().any(|s| rel.strip_prefix(&s.prefix()).is_some_and(|r| s.excludes(r)));
    let mut found = BTreeSet::new();
    let mut problems = Vec::new();
    let mut walked = BTreeSet::new();
    for s in &manifest.sources {
        let folder = s.folder(raw);
        if !walked.insert(folder.clone()) || root.outside(&folder).is_some() {
            continue;
        }
        let walker = walkdir::WalkDir::new(&folder)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.path_is_symlink() || root.outside(e.path()).is_none());
        for item in walker {
            match item {
                Ok(e) if e.file_type().is_file() => {
                    let Ok(rel) = e.path().strip_prefix(&folder) else { continue };
                    let rel = if rel.to_str().is_some() { rel_string(rel) } else { escaped(rel) };
                    found.insert(format!("{}{rel}", s.prefix()));
                }
                Ok(_) => {}
                Err(err) => {
                    let path = err.path().unwrap_or(&folder).display().to_string();
                    let reason = match (err.loop_ancestor(), err.io_error()) {
                        (Some(anc), _) => format!("symbolic link loop back to {}; remove or fix the link", anc.display()),
                        (None, Some(io)) => format!("cannot read: {io}; fix its permissions or exclude it"),
                        _ => err.to_string(),
                    };
                    let p = Problem { path, reason };
                    if !problems.contains(&p) {
                        problems.push(p);
                    }
                }
            }
        }
    }
    let unmatched = found.into_iter().filter(|rel| !listed.contains(rel.as_str()) && !metadata.contains(rel) && !excluded(rel)).collect();
    (unmatched, problems)
}

/// Rows shown per table in the markdown; report.json has them all.
const SHOWN: usize = 100;

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'").replace('|', "\\|").replace('\n', " "))
}

fn table(out: &mut String, header: &[&str], rows: Vec<Vec<String>>) {
    out.push_str(&format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len())));
    let n = rows.len();
    for r in rows.into_iter().take(SHOWN) {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    if n > SHOWN {
        out.push_str(&format!("\n… and {} more (all of them in report.json).\n", n - SHOWN));
    }
    out.push('\n');
}

fn class_cell(c: &Option<String>, none: &str) -> String {
    c.as_deref().map(cell).unwrap_or_else(|| none.to_string())
}

fn versus_cells(v: &Option<Versus>) -> [String; 3] {
    match v {
        Some(v) => [v.expected.to_string(), v.found.to_string(), if v.difference == 0 { "0".into() } else { format!("**{:+}**", v.difference) }],
        None => ["–".into(), "–".into(), "–".into()],
    }
}

impl Inventory {
    /// The report's section: tables, each finding with its file and what to do.
    pub fn markdown(&self) -> String {
        let mut out = String::from("## Manifest vs disk\n\n");
        out.push_str(&format!(
            "Version {} of dataset {}; expectations from {}. **{} finding(s).**\n\n",
            code(&self.version.display().to_string()),
            code(&self.dataset),
            code(&self.expectations_from.display().to_string()),
            self.findings()
        ));

        out.push_str("### Stored per sub-dataset and class\n\nFiles = rows of videos.parquet (skipped files included); videos = files with at least one stored frame (a still image counts as one); frames = stored frames.\n\n");
        let mut rows = Vec::new();
        for s in &self.counts {
            for c in &s.classes {
                rows.push(vec![
                    cell(&s.subdataset),
                    class_cell(&c.class, "(no class)"),
                    c.tally.rows.to_string(),
                    c.tally.videos.to_string(),
                    c.tally.frames.to_string(),
                ]);
            }
            rows.push(vec![
                cell(&s.subdataset),
                "**all**".into(),
                s.total.rows.to_string(),
                format!("**{}**", s.total.videos),
                format!("**{}**", s.total.frames),
            ]);
        }
        table(&mut out, &["sub-dataset", "class", "files", "videos", "frames"], rows);

        out.push_str("### Expected counts\n\n");
        if self.expectations.is_empty() {
            out.push_str("The manifest declares no `[[expect]]` rows (schema 2, docs/manifest-format.md), so no count is checked.\n\n");
        } else {
            let rows = self
                .expectations
                .iter()
                .map(|e| {
                    let mut r = vec![cell(&e.subdataset), class_cell(&e.class, "(all)")];
                    r.extend(versus_cells(&e.videos));
                    r.extend(versus_cells(&e.frames));
                    r.push(if e.met() {
                        "met".into()
                    } else {
                        "**not met**: look for missing or failed files, a `files` list or globs that take too few (or too many) files, wrong class rules, or another --fps (frames)".into()
                    });
                    r
                })
                .collect();
            table(&mut out, &["sub-dataset", "class", "videos expected", "found", "difference", "frames expected", "found", "difference", "verdict"], rows);
        }

        out.push_str("### Files the version could not use\n\n");
        if self.unusable.is_empty() {
            out.push_str("None: every file gave all its frames.\n\n");
        } else {
            let rows = self
                .unusable
                .iter()
                .map(|u| {
                    let kind = match u.kind {
                        UnusableKind::Missing => "missing".to_string(),
                        UnusableKind::Failed => "failed".to_string(),
                        UnusableKind::NoFramesKept => "no frame kept".to_string(),
                        UnusableKind::Partial => format!("partial ({} frames kept)", u.frames_kept),
                    };
                    vec![code(&u.path), cell(&u.subdataset), class_cell(&u.class, "–"), kind, cell(u.message.as_deref().unwrap_or("")), u.action().into()]
                })
                .collect();
            table(&mut out, &["file", "sub-dataset", "class", "status", "reason", "what to do"], rows);
        }

        match &self.disk {
            None => out.push_str("The corpus on disk was not compared (give `--manifest` and `--raw` for that).\n"),
            Some(d) => d.markdown(&mut out),
        }
        out
    }
}

/// Folders with more than this many unmatched files get one row in the markdown.
const GROUPED: usize = 3;

/// One row per unmatched file, except in folders with many (masks, exports): one row per folder.
fn unmatched_rows(files: &[String]) -> Vec<Vec<String>> {
    let mut by_folder: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in files {
        by_folder.entry(f.rfind('/').map_or("", |i| &f[..=i])).or_default().push(f);
    }
    let mut rows = Vec::new();
    for (folder, files) in by_folder {
        if files.len() > GROUPED {
            let shown = if folder.is_empty() { "(top folder)".to_string() } else { code(folder) };
            let first = files.iter().take(2).map(|f| code(f)).collect::<Vec<_>>().join(", ");
            rows.push(vec![shown, files.len().to_string(), format!("{first}, …")]);
        } else {
            rows.extend(files.iter().map(|f| vec![code(f), "1".into(), String::new()]));
        }
    }
    rows
}

impl Disk {
    fn markdown(&self, out: &mut String) {
        out.push_str(&format!("### The corpus now ({} under {})\n\n", code(&self.manifest.display().to_string()), code(&self.raw.display().to_string())));
        if self.manifest_differs {
            out.push_str(&format!(
                "- **{} differs from the version's manifest.toml**: this version was not ingested from it; re-ingest with it (a new version) before relying on the comparisons below.\n\n",
                code(&self.manifest.display().to_string())
            ));
        }
        if self.findings() == usize::from(self.manifest_differs) {
            out.push_str("Every file on disk is taken by the manifest and stored unchanged.\n\n");
            return;
        }
        let missing_now = self.missing.iter().filter(|m| m.stored.as_deref() != Some("missing")).count();
        let counts = [self.unmatched.len(), missing_now, self.changed.len(), self.not_in_store.len()];
        let sections: [(&str, &str, Vec<Vec<String>>); 4] = [
            (
                "Files no rule takes",
                "add it to a source's `include` or `files`, or to `exclude` if it is left out on purpose, or move it out of --raw",
                unmatched_rows(&self.unmatched),
            ),
            (
                "Missing now",
                "restore the file under --raw, or remove it from the manifest; then re-ingest",
                self.missing
                    .iter()
                    .filter(|m| m.stored.as_deref() != Some("missing"))
                    .map(|m| vec![code(&m.path), m.stored.clone().map_or("no row".into(), |s| format!("stored ({s})"))])
                    .collect(),
            ),
            (
                "Changed since ingest",
                "the stored frames are of the old file: re-ingest (a new version), or restore the original",
                self.changed
                    .iter()
                    .map(|c| {
                        let sha = |s: &Option<String>| s.as_deref().map_or("–".to_string(), |s| code(&s[..s.len().min(12)]));
                        vec![code(&c.path), c.stored_bytes.map_or("–".into(), |b| b.to_string()), c.bytes.to_string(), sha(&c.stored_sha256), sha(&c.sha256)]
                    })
                    .collect(),
            ),
            (
                "On disk, not in the version",
                "re-ingest to store it",
                self.not_in_store.iter().map(|m| vec![code(&m.path), m.stored.clone().map_or("no row".into(), |s| format!("{s} at ingest"))]).collect(),
            ),
        ];
        let headers: [&[&str]; 4] = [
            &["file, or folder", "files", "e.g."],
            &["file", "in the version"],
            &["file", "bytes at ingest", "bytes now", "sha256 at ingest", "sha256 now"],
            &["file", "in the version"],
        ];
        for (((title, action, rows), header), n) in sections.into_iter().zip(headers).zip(counts) {
            if rows.is_empty() {
                continue;
            }
            out.push_str(&format!("#### {title} ({n})\n\nWhat to do: {action}.\n\n"));
            table(out, header, rows);
        }
        if !self.problems.is_empty() {
            out.push_str(&format!("#### Other problems ({})\n\n", self.problems.len()));
            table(out, &["path", "problem and what to do"], self.problems.iter().map(|p| vec![code(&p.path), cell(&p.reason)]).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{ingest, resample::Rational, IngestOptions};

    fn png(path: &Path, value: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(16, 12, image::Luma([value])).save(path).unwrap();
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn ingested(root: &Path, manifest: &Path, raw: &Path) -> Store {
        let opts = IngestOptions {
            manifest: manifest.to_path_buf(),
            raw: raw.to_path_buf(),
            store: root.join("store"),
            fps: Rational::new(1, 1).unwrap(),
            size: 8,
            threads: 1,
            progress: false,
            accept_changed: false,
            skip_absent_sources: false,
        };
        Store::open(&ingest(&opts).unwrap().version_dir).unwrap()
    }

    const MANIFEST: &str = r#"schema = 2
name = "inv"
classes = ["a", "b"]

[[source]]
subdataset = "s1"
dir = "s1"
include = ["*.png"]
files = ["gone.png"]
exclude = ["skip*"]
[[source.class_rule]]
prefix = "a"
class = "a"
[[source.class_rule]]
prefix = "b"
class = "b"
[source.patient.csv]
file = "patients.csv"
key_column = "f"
column = "p"

[[source]]
subdataset = "s2"
dir = "s2"
include = ["*.png"]

[[expect]]
subdataset = "s1"
class = "a"
videos = 2
frames = 2

[[expect]]
subdataset = "s1"
class = "b"
videos = 3

[[expect]]
subdataset = "s1"
videos = 4
frames = 4

[[expect]]
subdataset = "s2"
frames = 1
"#;

    /// A corpus whose files all ingest: s1 = a_1, a_2, b_1, b_2 (+ metadata, an excluded file),
    /// s2 = c (no class).
    fn clean_raw(raw: &Path) {
        for (i, f) in ["a_1", "a_2", "b_1", "b_2", "skip_me"].iter().enumerate() {
            png(&raw.join(format!("s1/{f}.png")), 40 * i as u8);
        }
        write(&raw.join("s1/patients.csv"), b"f,p\na_1,p1\n");
        png(&raw.join("s2/c.png"), 7);
    }

    fn row(path: &str, status: &str, frames_kept: i64) -> VideoRow {
        VideoRow {
            video_id: 0,
            subdataset: "s".into(),
            source_path: path.into(),
            kind: "video".into(),
            class_name: Some("a".into()),
            class_index: Some(0),
            frames_decoded: frames_kept,
            frames_kept,
            status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn many_unmatched_files_of_one_folder_are_one_row() {
        let files: Vec<String> = ["LICENSE", "m/1.png", "m/2.png", "m/3.png", "m/4.png", "x/y/a"].iter().map(|s| s.to_string()).collect();
        let rows = unmatched_rows(&files);
        assert_eq!(
            rows,
            vec![
                vec!["`LICENSE`".to_string(), "1".into(), "".into()],
                vec!["`m/`".into(), "4".into(), "`m/1.png`, `m/2.png`, …".into()],
                vec!["`x/y/a`".into(), "1".into(), "".into()],
            ]
        );
    }

    #[test]
    fn unusable_rows_by_status_and_frames() {
        let rows = [row("ok", "ok", 3), row("m", "missing", 0), row("f", "failed", 0), row("z", "ok", 0), row("p", "partial", 2), row("pz", "partial", 0)];
        let got: Vec<(String, UnusableKind)> = unusable(&rows).into_iter().map(|u| (u.path, u.kind)).collect();
        use UnusableKind::*;
        let want = [("m", Missing), ("f", Failed), ("z", NoFramesKept), ("p", Partial), ("pz", NoFramesKept)];
        assert_eq!(got, want.map(|(p, k)| (p.to_string(), k)));
    }

    #[test]
    fn expectations_compare_stored_videos_and_frames() {
        let mut rows = vec![row("1", "ok", 3), row("2", "ok", 5), row("3", "failed", 0), row("4", "ok", 1)];
        rows[3].class_name = None;
        let e = |class: Option<&str>, videos, frames| Expect { subdataset: "s".into(), class: class.map(str::to_string), videos, frames };
        let checks = check_expectations(&[e(Some("a"), Some(2), Some(8)), e(None, Some(4), None), e(Some("b"), None, Some(0))], &rows);
        assert_eq!(checks[0].videos, Some(Versus { expected: 2, found: 2, difference: 0 }));
        assert_eq!(checks[0].frames, Some(Versus { expected: 8, found: 8, difference: 0 }));
        assert!(checks[0].met());
        assert_eq!(checks[1].videos, Some(Versus { expected: 4, found: 3, difference: -1 }));
        assert_eq!(checks[1].frames, None);
        assert!(!checks[1].met());
        assert!(checks[2].met());
        let c = counts(&rows, &["a".into(), "b".into()]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].total, Tally { rows: 4, videos: 3, frames: 9 });
        let classes: Vec<_> = c[0].classes.iter().map(|c| (c.class.clone(), c.tally.clone())).collect();
        assert_eq!(classes, vec![(Some("a".into()), Tally { rows: 3, videos: 2, frames: 8 }), (None, Tally { rows: 1, videos: 1, frames: 1 })]);
    }

    #[test]
    fn a_clean_corpus_has_no_findings() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("raw");
        clean_raw(&raw);
        let manifest = tmp.path().join("m.toml");
        let text = MANIFEST.replace("files = [\"gone.png\"]\n", "").replace("videos = 3", "videos = 2");
        write(&manifest, text.as_bytes());
        let store = ingested(tmp.path(), &manifest, &raw);
        for disk in [None, Some((manifest.as_path(), raw.as_path()))] {
            let inv = inventory(&store, disk).unwrap();
            assert_eq!(inv.findings(), 0, "{}", inv.markdown());
            assert!(inv.expectations.iter().all(ExpectCheck::met) && inv.expectations.len() == 4);
            assert!(inv.unusable.is_empty());
        }
        let inv = inventory(&store, Some((&manifest, &raw))).unwrap();
        assert_eq!(
            inv.disk.as_ref().unwrap(),
            &Disk {
                manifest: manifest.clone(),
                raw: raw.clone(),
                manifest_differs: false,
                unmatched: vec![],
                missing: vec![],
                changed: vec![],
                not_in_store: vec![],
                problems: vec![]
            }
        );
        assert!(inv.markdown().contains("Every file on disk is taken by the manifest and stored unchanged."));
        // Other manifest bytes (a comment) alone: one finding, and the files still agree.
        let edited = tmp.path().join("edited.toml");
        write(&edited, format!("# edited\n{text}").as_bytes());
        let inv = inventory(&store, Some((&edited, &raw))).unwrap();
        assert_eq!(inv.findings(), 1);
        let md = inv.markdown();
        assert!(md.contains("differs from the version's manifest.toml") && md.contains("Every file on disk is taken"), "{md}");
        assert_eq!(
            inv.counts.iter().map(|s| (s.subdataset.as_str(), s.total.clone())).collect::<Vec<_>>(),
            vec![("s1", Tally { rows: 4, videos: 4, frames: 4 }), ("s2", Tally { rows: 1, videos: 1, frames: 1 })]
        );
        // Another dataset's manifest is refused, naming both.
        let other = tmp.path().join("other.toml");
        write(&other, text.replace("name = \"inv\"", "name = \"other\"").as_bytes());
        let err = inventory(&store, Some((&other, &raw))).unwrap_err().to_string();
        assert!(err.contains("other.toml") && err.contains("'other'") && err.contains("'inv'"), "{err}");
    }

    #[test]
    fn every_kind_of_finding_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("raw");
        clean_raw(&raw);
        write(&raw.join("s1/b_bad.png"), b"not a png at all");
        write(&raw.join("s1/notes.txt"), b"curator's notes");
        for i in 0..4 {
            write(&raw.join(format!("s1/mask/{i}.png")), b"mask");
        }
        // A folder link leading outside --raw: neither walked nor listed, reported once.
        png(&tmp.path().join("elsewhere/x.png"), 1);
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), raw.join("s1/out")).unwrap();
        let manifest = tmp.path().join("m.toml");
        write(&manifest, MANIFEST.as_bytes());
        let store = ingested(tmp.path(), &manifest, &raw);

        // After the ingest: one file deleted, one rewritten in place (same size), one grown, one added.
        std::fs::remove_file(raw.join("s1/a_1.png")).unwrap();
        let mut bytes = std::fs::read(raw.join("s1/a_2.png")).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(raw.join("s1/a_2.png"), &bytes).unwrap();
        let mut grown = std::fs::read(raw.join("s1/b_1.png")).unwrap();
        grown.push(0);
        std::fs::write(raw.join("s1/b_1.png"), &grown).unwrap();
        png(&raw.join("s1/a_3.png"), 99);

        let only_store = inventory(&store, None).unwrap();
        assert!(only_store.disk.is_none());
        let kinds: Vec<(&str, UnusableKind)> = only_store.unusable.iter().map(|u| (u.path.as_str(), u.kind)).collect();
        assert_eq!(kinds, vec![("s1/b_bad.png", UnusableKind::Failed), ("s1/gone.png", UnusableKind::Missing)]);
        let unmet: Vec<_> = only_store.expectations.iter().filter(|e| !e.met()).collect();
        assert_eq!(unmet.len(), 1);
        assert_eq!((unmet[0].class.as_deref(), unmet[0].videos), (Some("b"), Some(Versus { expected: 3, found: 2, difference: -1 })));
        assert_eq!(only_store.findings(), 3);

        let inv = inventory(&store, Some((&manifest, &raw))).unwrap();
        let d = inv.disk.as_ref().unwrap();
        assert!(!d.manifest_differs);
        let masks = (0..4).map(|i| format!("s1/mask/{i}.png"));
        assert_eq!(d.unmatched, masks.chain(["s1/notes.txt".to_string()]).collect::<Vec<_>>());
        let on = |p: &str, s: Option<&str>| OnDisk { path: p.into(), stored: s.map(str::to_string) };
        assert_eq!(d.missing, vec![on("s1/a_1.png", Some("ok")), on("s1/gone.png", Some("missing"))]);
        assert_eq!(d.not_in_store, vec![on("s1/a_3.png", None)]);
        let changed: Vec<(&str, Option<i64>, u64, bool)> = d.changed.iter().map(|c| (c.path.as_str(), c.stored_bytes, c.bytes, c.sha256.is_some())).collect();
        let (n2, n1) = (bytes.len() as u64, grown.len() as u64);
        assert_eq!(changed, vec![("s1/a_2.png", Some(n2 as i64), n2, true), ("s1/b_1.png", Some(n1 as i64 - 1), n1, false)]);
        assert_ne!(d.changed[0].sha256, d.changed[0].stored_sha256);
        assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
        assert!(d.problems[0].path.ends_with("s1/out") && d.problems[0].reason.contains("outside --raw"), "{:?}", d.problems);
        // 3 from the version; unmatched 5 + missing 1 (gone.png is counted once) + changed 2 + new 1 + link 1.
        assert_eq!(inv.findings(), 3 + 10);

        let md = inv.markdown();
        for needle in [
            "**13 finding(s).**",
            "| `s1/b_bad.png` | s1 | b | failed |",
            "| `s1/gone.png` | s1 | – | missing |",
            "| s1 | b | 3 | 2 | **-1** |",
            "#### Files no rule takes (5)",
            "| `s1/mask/` | 4 | `s1/mask/0.png`, `s1/mask/1.png`, … |",
            "| `s1/notes.txt` | 1 |  |",
            "| `s1/a_1.png` | stored (ok) |",
            "| `s1/a_3.png` | no row |",
            "#### Changed since ingest (2)",
            "#### Other problems (1)",
        ] {
            assert!(md.contains(needle), "{needle}\n{md}");
        }
        assert!(!md.contains("| `s1/gone.png` | stored"), "{md}");

        // Another manifest's bytes (a comment) are a finding of their own.
        let edited = tmp.path().join("edited.toml");
        write(&edited, format!("# edited\n{MANIFEST}").as_bytes());
        let inv = inventory(&store, Some((&edited, &raw))).unwrap();
        assert!(inv.disk.as_ref().unwrap().manifest_differs);
        assert_eq!(inv.findings(), 14);
        assert!(inv.markdown().contains("differs from the version's manifest.toml"));
        serde_json::to_string(&inv).unwrap();
    }
}
