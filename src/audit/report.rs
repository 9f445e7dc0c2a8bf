//! The audit's output folder (docs/AUDIT.md, "Output"): report.json (format `usctl-audit`,
//! version 1), report.md, clusters.csv (the cluster of every stored video, for later commands and
//! for polars) and one contact sheet per duplicate cluster under sheets/.

use super::corpus::Corpus;
use super::findings::{Cluster, Findings, Member};
use super::inventory::Inventory;
use super::matching::Rule;
use super::sheet::{self, Row};
use super::AuditError;
use crate::files::write_atomic;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "usctl-audit";
pub const FORMAT_VERSION: u32 = 1;
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";
pub const CLUSTERS_CSV: &str = "clusters.csv";
pub const SHEETS_DIR: &str = "sheets";
pub const PLOTS_DIR: &str = "plots";

/// One audited store version.
#[derive(Debug, Clone, Serialize)]
pub struct StoreEntry {
    pub dir: String,
    pub dataset: String,
    pub version_id: String,
    pub format_version: u32,
    pub size: u32,
    pub videos: usize,
    pub frames: usize,
    /// `index` (format 3) or `computed` (older versions: hashed from the payload by this audit).
    pub frame_hashes: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub exact_pairs: usize,
    pub near_pairs: usize,
    pub clusters: usize,
    pub videos_in_clusters: usize,
    pub label_conflicts: usize,
    pub clusters_across_stores: usize,
    pub fold_leaks: usize,
    pub inventory: usize,
    /// Everything a curator must look at; the exit code is 1 when it is not 0.
    pub findings: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub format_version: u32,
    pub stores: Vec<StoreEntry>,
    pub rule: Rule,
    pub folds_file: Option<String>,
    pub counts: Counts,
    pub findings: Findings,
    /// Contact sheet of each cluster, relative to the output folder, in cluster order.
    pub sheets: Vec<String>,
    pub inventory: Vec<Inventory>,
    /// One per store (`distributions.rs`), and their PNGs relative to the output folder.
    pub distributions: Vec<serde_json::Value>,
    pub plots: Vec<String>,
    pub seconds: f64,
}

impl Report {
    pub fn new(corpus: &Corpus, rule: Rule, folds_file: Option<&Path>, findings: Findings, inventory: Vec<Inventory>) -> Report {
        let stores = corpus
            .stores
            .iter()
            .zip(&corpus.computed)
            .map(|(s, &computed)| StoreEntry {
                dir: s.dir.display().to_string(),
                dataset: s.meta.dataset.clone(),
                version_id: s.meta.version_id.clone(),
                format_version: s.meta.format_version,
                size: s.meta.params.size,
                videos: s.videos.iter().filter(|v| v.frames_kept > 0).count(),
                frames: s.frames.len(),
                frame_hashes: if computed { "computed" } else { "index" },
            })
            .collect();
        let inventory_findings: usize = inventory.iter().map(Inventory::findings).sum();
        let counts = Counts {
            exact_pairs: findings.exact.len(),
            near_pairs: findings.near.len(),
            clusters: findings.clusters.len(),
            videos_in_clusters: findings.clusters.iter().map(|c| c.members.len()).sum(),
            label_conflicts: findings.conflicts().count(),
            clusters_across_stores: findings.across_stores().count(),
            fold_leaks: findings.fold_leaks.len(),
            inventory: inventory_findings,
            findings: findings.count() + inventory_findings,
        };
        Report {
            format: FORMAT,
            format_version: FORMAT_VERSION,
            stores,
            rule,
            folds_file: folds_file.map(|p| p.display().to_string()),
            counts,
            findings,
            sheets: Vec::new(),
            inventory,
            distributions: Vec::new(),
            plots: Vec::new(),
            seconds: 0.0,
        }
    }
}

fn who(m: &Member) -> String {
    format!(
        "{}:{} ({}{})",
        m.dataset,
        m.source_path,
        m.class.as_deref().unwrap_or("no class"),
        m.patient.as_ref().map_or(String::new(), |p| format!(", patient {p}"))
    )
}

fn cluster_title(c: &Cluster) -> String {
    let mut t = format!("{}: {} videos", c.id, c.members.len());
    for (dataset, classes) in &c.conflicting_classes {
        let _ = write!(t, " · LABEL CONFLICT in {dataset}: {}", classes.join(" vs "));
    }
    if c.datasets.len() > 1 {
        let _ = write!(t, " · across {}", c.datasets.join(" + "));
    }
    t
}

/// One contact sheet per cluster: each member's frames with its file, class and patient.
pub fn write_sheets(out: &Path, corpus: &Corpus, report: &mut Report) -> Result<(), AuditError> {
    let dir = out.join(SHEETS_DIR);
    std::fs::create_dir_all(&dir).map_err(AuditError::io(&dir))?;
    for c in &report.findings.clusters {
        let rows: Vec<Row> = c
            .members
            .iter()
            .map(|m| {
                let store = corpus.stores[m.store];
                let row = store.videos.iter().find(|v| v.source_path == m.source_path).expect("a member is a stored video");
                let n = store.frame_bytes();
                Row {
                    frames: store.video_pixels(row).chunks_exact(n.max(1)).collect(),
                    size: store.meta.params.size,
                    caption: vec![
                        format!("{}: {}", m.dataset, m.source_path),
                        format!("class {} · patient {}", m.class.as_deref().unwrap_or("-"), m.patient.as_deref().unwrap_or("-")),
                    ],
                }
            })
            .collect();
        let name = format!("{SHEETS_DIR}/{}.png", c.id);
        sheet::contact_sheet(&out.join(&name), &cluster_title(c), &rows)?;
        report.sheets.push(name);
    }
    Ok(())
}

/// clusters.csv: `dataset,version_id,source_path,cluster,cluster_size` for every stored video;
/// `cluster` is empty for a video in no cluster.
pub fn clusters_csv(corpus: &Corpus, findings: &Findings) -> String {
    let mut of: std::collections::HashMap<(usize, &str), (&str, usize)> = Default::default();
    for c in &findings.clusters {
        for m in &c.members {
            of.insert((m.store, m.source_path.as_str()), (c.id.as_str(), c.members.len()));
        }
    }
    let quote = |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() };
    let mut out = String::from("dataset,version_id,source_path,cluster,cluster_size\n");
    for v in &corpus.videos {
        let store = corpus.stores[v.store];
        let path = corpus.row(*v).source_path.as_str();
        let (id, size) = of.get(&(v.store, path)).copied().unwrap_or(("", 1));
        let _ = writeln!(out, "{},{},{},{id},{size}", quote(&store.meta.dataset), store.meta.version_id, quote(path));
    }
    out
}

pub fn markdown(r: &Report, distributions_md: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Audit of {}\n", r.stores.iter().map(|x| format!("{} {}", x.dataset, x.version_id)).collect::<Vec<_>>().join(" + "));
    let c = &r.counts;
    let _ = writeln!(
        s,
        "**{} finding(s)**: {} duplicate cluster(s) joining {} videos ({} exact pair(s), {} near pair(s)), {} label conflict(s), {} cluster(s) across stores, {} fold leak(s), {} inventory finding(s).\n",
        c.findings, c.clusters, c.videos_in_clusters, c.exact_pairs, c.near_pairs, c.label_conflicts, c.clusters_across_stores, c.fold_leaks, c.inventory
    );
    let _ = writeln!(s, "| Store | Version | Format | Size | Videos | Frames | Frame hashes |\n|---|---|---|---|---|---|---|");
    for x in &r.stores {
        let _ = writeln!(s, "| {} | {} | {} | {} | {} | {} | {} |", x.dataset, x.version_id, x.format_version, x.size, x.videos, x.frames, x.frame_hashes);
    }
    let _ = writeln!(
        s,
        "\nNear-duplicate rule: frames match within {} of 63 pHash bits ({} when the shorter video has fewer than 3 frames); videos match when at least {:.0} % of the shorter one's frames (and at least min(3, its frames)) match in time order (docs/AUDIT.md).\n",
        r.rule.radius,
        r.rule.still_radius,
        r.rule.share * 100.0
    );
    let _ = writeln!(s, "## Duplicate clusters\n");
    if r.findings.clusters.is_empty() {
        let _ = writeln!(s, "None.\n");
    }
    for (c, sheet) in r.findings.clusters.iter().zip(r.sheets.iter().map(Some).chain(std::iter::repeat(None))) {
        let _ = writeln!(s, "### {}\n", cluster_title(c));
        let links: Vec<String> = c.links.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(s, "Links: {}.{}\n", links.join(", "), sheet.map_or(String::new(), |p| format!(" Contact sheet: [{p}]({p})")));
        for m in &c.members {
            let _ = writeln!(s, "- {} — {} frames", who(m), m.frames);
        }
        let action = match (c.is_conflict(), c.datasets.len() > 1) {
            (true, _) => "Decide the one true class, fix the manifest (or drop the copy with `exclude`), re-ingest.",
            (false, true) => "Keep these out of the evaluation set (`usctl eval --exclude-overlap-with`) or out of the pretraining corpus.",
            (false, false) => "Keep one copy (manifest `exclude`) or rely on `usctl eval` grouping folds by cluster.",
        };
        let _ = writeln!(s, "\n{action}\n");
    }
    if !r.findings.near.is_empty() || !r.findings.exact.is_empty() {
        let _ = writeln!(s, "## Linked pairs\n\n| A | B | Why | Frames matched |\n|---|---|---|---|");
        for p in r.findings.exact.iter().chain(&r.findings.near) {
            let why = serde_json::to_value(p.why).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            let _ = writeln!(s, "| {} | {} | {why} | {} of {} |", who(&p.a), who(&p.b), p.matched, p.of);
        }
        s.push('\n');
    }
    if let Some(f) = &r.folds_file {
        let _ = writeln!(s, "## Leakage across the folds of {f}\n");
        if r.findings.fold_leaks.is_empty() {
            let _ = writeln!(s, "No cluster or patient is in more than one fold.\n");
        }
        for l in &r.findings.fold_leaks {
            let folds: Vec<String> = l.folds.iter().map(|(p, f)| format!("{p} (fold {f})")).collect();
            let _ = writeln!(s, "- {} is in several folds: {}", l.unit, folds.join(", "));
        }
        if !r.findings.fold_leaks.is_empty() {
            let _ = writeln!(s, "\nRe-run `usctl eval` without `--folds-file`: it groups folds by duplicate cluster.\n");
        }
    }
    for inv in &r.inventory {
        s.push_str(&inv.markdown());
        s.push('\n');
    }
    for d in distributions_md {
        s.push_str(d);
        s.push('\n');
    }
    s
}

/// Writes report.json, report.md and clusters.csv into `out` (sheets are written before).
pub fn write(out: &Path, corpus: &Corpus, report: &Report, distributions_md: &[String]) -> Result<Vec<PathBuf>, AuditError> {
    let mut json = serde_json::to_vec_pretty(report).map_err(|e| AuditError::Io { path: out.join(REPORT_JSON), source: e.into() })?;
    json.push(b'\n');
    let files = [
        (REPORT_JSON, json),
        (REPORT_MD, markdown(report, distributions_md).into_bytes()),
        (CLUSTERS_CSV, clusters_csv(corpus, &report.findings).into_bytes()),
    ];
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = out.join(name);
        write_atomic(&path, &bytes).map_err(AuditError::io(&path))?;
        written.push(path);
    }
    Ok(written)
}
