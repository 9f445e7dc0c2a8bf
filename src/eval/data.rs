//! Which stored videos an evaluation uses and under which class: the labelled videos of the kept
//! classes, each with its patient (the unit that folds keep together) when the manifest gave one.
//! A still image is a one-frame video.

use super::config::EvalConfig;
use super::folds::Item;
use crate::error::EvalError;
use crate::store::index::VideoRow;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    pub path: String,
    pub patient: Option<String>,
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
        self.videos.iter().map(|v| Item { video: v.path.clone(), patient: v.patient.clone(), class: v.class }).collect()
    }

    /// (video, frame row) of every stored frame of the given videos, in order.
    pub fn frames_of(&self, videos: &[usize]) -> Vec<(usize, usize)> {
        videos.iter().flat_map(|&v| (0..self.videos[v].frames).map(move |k| (v, self.videos[v].first_row + k))).collect()
    }
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
    for r in rows {
        let class = r.class_name.as_ref().and_then(|name| classes.iter().position(|k| k == name));
        match class {
            Some(class) if r.frames_kept > 0 => videos.push(Video {
                path: r.source_path.clone(),
                patient: r.patient_id.clone(),
                class,
                first_row: r.first_frame_row as usize,
                frames: r.frames_kept as usize,
            }),
            _ => skipped += 1,
        }
    }
    let present = (0..classes.len()).filter(|&k| videos.iter().any(|v| v.class == k)).count();
    if present < 2 {
        return Err(data_err(format!(
            "has labelled frames in {present} of the classes {:?}; classification needs at least two (is it a labelled store? check `classes` and `exclude_classes`)",
            classes
        )));
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
        assert_eq!(d.items()[0].group(), "patient:p1");
        let c = EvalConfig { classes: vec!["healthy".into(), "viral-pneumonia".into()], ..Default::default() };
        let d = select(Path::new("s"), &store, &rows, &c).unwrap();
        assert_eq!(d.videos.iter().map(|v| (v.path.as_str(), v.class)).collect::<Vec<_>>(), vec![("b", 1), ("c", 0)]);
        let c = EvalConfig { classes: vec!["normal".into()], ..Default::default() };
        assert!(select(Path::new("s"), &store, &rows, &c).unwrap_err().to_string().contains("no class \"normal\""));
        let c = EvalConfig { classes: vec!["covid-19".into()], ..Default::default() };
        assert!(select(Path::new("s"), &store, &rows, &c).unwrap_err().to_string().contains("at least two"));
    }
}
