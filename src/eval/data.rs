//! Which stored videos an evaluation uses and under which class: the labelled videos of the kept
//! classes, each with its patient when the manifest gave one and its duplicate cluster (what folds
//! keep together), minus those with a near-duplicate in another store when asked. A still image is
//! a one-frame video.

use super::config::EvalConfig;
use super::folds::Item;
use crate::audit::corpus::Overlap;
use crate::error::EvalError;
use crate::store::index::VideoRow;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    /// Row in the store's videos.parquet.
    pub row: usize,
    pub path: String,
    pub patient: Option<String>,
    /// Duplicate cluster among the evaluated videos, when folds keep clusters together.
    pub cluster: Option<usize>,
    /// Index into `Dataset::classes`.
    pub class: usize,
    pub first_row: usize,
    pub frames: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub videos: Vec<Video>,
    /// Stored videos left out: no frames, no label, or a class not evaluated.
    pub skipped: usize,
}

impl Dataset {
    pub fn items(&self) -> Vec<Item> {
        self.videos.iter().map(|v| Item { video: v.path.clone(), patient: v.patient.clone(), class: v.class, cluster: v.cluster }).collect()
    }

    /// The duplicate cluster of each evaluated video, from `groups` (one per row of videos.parquet,
    /// as `audit::corpus::duplicate_groups` gives them): clusters of the whole store restricted to
    /// the evaluated videos, renumbered 0, 1, … in order of their first video; a cluster left with
    /// one evaluated video is none.
    pub fn clusters_of(&self, groups: &[Option<usize>]) -> Vec<Option<usize>> {
        let of = |v: &Video| groups.get(v.row).copied().flatten();
        let mut size: BTreeMap<usize, usize> = BTreeMap::new();
        for g in self.videos.iter().filter_map(of) {
            *size.entry(g).or_default() += 1;
        }
        let mut number: BTreeMap<usize, usize> = BTreeMap::new();
        self.videos
            .iter()
            .map(|v| {
                let g = of(v).filter(|g| size[g] > 1)?;
                let next = number.len();
                Some(*number.entry(g).or_insert(next))
            })
            .collect()
    }

    /// Sets each video's cluster (`clusters_of`, or all none to split by patient alone).
    pub fn set_clusters(&mut self, clusters: &[Option<usize>]) {
        for (v, c) in self.videos.iter_mut().zip(clusters) {
            v.cluster = *c;
        }
    }

    /// Removes the evaluated videos that `overlap` lists (found in `other`), returning them with
    /// what they matched, in dataset order; overlapping videos that are not evaluated anyway are
    /// not listed. Fails when fewer than two classes are left.
    pub fn drop_overlap(&mut self, store_dir: &Path, other: &Path, overlap: &[Overlap]) -> Result<Vec<Dropped>, EvalError> {
        let by_row: BTreeMap<usize, &Overlap> = overlap.iter().map(|o| (o.video, o)).collect();
        let mut dropped = Vec::new();
        self.videos.retain(|v| match by_row.get(&v.row) {
            Some(o) => {
                dropped.push(Dropped { path: v.path.clone(), matches: o.matches.clone() });
                false
            }
            None => true,
        });
        check_classes(
            store_dir,
            &self.classes,
            &self.videos,
            &format!(" once the {} videos with a near-duplicate in {} are dropped", dropped.len(), other.display()),
        )?;
        Ok(dropped)
    }

    /// Keeps the videos whose every frame is annotated (`annotated(frame row)`; for segmentation:
    /// the store has its masks), returning how many were dropped. Fails when none is left.
    pub fn keep_annotated(&mut self, store_dir: &Path, annotated: impl Fn(usize) -> bool) -> Result<usize, EvalError> {
        let before = self.videos.len();
        self.videos.retain(|v| (v.first_row..v.first_row + v.frames).all(&annotated));
        if self.videos.is_empty() {
            return Err(EvalError::Data {
                path: store_dir.to_path_buf(),
                message: format!(
                    "has no evaluated image with lesion masks (of {before}); segment and detect need a store of format 4 ingested from a manifest with [source.masks] (docs/manifest-format.md)"
                ),
            });
        }
        Ok(before - self.videos.len())
    }

    /// (video, frame row) of every stored frame of the given videos, in order.
    pub fn frames_of(&self, videos: &[usize]) -> Vec<(usize, usize)> {
        videos.iter().flat_map(|&v| (0..self.videos[v].frames).map(move |k| (v, self.videos[v].first_row + k))).collect()
    }
}

/// A video left out of an evaluation because a near-duplicate of it is in another store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropped {
    pub path: String,
    /// The videos of the other store it matches, by source path.
    pub matches: Vec<String>,
}

/// (clusters, videos in them) of per-video clusters as `clusters_of` gives them.
pub fn cluster_count(clusters: &[Option<usize>]) -> (usize, usize) {
    let joined: Vec<usize> = clusters.iter().flatten().copied().collect();
    (joined.iter().collect::<BTreeSet<_>>().len(), joined.len())
}

fn check_classes(store_dir: &Path, classes: &[String], videos: &[Video], when: &str) -> Result<(), EvalError> {
    let present = (0..classes.len()).filter(|&k| videos.iter().any(|v| v.class == k)).count();
    if present < 2 {
        return Err(EvalError::Data {
            path: store_dir.to_path_buf(),
            message: format!(
                "has labelled frames in {present} of the classes {classes:?}{when}; classification needs at least two (is it a labelled store? check `classes` and `exclude_classes`)"
            ),
        });
    }
    Ok(())
}

/// The evaluation's classes (config order, or the store's minus the excluded) and its videos.
pub fn select(store_dir: &Path, store_classes: &[String], rows: &[VideoRow], c: &EvalConfig) -> Result<Dataset, EvalError> {
    let data_err = |message: String| EvalError::Data { path: store_dir.to_path_buf(), message };
    let classes: Vec<String> = if c.classes.is_empty() {
        store_classes.iter().filter(|k| !c.exclude_classes.contains(k)).cloned().collect()
    } else {
        if let Some(unknown) = c.classes.iter().find(|k| !store_classes.contains(k)) {
            return Err(data_err(format!("has no class {unknown:?} (it has {}); fix `classes` in the eval config", store_classes.join(", "))));
        }
        c.classes.clone()
    };
    let mut videos = Vec::new();
    let mut skipped = 0;
    for (row, r) in rows.iter().enumerate() {
        let class = r.class_name.as_ref().and_then(|name| classes.iter().position(|k| k == name));
        match class {
            Some(class) if r.frames_kept > 0 => videos.push(Video {
                row,
                path: r.source_path.clone(),
                patient: r.patient_id.clone(),
                cluster: None,
                class,
                first_row: r.first_frame_row as usize,
                frames: r.frames_kept as usize,
            }),
            _ => skipped += 1,
        }
    }
    if !c.task.is_dense() {
        check_classes(store_dir, &classes, &videos, "")?;
    }
    Ok(Dataset { classes, videos, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, class: Option<&str>, patient: Option<&str>, first: i64, kept: i64) -> VideoRow {
        VideoRow {
            video_id: 0,
            subdataset: "s".into(),
            source_path: path.into(),
            kind: "video".into(),
            class_name: class.map(String::from),
            class_index: None,
            patient_id: patient.map(String::from),
            source_bytes: None,
            source_sha256: None,
            width: None,
            height: None,
            duration_s: None,
            native_fps: None,
            frames_decoded: kept,
            frames_kept: kept,
            first_frame_row: first,
            payload_sha256: None,
            status: "ok".into(),
            message: None,
        }
    }

    #[test]
    fn keeps_labelled_videos_of_the_evaluated_classes() {
        let store = ["covid-19", "bacterial-pneumonia", "healthy", "viral-pneumonia", "uncertain"].map(String::from);
        let rows = vec![
            row("a", Some("covid-19"), Some("p1"), 0, 3),
            row("b", Some("viral-pneumonia"), None, 3, 2),
            row("c", Some("healthy"), None, 5, 1),
            row("d", None, None, 6, 4),
            row("e", Some("healthy"), None, 10, 0),
        ];
        let d = select(Path::new("s"), &store, &rows, &EvalConfig::default()).unwrap();
        assert_eq!(d.classes, vec!["covid-19", "bacterial-pneumonia", "healthy"]);
        assert_eq!(d.videos.iter().map(|v| (v.path.as_str(), v.class)).collect::<Vec<_>>(), vec![("a", 0), ("c", 2)]);
        assert_eq!(d.skipped, 3);
        assert_eq!(d.frames_of(&[1, 0]), vec![(1, 5), (0, 0), (0, 1), (0, 2)]);
        assert_eq!(d.items()[0].keys(), vec!["video:a", "patient:p1"]);
        let c = EvalConfig { classes: vec!["healthy".into(), "viral-pneumonia".into()], ..Default::default() };
        let d = select(Path::new("s"), &store, &rows, &c).unwrap();
        assert_eq!(d.videos.iter().map(|v| (v.path.as_str(), v.class)).collect::<Vec<_>>(), vec![("b", 1), ("c", 0)]);
        let c = EvalConfig { classes: vec!["normal".into()], ..Default::default() };
        assert!(select(Path::new("s"), &store, &rows, &c).unwrap_err().to_string().contains("no class \"normal\""));
        let c = EvalConfig { classes: vec!["covid-19".into()], ..Default::default() };
        assert!(select(Path::new("s"), &store, &rows, &c).unwrap_err().to_string().contains("at least two"));
        // Segmentation needs masks, not two classes; only annotated videos stay.
        let c = EvalConfig { classes: vec!["covid-19".into(), "healthy".into()], task: crate::eval::config::Task::Segment, ..Default::default() };
        let mut d = select(Path::new("s"), &store, &rows, &EvalConfig { classes: vec!["covid-19".into()], ..c.clone() }).unwrap();
        assert_eq!(d.videos.len(), 1);
        let mut two = select(Path::new("s"), &store, &rows, &c).unwrap();
        assert_eq!(two.keep_annotated(Path::new("s"), |row| row != 1).unwrap(), 1, "a has frames 0–2, frame 1 is not annotated");
        assert_eq!(two.videos.iter().map(|v| v.path.as_str()).collect::<Vec<_>>(), vec!["c"]);
        let err = d.keep_annotated(Path::new("s"), |_| false).unwrap_err().to_string();
        assert!(err.contains("no evaluated image with lesion masks") && err.contains("[source.masks]"), "{err}");
    }

    #[test]
    fn clusters_are_restricted_to_evaluated_videos_and_overlap_is_dropped() {
        let store = ["a", "b"].map(String::from);
        let rows = vec![
            row("v0", Some("a"), None, 0, 2),
            row("v1", None, None, 2, 2), // unlabelled: not evaluated
            row("v2", Some("b"), None, 4, 2),
            row("v3", Some("a"), None, 6, 2),
            row("v4", Some("b"), None, 8, 2),
            row("v5", Some("b"), None, 10, 2),
        ];
        let mut d = select(Path::new("s"), &store, &rows, &EvalConfig { exclude_classes: vec![], ..Default::default() }).unwrap();
        // Store clusters: {v0, v1} (v1 not evaluated, so v0 is alone), {v2, v4, v5}, {v3} is no cluster.
        let groups = [Some(0), Some(0), Some(1), None, Some(1), Some(1)];
        let clusters = d.clusters_of(&groups);
        assert_eq!(clusters, vec![None, Some(0), None, Some(0), Some(0)]);
        assert_eq!(cluster_count(&clusters), (1, 3));
        d.set_clusters(&clusters);
        assert_eq!(d.items().iter().map(|i| i.cluster).collect::<Vec<_>>(), clusters);
        let overlap = |rows: &[usize]| -> Vec<Overlap> {
            rows.iter().map(|&r| Overlap { video: r, source_path: format!("v{r}"), matches: vec![format!("other/{r}")] }).collect()
        };
        // v1 overlaps too but is not evaluated: not listed.
        let dropped = d.drop_overlap(Path::new("s"), Path::new("o"), &overlap(&[1, 4])).unwrap();
        assert_eq!(dropped, vec![Dropped { path: "v4".into(), matches: vec!["other/4".into()] }]);
        assert_eq!(d.videos.iter().map(|v| v.path.as_str()).collect::<Vec<_>>(), vec!["v0", "v2", "v3", "v5"]);
        let err = d.drop_overlap(Path::new("s"), Path::new("o"), &overlap(&[0, 3])).unwrap_err().to_string();
        assert!(err.contains("1 of the classes") && err.contains("2 videos with a near-duplicate in o"), "{err}");
    }
}
