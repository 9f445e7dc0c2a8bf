//! `usctl diff A B`: what changed between two store versions (docs/store-format.md, "usctl diff"):
//! ingest parameters and decoder, classes, and per source path the videos added, removed,
//! re-labelled, re-assigned to another patient, with other source bytes, another frame count,
//! other stored frames, or another status. Pure over two opened versions.

use super::index::VideoRow;
use super::reader::Store;
use serde::Serialize;
use std::collections::BTreeMap;

/// One field that differs: its name and both values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub a: String,
    pub b: String,
}

/// A video present in both versions whose row differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changed {
    pub source_path: String,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diff {
    pub a: String,
    pub b: String,
    /// Version-level differences: format, dataset, params (fps, size, pixel format, fit,
    /// decoder), classes.
    pub version: Vec<Change>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<Changed>,
}

impl Diff {
    pub fn is_identical(&self) -> bool {
        self.version.is_empty() && self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Videos whose class changed.
    pub fn relabelled(&self) -> usize {
        self.changed.iter().filter(|c| c.changes.iter().any(|x| x.field == "class")).count()
    }
}

fn show<T: std::fmt::Debug>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "none".to_string(), |x| format!("{x:?}").trim_matches('"').to_string())
}

/// The fields of a video row that a curator cares about, by name; `video_id`, `first_frame_row`
/// and `message` follow from the others and are left out.
fn fields(v: &VideoRow) -> Vec<(&'static str, String)> {
    vec![
        ("subdataset", v.subdataset.clone()),
        ("kind", v.kind.clone()),
        ("class", show(&v.class_name)),
        ("patient", show(&v.patient_id)),
        ("source_sha256", show(&v.source_sha256)),
        ("source_bytes", show(&v.source_bytes)),
        ("frames_kept", v.frames_kept.to_string()),
        ("payload_sha256", show(&v.payload_sha256)),
        ("status", v.status.clone()),
    ]
}

pub fn diff(a: &Store, b: &Store) -> Diff {
    let mut version = Vec::new();
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            version.push(Change { field: name.to_string(), a: x, b: y });
        }
    };
    let (pa, pb) = (&a.meta.params, &b.meta.params);
    field("format_version", a.meta.format_version.to_string(), b.meta.format_version.to_string());
    field("dataset", a.meta.dataset.clone(), b.meta.dataset.clone());
    field("fps", pa.fps.clone(), pb.fps.clone());
    field("size", pa.size.to_string(), pb.size.to_string());
    field("pixel_format", pa.pixel_format.clone(), pb.pixel_format.clone());
    field("fit", pa.fit.clone(), pb.fit.clone());
    field("decoder", pa.decoder.clone(), pb.decoder.clone());
    field("classes", a.meta.classes.join(", "), b.meta.classes.join(", "));
    let by_path = |s: &Store| s.videos.iter().map(|v| (v.source_path.clone(), fields(v))).collect::<BTreeMap<_, _>>();
    let (va, vb) = (by_path(a), by_path(b));
    let added = vb.keys().filter(|p| !va.contains_key(*p)).cloned().collect();
    let removed = va.keys().filter(|p| !vb.contains_key(*p)).cloned().collect();
    let mut changed = Vec::new();
    for (path, fa) in &va {
        let Some(fb) = vb.get(path) else { continue };
        let changes: Vec<Change> = fa
            .iter()
            .zip(fb)
            .filter(|((_, x), (_, y))| x != y)
            .map(|((name, x), (_, y))| Change { field: name.to_string(), a: x.clone(), b: y.clone() })
            .collect();
        if !changes.is_empty() {
            changed.push(Changed { source_path: path.clone(), changes });
        }
    }
    Diff { a: a.dir.display().to_string(), b: b.dir.display().to_string(), version, added, removed, changed }
}

impl Diff {
    /// The report for a person: counts first, then each difference.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!("A {}\nB {}\n", self.a, self.b);
        for c in &self.version {
            let _ = writeln!(s, "version  {}: {} → {}", c.field, c.a, c.b);
        }
        let _ = writeln!(
            s,
            "videos   {} added, {} removed, {} changed ({} re-labelled)",
            self.added.len(),
            self.removed.len(),
            self.changed.len(),
            self.relabelled()
        );
        for p in &self.added {
            let _ = writeln!(s, "added    {p}");
        }
        for p in &self.removed {
            let _ = writeln!(s, "removed  {p}");
        }
        for c in &self.changed {
            let what: Vec<String> = c.changes.iter().map(|x| format!("{} {} → {}", x.field, x.a, x.b)).collect();
            let _ = writeln!(s, "changed  {}: {}", c.source_path, what.join("; "));
        }
        s.push_str(if self.is_identical() { "identical\n" } else { "different\n" });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, class: &str, sha: &str, kept: i64) -> VideoRow {
        VideoRow {
            source_path: path.into(),
            subdataset: "s".into(),
            kind: "video".into(),
            class_name: Some(class.into()),
            source_sha256: Some(sha.into()),
            frames_kept: kept,
            status: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn rows_compare_field_by_field() {
        let a = [row("x", "a", "1", 3), row("y", "a", "2", 3), row("gone", "a", "3", 1)];
        let b = [row("x", "b", "1", 3), row("y", "a", "9", 4), row("new", "b", "4", 2)];
        let fa: Vec<_> = a.iter().map(fields).collect();
        let fb: Vec<_> = b.iter().map(fields).collect();
        let diff_of = |i: usize| fa[i].iter().zip(&fb[i]).filter(|(x, y)| x != y).map(|(x, _)| x.0).collect::<Vec<_>>();
        assert_eq!(diff_of(0), vec!["class"]);
        assert_eq!(diff_of(1), vec!["source_sha256", "frames_kept"]);
        assert_eq!(show(&Some("a".to_string())), "a");
        assert_eq!(show::<i64>(&None), "none");
    }
}
