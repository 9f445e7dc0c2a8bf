//! Manifests (schemas 1 and 2, docs/manifest-format.md): which files form a dataset, which
//! sub-dataset each belongs to, how each gets its class (ordered file-name prefix / path glob rules,
//! or a column of a metadata CSV) and its patient id (a regex on the file name, or a CSV column);
//! schema 2 adds the counts a curator expects (`[[expect]]`, checked by `usctl audit`).
//! Everything a label depends on is declared here; the code holds no string offsets. Nothing
//! outside `--raw` is read (`confine`).

pub(crate) mod confine;

use crate::error::ManifestError;
use confine::{escaped, outside_reason, RawRoot};
use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The newest manifest schema this usctl reads (and the one `[[expect]]` needs).
pub const SCHEMA_VERSION: u32 = 2;
/// The oldest schema still read, unchanged.
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    /// Dataset name: the store keeps its versions under STORE/<name>/.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Class names; a class's index is its position here.
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
    /// Counts the curator expects (schema 2): checked by `usctl audit`, never by ingest.
    #[serde(rename = "expect", default)]
    pub expectations: Vec<Expect>,
}

/// One row of the expectations table: how many stored videos and/or frames a sub-dataset (or
/// one class of it) should have.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub subdataset: String,
    /// A class of `classes`; absent = the whole sub-dataset, files without a class included.
    #[serde(default)]
    pub class: Option<String>,
    /// Stored videos (a still image is one, of one frame).
    #[serde(default)]
    pub videos: Option<u64>,
    /// Stored frames (what the USCL paper calls images).
    #[serde(default)]
    pub frames: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub subdataset: String,
    /// Folder of this source, relative to --raw (default: --raw itself).
    #[serde(default)]
    pub dir: Option<String>,
    /// Globs relative to `dir` (`*` does not cross `/`, `**` does).
    #[serde(default)]
    pub include: Vec<String>,
    /// Files listed one by one, relative to `dir`; a missing one is reported.
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Ordered rules, first match wins.
    #[serde(default)]
    pub class_rule: Vec<ClassRule>,
    #[serde(default)]
    pub class_csv: Option<CsvColumn>,
    #[serde(default)]
    pub patient: Option<PatientRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassRule {
    /// Matches the start of the file name.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Matches the path relative to `dir`.
    #[serde(default)]
    pub glob: Option<String>,
    pub class: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// File name without its extension.
    Stem,
    /// File name with extension.
    Name,
    /// Path relative to `dir`.
    Path,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvColumn {
    /// CSV file relative to `dir`.
    pub file: String,
    pub key_column: String,
    #[serde(default = "default_key")]
    pub key: KeyKind,
    pub column: String,
    /// Maps a (trimmed) cell value to a class name; when empty the value must be a class name.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

fn default_key() -> KeyKind {
    KeyKind::Stem
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientRule {
    /// Applied to the file name; the first capture group (or the whole match) is the id.
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub csv: Option<CsvColumn>,
}

/// One file the manifest names, with everything the manifest says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub subdataset: String,
    /// Path relative to --raw with `/` separators: the file's identity in the store.
    pub rel_path: String,
    pub path: PathBuf,
    pub class: Option<(String, i32)>,
    pub patient: Option<String>,
    /// Listed explicitly but absent.
    pub missing: bool,
}

/// A problem found while listing files (unreadable folder, symlink loop, missing file, a label
/// the metadata cannot give). Not fatal; reported with the path.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Resolved {
    pub entries: Vec<Entry>,
    pub problems: Vec<Problem>,
    /// Things worth a look that do not skip a file (e.g. a video with no class).
    pub notes: Vec<Problem>,
}

impl Source {
    /// Every path and glob of this source that names files to read, with its field.
    fn named_paths(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<(&'static str, &str)> = self.dir.iter().map(|d| ("`dir`", d.as_str())).collect();
        out.extend(self.include.iter().map(|g| ("`include`", g.as_str())));
        out.extend(self.exclude.iter().map(|g| ("`exclude`", g.as_str())));
        out.extend(self.files.iter().map(|f| ("`files` entry", f.as_str())));
        out.extend(self.class_csv.iter().map(|c| ("class_csv `file`", c.file.as_str())));
        if let Some(PatientRule { csv: Some(c), .. }) = &self.patient {
            out.push(("patient.csv `file`", c.file.as_str()));
        }
        out
    }

    /// Its folder relative to --raw as a prefix of the paths it produces (`v/`, or empty).
    pub fn prefix(&self) -> String {
        self.dir.as_deref().map(|d| format!("{}/", d.trim_end_matches('/'))).unwrap_or_default()
    }

    /// Its folder under `raw`.
    pub fn folder(&self, raw: &Path) -> PathBuf {
        match &self.dir {
            Some(d) => raw.join(d),
            None => raw.to_path_buf(),
        }
    }

    /// Whether an `exclude` glob takes this path (relative to the source's folder).
    pub fn excludes(&self, rel: &str) -> bool {
        glob_set(&self.exclude).is_match(rel)
    }

    /// The metadata CSVs this source reads, relative to --raw.
    pub fn metadata_files(&self) -> Vec<String> {
        let mut out: Vec<String> = self.class_csv.iter().map(|c| c.file.clone()).collect();
        if let Some(PatientRule { csv: Some(c), .. }) = &self.patient {
            out.push(c.file.clone());
        }
        out.into_iter().map(|f| format!("{}{}", self.prefix(), f.trim_start_matches("./"))).collect()
    }

    /// What the source asks for, for messages: `include [..], files [..], exclude [..]`.
    fn patterns(&self) -> String {
        [("include", &self.include), ("files", &self.files), ("exclude", &self.exclude)]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k} {v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<(Manifest, Vec<u8>), ManifestError> {
        let bytes = std::fs::read(path).map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
        let manifest = Manifest::parse(&bytes, path)?;
        Ok((manifest, bytes))
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<Manifest, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid { path: path.to_path_buf(), message };
        let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8 text ({e})")))?;
        let m: Manifest = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        m.validate().map_err(invalid)?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), String> {
        if !(OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&self.schema) {
            return Err(format!(
                "schema = {} but this usctl reads schemas {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}; write `schema = {SCHEMA_VERSION}` (or 1 without [[expect]])",
                self.schema
            ));
        }
        if self.name.is_empty() || self.name.starts_with('.') || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(format!("name '{}' must be letters, digits, '.', '_' or '-' (it names a folder)", self.name));
        }
        if self.sources.is_empty() {
            return Err("no [[source]] table".into());
        }
        let mut seen = BTreeSet::new();
        for c in &self.classes {
            if !seen.insert(c) {
                return Err(format!("class '{c}' is listed twice in `classes`"));
            }
        }
        for (i, s) in self.sources.iter().enumerate() {
            let at = format!("source #{} ({})", i + 1, s.subdataset);
            if s.include.is_empty() && s.files.is_empty() {
                return Err(format!("{at}: give `include` globs or a `files` list"));
            }
            if !s.class_rule.is_empty() && s.class_csv.is_some() {
                return Err(format!("{at}: use either `class_rule` or `class_csv`, not both"));
            }
            for rule in &s.class_rule {
                if rule.prefix.is_some() == rule.glob.is_some() {
                    return Err(format!("{at}: each class_rule needs exactly one of `prefix` or `glob`"));
                }
                self.class_index(&rule.class).ok_or_else(|| format!("{at}: class_rule names class '{}' which is not in `classes`", rule.class))?;
            }
            if let Some(csv) = &s.class_csv {
                for class in csv.values.values() {
                    self.class_index(class).ok_or_else(|| format!("{at}: class_csv.values maps to '{class}' which is not in `classes`"))?;
                }
            }
            if let Some(p) = &s.patient {
                if p.regex.is_some() == p.csv.is_some() {
                    return Err(format!("{at}: `patient` needs exactly one of `regex` or `csv`"));
                }
                if let Some(re) = &p.regex {
                    regex::Regex::new(re).map_err(|e| format!("{at}: patient.regex: {e}"))?;
                }
            }
            for g in s.include.iter().chain(&s.exclude) {
                glob(g).map_err(|e| format!("{at}: glob '{g}': {e}"))?;
            }
            for rule in &s.class_rule {
                if let Some(g) = &rule.glob {
                    glob(g).map_err(|e| format!("{at}: class_rule glob '{g}': {e}"))?;
                }
            }
            for (field, path) in s.named_paths() {
                if let Some(why) = confine::leaves(path) {
                    return Err(format!(
                        "{at}: {field} '{path}' {why}; every path and pattern in a manifest is relative to --raw \
                         (or to the source's `dir`) and stays inside it: write it relative, without '..'"
                    ));
                }
            }
        }
        self.validate_expectations()
    }

    fn validate_expectations(&self) -> Result<(), String> {
        if self.expectations.is_empty() {
            return Ok(());
        }
        if self.schema < 2 {
            return Err(format!(
                "[[expect]] needs `schema = 2` but this manifest says `schema = {}`; change it to `schema = 2` (schema 1 has no expectations)",
                self.schema
            ));
        }
        let subdatasets: BTreeSet<&str> = self.sources.iter().map(|s| s.subdataset.as_str()).collect();
        let mut seen = BTreeSet::new();
        for (i, e) in self.expectations.iter().enumerate() {
            let at = format!("expect #{} ({}{})", i + 1, e.subdataset, e.class.as_deref().map(|c| format!(", class '{c}'")).unwrap_or_default());
            if !subdatasets.contains(e.subdataset.as_str()) {
                let known = subdatasets.iter().copied().collect::<Vec<_>>().join(", ");
                return Err(format!("{at}: no [[source]] has subdataset '{}' (they are: {known}); fix `subdataset` or add the source", e.subdataset));
            }
            if let Some(c) = &e.class {
                self.class_index(c).ok_or_else(|| format!("{at}: class '{c}' is not in `classes` ({}); fix `class` or declare it", self.classes.join(", ")))?;
            }
            if e.videos.is_none() && e.frames.is_none() {
                return Err(format!("{at}: give `videos`, `frames` or both"));
            }
            if !seen.insert((&e.subdataset, &e.class)) {
                return Err(format!("{at}: a second row for the same sub-dataset and class; merge the two rows into one"));
            }
        }
        Ok(())
    }

    pub fn class_index(&self, name: &str) -> Option<i32> {
        self.classes.iter().position(|c| c == name).map(|i| i as i32)
    }

    /// Lists the files of every source under `raw`, with classes and patient ids. Fails when a
    /// source matches no file at all.
    pub fn resolve(&self, raw: &Path, manifest_path: &Path) -> Result<Resolved, ManifestError> {
        let root = RawRoot::new(raw).map_err(|source| ManifestError::Raw { path: raw.to_path_buf(), source })?;
        let mut out = Resolved::default();
        let mut seen = BTreeSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            let dir = source.folder(raw);
            let prefix = source.prefix();
            let labels = Labeller::new(self, source, &dir, &root, manifest_path)?;
            let known_problems = out.problems.len();
            let mut files = match root.outside(&dir) {
                Some(target) => {
                    out.problems.push(Problem { path: dir.display().to_string(), reason: outside_reason(&target) });
                    Vec::new()
                }
                None => list_files(source, &dir, &root, &mut out.problems),
            };
            if files.is_empty() {
                return Err(ManifestError::NothingMatched {
                    manifest: manifest_path.to_path_buf(),
                    source_name: format!("source #{} ({})", i + 1, source.subdataset),
                    dir,
                    patterns: source.patterns(),
                    problems: first_problems(&out.problems[known_problems..]),
                });
            }
            files.sort();
            for (rel, missing) in files {
                let rel_path = format!("{prefix}{rel}");
                if !seen.insert(rel_path.clone()) {
                    continue;
                }
                let (class, class_note) = labels.class(&rel);
                let (patient, patient_note) = labels.patient(&rel);
                for note in [class_note, patient_note].into_iter().flatten() {
                    out.notes.push(Problem { path: rel_path.clone(), reason: note });
                }
                if missing {
                    out.problems.push(Problem { path: rel_path.clone(), reason: crate::error::SourceError::Missing.to_string() });
                }
                out.entries.push(Entry { subdataset: source.subdataset.clone(), path: dir.join(&rel), rel_path, class, patient, missing });
            }
        }
        Ok(out)
    }
}

/// The first problems met while listing a source, for the error that says it matched nothing.
fn first_problems(problems: &[Problem]) -> String {
    const SHOWN: usize = 3;
    let mut text: String = problems.iter().take(SHOWN).map(|p| format!("; {}: {}", p.path, p.reason)).collect();
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more such problems", problems.len() - SHOWN));
    }
    text
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

fn glob_set(patterns: &[String]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        // Validated in Manifest::validate.
        if let Ok(g) = glob(p) {
            b.add(g);
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

/// (path relative to the source folder, missing?) for every file the source names inside
/// `root`. Links leading outside it, and names that are not UTF-8, are reported and skipped.
fn list_files(source: &Source, dir: &Path, root: &RawRoot, problems: &mut Vec<Problem>) -> Vec<(String, bool)> {
    let include = glob_set(&source.include);
    let exclude = glob_set(&source.exclude);
    let wanted = |rel: &str| include.is_match(rel) && !exclude.is_match(rel);
    let mut files = Vec::new();
    if !source.include.is_empty() {
        let mut skipped = Vec::new();
        let walker = walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name().into_iter().filter_entry(|e| {
            let (admitted, problem) = admit(e, dir, root, wanted);
            skipped.extend(problem);
            admitted
        });
        for item in walker {
            match item {
                Ok(e) if e.file_type().is_file() => {
                    let Ok(rel) = e.path().strip_prefix(dir) else { continue };
                    let rel = rel_string(rel);
                    if wanted(&rel) {
                        files.push((rel, false));
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    let path = err.path().unwrap_or(dir).display().to_string();
                    let reason = if let Some(anc) = err.loop_ancestor() {
                        format!("symbolic link loop back to {}; remove or fix the link", anc.display())
                    } else if let Some(io) = err.io_error() {
                        format!("cannot read: {io}; fix its permissions or exclude it")
                    } else {
                        err.to_string()
                    };
                    problems.push(Problem { path, reason });
                }
            }
        }
        problems.append(&mut skipped);
    }
    for f in &source.files {
        let rel = f.trim_start_matches("./").to_string();
        if exclude.is_match(&rel) {
            continue;
        }
        // Only a path with nothing at it is missing. A dangling link or a link loop exists as a
        // link; opening it fails later and reports the exact reason (status `failed`).
        let path = dir.join(&rel);
        if let Some(target) = root.outside(&path) {
            problems.push(Problem { path: path.display().to_string(), reason: outside_reason(&target) });
            continue;
        }
        let exists = std::fs::symlink_metadata(&path).is_ok();
        files.push((rel, !exists));
    }
    files
}

/// Whether the walk may enter or take `e` (not a link leading outside `root`, a UTF-8 name),
/// and the problem to report when it may not and the entry matters: a folder may hold wanted
/// files, a file matters only if the patterns take it.
fn admit(e: &walkdir::DirEntry, dir: &Path, root: &RawRoot, wanted: impl Fn(&str) -> bool) -> (bool, Option<Problem>) {
    if e.depth() == 0 {
        return (true, None);
    }
    let relevant = || e.file_type().is_dir() || e.path().strip_prefix(dir).is_ok_and(|rel| wanted(&rel_string(rel)));
    let reason = if let Some(target) = e.path_is_symlink().then(|| root.outside(e.path())).flatten() {
        outside_reason(&target)
    } else if e.file_name().to_str().is_none() {
        "its name is not valid UTF-8 (shown escaped), so the store cannot record it; \
         rename it to a UTF-8 name (e.g. `convmv -f latin1 -t utf8`) or move it out of --raw"
            .to_string()
    } else {
        return (true, None);
    };
    (false, relevant().then(|| Problem { path: escaped(e.path()), reason }))
}

/// `/`-joined relative path; names that are not UTF-8 never get here (`list_files`), so lossy
/// only matters for matching them against the patterns.
pub(crate) fn rel_string(p: &Path) -> String {
    p.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn key_of(rel: &str, kind: KeyKind) -> String {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    match kind {
        KeyKind::Path => rel.to_string(),
        KeyKind::Name => name.to_string(),
        KeyKind::Stem => match name.rfind('.') {
            Some(i) if i > 0 => name[..i].to_string(),
            _ => name.to_string(),
        },
    }
}

/// A CSV column as key → set of distinct (trimmed) values.
struct CsvLookup {
    kind: KeyKind,
    values: BTreeMap<String, BTreeSet<String>>,
}

impl CsvLookup {
    fn load(spec: &CsvColumn, dir: &Path, root: &RawRoot, manifest: &Path) -> Result<CsvLookup, ManifestError> {
        let path = dir.join(&spec.file);
        let err = |message: String| ManifestError::Metadata { manifest: manifest.to_path_buf(), csv: path.clone(), message };
        // Checked before opening: messages below quote the CSV's header.
        if let Some(target) = root.outside(&path) {
            return Err(err(format!("it leads to {}, outside --raw, so it is not read", target.display())));
        }
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(&path).map_err(|e| err(e.to_string()))?;
        let headers: Vec<String> =
            reader.byte_headers().map_err(|e| err(e.to_string()))?.iter().map(|h| String::from_utf8_lossy(h).trim().to_string()).collect();
        let find =
            |name: &str| headers.iter().position(|h| h == name.trim()).ok_or_else(|| err(format!("no column '{name}' (columns: {})", headers.join(", "))));
        let (k, v) = (find(&spec.key_column)?, find(&spec.column)?);
        let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (line, rec) in reader.byte_records().enumerate() {
            let rec = rec.map_err(|e| err(format!("row {}: {e}", line + 2)))?;
            let key = rec.get(k).map(|b| String::from_utf8_lossy(b).trim().to_string()).unwrap_or_default();
            let value = rec.get(v).map(|b| String::from_utf8_lossy(b).trim().to_string()).unwrap_or_default();
            if !key.is_empty() {
                values.entry(key).or_default().insert(value);
            }
        }
        Ok(CsvLookup { kind: spec.key, values })
    }

    /// The single non-empty value for this file, or a note saying why there is none.
    fn get(&self, rel: &str, what: &str) -> Result<Option<String>, String> {
        let key = key_of(rel, self.kind);
        let Some(set) = self.values.get(&key) else {
            return Err(format!("no row with key '{key}' in the metadata CSV, so no {what}"));
        };
        let set: Vec<&String> = set.iter().filter(|v| !v.is_empty()).collect();
        match set.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => Err(format!("metadata rows for '{key}' disagree on the {what} ({many:?}), so none is used")),
        }
    }
}

enum ClassSource {
    None,
    Rules(Vec<(Option<String>, Option<GlobMatcher>, String)>),
    Csv(CsvLookup, BTreeMap<String, String>),
}

enum PatientSource {
    None,
    Regex(regex::Regex),
    Csv(CsvLookup),
}

struct Labeller<'a> {
    manifest: &'a Manifest,
    class: ClassSource,
    patient: PatientSource,
}

impl<'a> Labeller<'a> {
    fn new(manifest: &'a Manifest, source: &Source, dir: &Path, root: &RawRoot, manifest_path: &Path) -> Result<Self, ManifestError> {
        let class = if let Some(csv) = &source.class_csv {
            ClassSource::Csv(CsvLookup::load(csv, dir, root, manifest_path)?, csv.values.clone())
        } else if !source.class_rule.is_empty() {
            ClassSource::Rules(
                source
                    .class_rule
                    .iter()
                    .map(|r| {
                        let g = r.glob.as_deref().and_then(|g| glob(g).ok()).map(|g| g.compile_matcher());
                        (r.prefix.clone(), g, r.class.clone())
                    })
                    .collect(),
            )
        } else {
            ClassSource::None
        };
        let patient = match &source.patient {
            Some(PatientRule { regex: Some(re), .. }) => {
                // Validated in Manifest::validate.
                PatientSource::Regex(regex::Regex::new(re).map_err(|e| ManifestError::Invalid { path: manifest_path.to_path_buf(), message: e.to_string() })?)
            }
            Some(PatientRule { csv: Some(csv), .. }) => PatientSource::Csv(CsvLookup::load(csv, dir, root, manifest_path)?),
            _ => PatientSource::None,
        };
        Ok(Labeller { manifest, class, patient })
    }

    fn class(&self, rel: &str) -> (Option<(String, i32)>, Option<String>) {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let found = match &self.class {
            ClassSource::None => return (None, None),
            ClassSource::Rules(rules) => rules
                .iter()
                .find(|(prefix, g, _)| prefix.as_deref().is_some_and(|p| name.starts_with(p)) || g.as_ref().is_some_and(|g| g.is_match(rel)))
                .map(|(_, _, c)| c.clone())
                .ok_or_else(|| "no class_rule matches this file, so it has no class".to_string()),
            ClassSource::Csv(lookup, map) => match lookup.get(rel, "class") {
                Ok(Some(v)) if map.is_empty() => Ok(v),
                Ok(Some(v)) => map.get(&v).cloned().ok_or_else(|| format!("class value '{v}' is not in class_csv.values, so no class")),
                Ok(None) => Err("the metadata gives no class value".to_string()),
                Err(e) => Err(e),
            },
        };
        match found {
            Ok(c) => match self.manifest.class_index(&c) {
                Some(i) => (Some((c, i)), None),
                None => (None, Some(format!("class '{c}' is not in the manifest's `classes`, so no class"))),
            },
            Err(note) => (None, Some(note)),
        }
    }

    fn patient(&self, rel: &str) -> (Option<String>, Option<String>) {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        match &self.patient {
            PatientSource::None => (None, None),
            PatientSource::Regex(re) => match re.captures(name) {
                Some(c) => (c.get(1).or_else(|| c.get(0)).map(|m| m.as_str().to_string()), None),
                None => (None, Some("patient regex does not match the file name".into())),
            },
            // An unknown patient is normal in public corpora: no note.
            PatientSource::Csv(lookup) => (lookup.get(rel, "patient id").ok().flatten(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text.as_bytes(), Path::new("test.toml"))
    }

    const GOOD: &str = r#"
schema = 1
name = "demo"
classes = ["a", "b"]
[[source]]
subdataset = "s"
include = ["**/*.mp4"]
[[source.class_rule]]
prefix = "A"
class = "a"
[[source.class_rule]]
glob = "bee/**"
class = "b"
"#;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.name, "demo");
        assert_eq!(m.class_index("b"), Some(1));
        let err = parse(&GOOD.replace("subdataset", "subdatset")).unwrap_err().to_string();
        assert!(err.contains("subdatset") && err.contains("test.toml"), "{err}");
    }

    #[test]
    fn rejects_inconsistent_manifests() {
        for (bad, needle) in [
            (GOOD.replace("schema = 1", "schema = 9"), "schema"),
            (GOOD.replace("name = \"demo\"", "name = \"../x\""), "name"),
            (GOOD.replace("class = \"b\"", "class = \"c\""), "not in `classes`"),
            (GOOD.replace("include = [\"**/*.mp4\"]", ""), "include"),
            (GOOD.replace("prefix = \"A\"", "prefix = \"A\"\nglob = \"*\""), "exactly one"),
            (GOOD.replace("include = [\"**/*.mp4\"]", "files = [\"../x.mp4\"]"), "relative"),
            (GOOD.replace("classes = [\"a\", \"b\"]", "classes = [\"a\", \"b\", \"a\"]"), "twice"),
            (GOOD.replace("include = [", "dir = \"/usr/share\"\ninclude = ["), "source #1 (s): `dir` '/usr/share' is absolute"),
            (GOOD.replace("include = [", "dir = \"a/../..\"\ninclude = ["), "`dir` 'a/../..' has a '..' component"),
            (GOOD.replace("**/*.mp4", "../*.mp4"), "`include` '../*.mp4'"),
            (GOOD.replace("**/*.mp4", "/etc/*"), "`include` '/etc/*' is absolute"),
            (GOOD.replace("include = [", "exclude = [\"x/../../y\"]\ninclude = ["), "`exclude`"),
            (format!("{GOOD}[source.patient.csv]\nfile = \"/etc/passwd\"\nkey_column = \"k\"\ncolumn = \"c\"\n"), "patient.csv `file` '/etc/passwd'"),
        ] {
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn expectations_need_schema_2_and_name_what_exists() {
        let v2 = GOOD.replace("schema = 1", "schema = 2");
        assert_eq!(parse(&v2).unwrap().expectations, vec![]);
        let with = |rows: &str| format!("{v2}{rows}");
        let m = parse(&with("[[expect]]\nsubdataset = \"s\"\nvideos = 3\n[[expect]]\nsubdataset = \"s\"\nclass = \"b\"\nframes = 40\n")).unwrap();
        assert_eq!(
            m.expectations,
            vec![
                Expect { subdataset: "s".into(), class: None, videos: Some(3), frames: None },
                Expect { subdataset: "s".into(), class: Some("b".into()), videos: None, frames: Some(40) },
            ]
        );
        for (bad, needle) in [
            (format!("{GOOD}[[expect]]\nsubdataset = \"s\"\nvideos = 1\n"), "[[expect]] needs `schema = 2` but this manifest says `schema = 1`"),
            (with("[[expect]]\nsubdataset = \"t\"\nvideos = 1\n"), "expect #1 (t): no [[source]] has subdataset 't' (they are: s)"),
            (with("[[expect]]\nsubdataset = \"s\"\nclass = \"c\"\nvideos = 1\n"), "expect #1 (s, class 'c'): class 'c' is not in `classes` (a, b)"),
            (with("[[expect]]\nsubdataset = \"s\"\n"), "give `videos`, `frames` or both"),
            (with("[[expect]]\nsubdataset = \"s\"\nvideos = 1\n[[expect]]\nsubdataset = \"s\"\nframes = 2\n"), "expect #2 (s): a second row"),
            (with("[[expect]]\nsubdataset = \"s\"\nimages = 1\n"), "images"),
            (with("[[expect]]\nsubdataset = \"s\"\nvideos = -1\n"), "videos"),
            (GOOD.replace("schema = 1", "schema = 3"), "schema = 3 but this usctl reads schemas 1 to 2"),
            (GOOD.replace("schema = 1", "schema = 0"), "schema = 0"),
        ] {
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("test.toml"), "{needle}: {err}");
        }
    }

    #[test]
    fn keys() {
        assert_eq!(key_of("x/y/Cov-a.b.mp4", KeyKind::Stem), "Cov-a.b");
        assert_eq!(key_of("x/y/Cov-a.b.mp4", KeyKind::Name), "Cov-a.b.mp4");
        assert_eq!(key_of("x/y/Cov-a.b.mp4", KeyKind::Path), "x/y/Cov-a.b.mp4");
        assert_eq!(key_of(".hidden", KeyKind::Stem), ".hidden");
    }

    #[test]
    fn resolves_files_classes_and_patients() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path();
        std::fs::create_dir_all(raw.join("v/bee")).unwrap();
        for f in ["v/A_1.mp4", "v/bee/B_7.mp4", "v/Z_3.mp4", "v/A_2.txt"] {
            std::fs::write(raw.join(f), b"x").unwrap();
        }
        std::fs::write(raw.join("v/meta.csv"), "file,label ,pid\nA_1, a ,p1\nZ_3,b,\nZ_3,b,\n").unwrap();
        let text = r#"
schema = 1
name = "t"
classes = ["a", "b"]
[[source]]
subdataset = "s"
dir = "v"
include = ["**/*.mp4"]
files = ["gone.mp4"]
[source.class_csv]
file = "meta.csv"
key_column = "file"
column = "label"
[source.patient]
regex = "_(\\d+)\\."
"#;
        let m = parse(text).unwrap();
        let r = m.resolve(raw, Path::new("t.toml")).unwrap();
        let got: Vec<_> = r.entries.iter().map(|e| (e.rel_path.as_str(), e.class.clone(), e.patient.as_deref(), e.missing)).collect();
        assert_eq!(
            got,
            vec![
                ("v/A_1.mp4", Some(("a".to_string(), 0)), Some("1"), false),
                ("v/Z_3.mp4", Some(("b".to_string(), 1)), Some("3"), false),
                ("v/bee/B_7.mp4", None, Some("7"), false),
                ("v/gone.mp4", None, None, true),
            ]
        );
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].path.ends_with("gone.mp4"));
        assert!(r.notes.iter().any(|n| n.path == "v/bee/B_7.mp4" && n.reason.contains("B_7")));
    }

    #[test]
    fn a_source_matching_nothing_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("A_1.mp4"), b"x").unwrap();
        let m = parse(&GOOD.replace("**/*.mp4", "**/*.MP4")).unwrap();
        let err = m.resolve(dir.path(), Path::new("t.toml")).unwrap_err().to_string();
        assert!(err.contains("t.toml") && err.contains("source #1 (s) matches no file") && err.contains("**/*.MP4"), "{err}");
        // A missing `dir` says so.
        let m = parse(&GOOD.replace("include = [", "dir = \"nope\"\ninclude = [")).unwrap();
        let err = m.resolve(dir.path(), Path::new("t.toml")).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("No such file"), "{err}");
    }

    #[test]
    fn a_source_folder_linked_outside_raw_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::create_dir_all(&raw).unwrap();
        std::fs::write(dir.path().join("out/A_1.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("out"), raw.join("v")).unwrap();
        let m = parse(&GOOD.replace("include = [", "dir = \"v\"\ninclude = [")).unwrap();
        let err = m.resolve(&raw, Path::new("t.toml")).unwrap_err().to_string();
        assert!(err.contains("matches no file") && err.contains("outside --raw") && err.contains("out"), "{err}");
    }

    #[test]
    fn a_source_matching_nothing_shows_its_first_problems() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        for i in 0..5 {
            std::os::unix::fs::symlink(dir.path(), raw.join(format!("link{i}"))).unwrap();
        }
        let err = parse(GOOD).unwrap().resolve(&raw, Path::new("t.toml")).unwrap_err().to_string();
        assert_eq!(err.matches("outside --raw").count(), 3, "{err}");
        assert!(err.contains("link2") && !err.contains("link3") && err.contains("and 2 more"), "{err}");
    }
}
