//! `usctl audit` (docs/AUDIT.md): what is wrong with a corpus, each finding naming its files.
//! Reads stores through `store/`, writes only its own output folder, never edits a version.
//! No libtorch.

// One line per part; each part is its own file.
pub mod corpus;
pub mod distributions;
pub mod findings;
pub mod inventory;
pub mod matching;
pub mod report;
pub mod sheet;

pub use crate::error::AuditError;

use crate::eval::folds::Folds;
use crate::store::reader::Store;
use matching::Rule;
use std::path::{Path, PathBuf};

/// What `usctl audit` was asked to do besides which stores (the first store is the one `disk`
/// and `folds` describe).
#[derive(Debug, Clone)]
pub struct Options {
    /// `--manifest` and `--raw`: compare the first store with the corpus on disk.
    pub disk: Option<(PathBuf, PathBuf)>,
    /// A folds.json of `usctl eval` made on the first store.
    pub folds: Option<PathBuf>,
    pub out: PathBuf,
    pub rule: Rule,
}

/// The default output folder: `<dataset folder of the first store>/audits/<its version folder>`,
/// plus `+<dataset>-<version id>` for each further store.
pub fn default_out(stores: &[Store]) -> PathBuf {
    let first = &stores[0];
    let version = first.dir.file_name().map_or_else(|| first.meta.version_id.clone(), |n| n.to_string_lossy().to_string());
    let name = std::iter::once(version).chain(stores[1..].iter().map(|s| format!("{}-{}", s.meta.dataset, s.meta.version_id))).collect::<Vec<_>>().join("+");
    first.dir.parent().unwrap_or(Path::new(".")).join("audits").join(name)
}

/// Runs the whole audit and writes its folder; the report says what was found.
pub fn audit(stores: &[Store], opts: &Options) -> Result<report::Report, AuditError> {
    let started = std::time::Instant::now();
    let folds = match &opts.folds {
        Some(path) => {
            let fail = |message: String| AuditError::Folds { path: path.clone(), message };
            let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            let f: Folds = serde_json::from_slice(&text).map_err(|e| fail(format!("not a folds file ({e}); give the folds.json that `usctl eval` wrote")))?;
            Some(f)
        }
        None => None,
    };
    let corpus = corpus::Corpus::new(stores.iter().collect());
    let links = corpus.links(opts.rule);
    let found =
        findings::find(&corpus, &links, folds.as_ref()).map_err(|message| AuditError::Folds { path: opts.folds.clone().unwrap_or_default(), message })?;
    let mut inventory = Vec::new();
    let mut tables = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let disk = opts.disk.as_ref().filter(|_| i == 0).map(|(m, r)| (m.as_path(), r.as_path()));
        inventory.push(inventory::inventory(s, disk)?);
        tables.push(distributions::distributions(&s.dir)?);
    }
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| AuditError::Usage { message: format!("cannot create the output folder {}: {e}; give a writable --out", opts.out.display()) })?;
    let mut rep = report::Report::new(&corpus, opts.rule, opts.folds.as_deref(), found, inventory);
    report::write_sheets(&opts.out, &corpus, &mut rep)?;
    let mut markdown = Vec::new();
    for (s, d) in stores.iter().zip(&tables) {
        let dir = opts.out.join(report::PLOTS_DIR).join(format!("{}-{}", s.meta.dataset, s.meta.version_id));
        std::fs::create_dir_all(&dir).map_err(AuditError::io(&dir))?;
        let plots = d.write_plots(&dir)?;
        rep.plots.extend(plots.iter().filter_map(|p| p.strip_prefix(&opts.out).ok()).map(|p| p.display().to_string()));
        rep.distributions.push(serde_json::to_value(d).unwrap_or_default());
        markdown.push(format!("## Distributions of {} {}\n\n{}", s.meta.dataset, s.meta.version_id, d.markdown()));
    }
    rep.seconds = started.elapsed().as_secs_f64();
    report::write(&opts.out, &corpus, &rep, &markdown)?;
    Ok(rep)
}
