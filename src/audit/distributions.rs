//! Distributions of one store version (docs/AUDIT.md): videos and frames per sub-dataset ×
//! class, frames per video, durations, resolutions, frame rates and statuses, as tables
//! (report.json, report.md) and PNG plots.
//!
//! The tables are computed here over the rows of `videos.parquet` as `store::index` reads them.
//! The same queries in Python polars, for a curator to repeat, filter or extend them, are
//! `scripts/distributions.py` (`.venv/bin/python scripts/distributions.py VERSION_DIR` prints the
//! tables as JSON, same fields and row order); tests/audit_distributions.rs checks that it gives
//! the same numbers. Its core, `v` being `pl.scan_parquet(".../videos.parquet", glob=False)`:
//!
//! ```python
//! per_class = v.group_by(keys).agg(pl.len().alias("videos"), stored.sum().alias("stored"), pl.col("frames_kept").sum().alias("frames"))
//! frames_per_video = v.filter(stored).group_by(keys).agg(summary("frames_kept"))  # n, min, median, mean, max
//! durations_s = v.filter(timed).group_by(keys).agg(summary("duration_s"))
//! ```
//!
//! Medians and means are computed as polars computes them (a median of an even count is the
//! linear interpolation between the two middle values, a mean is a Kahan-compensated sum over the
//! count), so the two agree to the last bit.
//!
//! Every manifest entry is a row of `videos.parquet`, skipped ones and images (one-frame videos)
//! included; which rows each table counts is said at its field.

use crate::error::StoreError;
use crate::store::index::{read_videos, VideoRow};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DistributionsError {
    #[error("cannot compute distributions from {path}: {source}; check the version with `usctl verify` (docs/store-format.md, videos.parquet)")]
    Read { path: PathBuf, source: StoreError },
    #[error("cannot write plot {path}: {message}; check that the audit's output folder is writable")]
    Plot { path: PathBuf, message: String },
}

/// Counts of one sub-dataset × class (`class_name` null: no class assigned).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassCounts {
    pub subdataset: String,
    pub class_name: Option<String>,
    /// Rows of videos.parquet: every manifest entry, skipped ones included.
    pub videos: i64,
    /// Rows with at least one stored frame.
    pub stored: i64,
    /// Stored frames (sum of `frames_kept`).
    pub frames: i64,
}

/// min / median / mean / max of one value over the `n` rows of one sub-dataset × class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary<T> {
    pub subdataset: String,
    pub class_name: Option<String>,
    pub n: i64,
    pub min: T,
    pub median: f64,
    pub mean: f64,
    pub max: T,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub width: i32,
    pub height: i32,
    pub videos: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameRate {
    /// `native_fps` rounded half up to an integer.
    pub fps: i64,
    pub videos: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    pub subdataset: String,
    pub status: String,
    pub videos: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distributions {
    /// The table these were computed from.
    pub videos_parquet: PathBuf,
    /// Every row, by sub-dataset and class (classless last).
    pub per_class: Vec<ClassCounts>,
    /// `frames_kept` of the rows with at least one stored frame.
    pub frames_per_video: Vec<Summary<i64>>,
    /// `duration_s` of the rows of kind `video` whose duration is known.
    pub durations_s: Vec<Summary<f64>>,
    /// Rows whose `width` and `height` are known (images included), most frequent first.
    pub resolutions: Vec<Resolution>,
    /// Rows whose `native_fps` is known (images have none), by rounded rate.
    pub frame_rates: Vec<FrameRate>,
    /// Every row, by sub-dataset and status (`ok`, `partial`, `failed`, `missing`).
    pub statuses: Vec<StatusCount>,
    /// Per-row values behind the histograms (same rows as `frames_per_video`, `durations_s`).
    #[serde(skip)]
    frames_kept: Vec<i64>,
    #[serde(skip)]
    durations: Vec<f64>,
}

/// Reads `version_dir/videos.parquet` and computes every table (scripts/distributions.py has the
/// same queries in Python polars).
pub fn distributions(version_dir: &Path) -> Result<Distributions, DistributionsError> {
    let path = version_dir.join("videos.parquet");
    match read_videos(&path) {
        Ok(rows) => Ok(tables(&path, &rows)),
        Err(source) => Err(DistributionsError::Read { path, source }),
    }
}

/// Sub-dataset, then class with the classless last (polars' `sort(keys, nulls_last=True)`).
type Key = (String, (bool, Option<String>));

fn key(r: &VideoRow) -> Key {
    (r.subdataset.clone(), (r.class_name.is_none(), r.class_name.clone()))
}

fn unkey(k: Key) -> (String, Option<String>) {
    (k.0, k.1 .1)
}

fn stored(r: &VideoRow) -> bool {
    r.frames_kept > 0
}

fn timed(r: &VideoRow) -> bool {
    r.kind == "video" && r.duration_s.is_some()
}

/// Groups `values` by key, in key order, each group in row order.
fn grouped<T>(values: impl Iterator<Item = (Key, T)>) -> BTreeMap<Key, Vec<T>> {
    let mut groups: BTreeMap<Key, Vec<T>> = BTreeMap::new();
    for (k, v) in values {
        groups.entry(k).or_default().push(v);
    }
    groups
}

/// Kahan-compensated sum in row order, as polars sums floats in a mean.
fn kahan_sum(values: &[f64]) -> f64 {
    let (mut sum, mut err) = (0.0f64, 0.0f64);
    for &x in values {
        let y = x - err;
        let t = sum + y;
        err = (t - sum) - y;
        sum = t;
    }
    sum
}

/// Median as polars computes it: the middle value, or for an even count the linear interpolation
/// `lo + (hi − lo)·0.5` between the two middle ones (bit-for-bit polars' result, which `(lo + hi)/2`
/// is not always).
fn median(values: &[f64]) -> f64 {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        let (lo, hi) = (s[n / 2 - 1], s[n / 2]);
        lo + (hi - lo) * 0.5
    }
}

fn summaries<T: Copy + PartialOrd + Into<f64>>(groups: BTreeMap<Key, Vec<T>>) -> Vec<Summary<T>> {
    groups
        .into_iter()
        .map(|(k, v)| {
            let f: Vec<f64> = v.iter().map(|&x| x.into()).collect();
            let pick = |better: fn(&T, &T) -> bool| v.iter().copied().fold(v[0], |a, b| if better(&b, &a) { b } else { a });
            let (subdataset, class_name) = unkey(k);
            Summary {
                subdataset,
                class_name,
                n: v.len() as i64,
                min: pick(|b, a| b < a),
                median: median(&f),
                mean: kahan_sum(&f) / f.len() as f64,
                max: pick(|b, a| b > a),
            }
        })
        .collect()
}

/// i64 → f64 for the summaries (frame counts are far below 2^53).
#[derive(Clone, Copy, PartialEq, PartialOrd)]
struct Count(i64);

impl From<Count> for f64 {
    fn from(c: Count) -> f64 {
        c.0 as f64
    }
}

fn tables(path: &Path, rows: &[VideoRow]) -> Distributions {
    let per_class = grouped(rows.iter().map(|r| (key(r), r)))
        .into_iter()
        .map(|(k, g)| {
            let (subdataset, class_name) = unkey(k);
            ClassCounts {
                subdataset,
                class_name,
                videos: g.len() as i64,
                stored: g.iter().filter(|r| stored(r)).count() as i64,
                frames: g.iter().map(|r| r.frames_kept).sum(),
            }
        })
        .collect();
    let frames_per_video = summaries(grouped(rows.iter().filter(|r| stored(r)).map(|r| (key(r), Count(r.frames_kept)))))
        .into_iter()
        .map(|s| Summary { subdataset: s.subdataset, class_name: s.class_name, n: s.n, min: s.min.0, median: s.median, mean: s.mean, max: s.max.0 })
        .collect();
    let durations_s = summaries(grouped(rows.iter().filter_map(|r| Some((key(r), r.duration_s?)).filter(|_| timed(r)))));

    let mut by_size: BTreeMap<(i32, i32), i64> = BTreeMap::new();
    for r in rows {
        if let (Some(w), Some(h)) = (r.width, r.height) {
            *by_size.entry((w, h)).or_default() += 1;
        }
    }
    let mut resolutions: Vec<Resolution> = by_size.into_iter().map(|((width, height), videos)| Resolution { width, height, videos }).collect();
    resolutions.sort_by(|a, b| b.videos.cmp(&a.videos).then(a.width.cmp(&b.width)).then(a.height.cmp(&b.height)));

    let mut by_fps: BTreeMap<i64, i64> = BTreeMap::new();
    for fps in rows.iter().filter_map(|r| r.native_fps) {
        // polars' `(native_fps + 0.5).cast(Int64)`: half up, truncated toward zero.
        *by_fps.entry((fps + 0.5) as i64).or_default() += 1;
    }
    let frame_rates = by_fps.into_iter().map(|(fps, videos)| FrameRate { fps, videos }).collect();

    let mut by_status: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for r in rows {
        *by_status.entry((&r.subdataset, &r.status)).or_default() += 1;
    }
    let statuses = by_status.into_iter().map(|((s, st), videos)| StatusCount { subdataset: s.into(), status: st.into(), videos }).collect();

    Distributions {
        videos_parquet: path.to_path_buf(),
        per_class,
        frames_per_video,
        durations_s,
        resolutions,
        frame_rates,
        statuses,
        frames_kept: rows.iter().filter(|r| stored(r)).map(|r| r.frames_kept).collect(),
        durations: rows.iter().filter(|r| timed(r)).filter_map(|r| r.duration_s).collect(),
    }
}

fn class_label(c: &Option<String>) -> &str {
    c.as_deref().unwrap_or("(no class)")
}

/// The plots' file names and sizes in pixels (tests check both).
pub const FRAMES_PNG: (&str, (u32, u32)) = ("frames_per_video.png", (900, 540));
pub const DURATIONS_PNG: (&str, (u32, u32)) = ("durations.png", (900, 540));
/// Horizontal bars, 900 wide, height `bar_chart_height(bars)`.
pub const CLASSES_PNG: &str = "videos_per_class.png";
/// The 30 most frequent resolutions at most, drawn like `CLASSES_PNG`.
pub const RESOLUTIONS_PNG: &str = "resolutions.png";
const MAX_RESOLUTION_BARS: usize = 30;
pub const BAR_CHART_WIDTH: u32 = 900;

pub fn bar_chart_height(bars: usize) -> u32 {
    (110 + 26 * bars as u32).max(360)
}

impl Distributions {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "Computed from `{}`. The same queries in Python polars: `scripts/distributions.py` (docs/AUDIT.md).\n\n",
            self.videos_parquet.display()
        ));
        s.push_str("### Videos and frames per sub-dataset and class\n\n| sub-dataset | class | videos | with frames | frames |\n|---|---|---:|---:|---:|\n");
        for r in &self.per_class {
            s.push_str(&format!("| {} | {} | {} | {} | {} |\n", r.subdataset, class_label(&r.class_name), r.videos, r.stored, r.frames));
        }
        s.push_str(
            "\n### Frames per video (videos with frames)\n\n| sub-dataset | class | videos | min | median | mean | max |\n|---|---|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.frames_per_video {
            s.push_str(&format!("| {} | {} | {} | {} | {:.1} | {:.1} | {} |\n", r.subdataset, class_label(&r.class_name), r.n, r.min, r.median, r.mean, r.max));
        }
        s.push_str("\n### Durations in seconds (videos, images excluded)\n\n| sub-dataset | class | videos | min | median | mean | max |\n|---|---|---:|---:|---:|---:|---:|\n");
        for r in &self.durations_s {
            s.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                r.subdataset,
                class_label(&r.class_name),
                r.n,
                r.min,
                r.median,
                r.mean,
                r.max
            ));
        }
        s.push_str("\n### Resolutions (source width × height)\n\n| width | height | videos |\n|---:|---:|---:|\n");
        for r in &self.resolutions {
            s.push_str(&format!("| {} | {} | {} |\n", r.width, r.height, r.videos));
        }
        s.push_str("\n### Frame rates (native, rounded)\n\n| fps | videos |\n|---:|---:|\n");
        for r in &self.frame_rates {
            s.push_str(&format!("| {} | {} |\n", r.fps, r.videos));
        }
        s.push_str("\n### Statuses\n\n| sub-dataset | status | videos |\n|---|---|---:|\n");
        for r in &self.statuses {
            s.push_str(&format!("| {} | {} | {} |\n", r.subdataset, r.status, r.videos));
        }
        s
    }

    /// Writes the PNGs into `dir` (made if needed) and returns their paths: frames per video and
    /// durations as histograms, videos per sub-dataset × class and resolutions as bar charts. A
    /// plot without data (no stored frame, no video with a duration) is not written.
    pub fn write_plots(&self, dir: &Path) -> Result<Vec<PathBuf>, DistributionsError> {
        let plot_err = |path: &Path, message: String| DistributionsError::Plot { path: path.to_path_buf(), message };
        std::fs::create_dir_all(dir).map_err(|e| plot_err(dir, e.to_string()))?;
        let mut written = Vec::new();
        let mut out = |name: &str, draw: &dyn Fn(&Path) -> Result<(), String>| -> Result<(), DistributionsError> {
            let path = dir.join(name);
            draw(&path).map_err(|m| plot_err(&path, m))?;
            written.push(path);
            Ok(())
        };
        if !self.frames_kept.is_empty() {
            let values: Vec<f64> = self.frames_kept.iter().map(|&x| x as f64).collect();
            out(FRAMES_PNG.0, &|p| histogram(p, FRAMES_PNG.1, "Frames per video (videos with frames)", "stored frames", &values, true))?;
        }
        if !self.per_class.is_empty() {
            let bars: Vec<(String, &str, f64)> =
                self.per_class.iter().map(|r| (format!("{} / {}", r.subdataset, class_label(&r.class_name)), r.subdataset.as_str(), r.videos as f64)).collect();
            out(CLASSES_PNG, &|p| bar_chart(p, (BAR_CHART_WIDTH, bar_chart_height(bars.len())), "Videos per sub-dataset and class", &bars))?;
        }
        if !self.durations.is_empty() {
            out(DURATIONS_PNG.0, &|p| histogram(p, DURATIONS_PNG.1, "Video durations", "duration (s)", &self.durations, false))?;
        }
        if !self.resolutions.is_empty() {
            let bars: Vec<(String, &str, f64)> =
                self.resolutions.iter().take(MAX_RESOLUTION_BARS).map(|r| (format!("{}x{}", r.width, r.height), "", r.videos as f64)).collect();
            out(RESOLUTIONS_PNG, &|p| bar_chart(p, (BAR_CHART_WIDTH, bar_chart_height(bars.len())), "Source resolutions (width x height)", &bars))?;
        }
        Ok(written)
    }
}

/// Bin edges for `values`: integers get integer-wide bins (one per value up to 40 values), others
/// 30 equal bins from 0.
fn bins(values: &[f64], integer: bool) -> (f64, f64, usize) {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if integer {
        let width = ((hi - lo + 1.0) / 40.0).ceil().max(1.0);
        // Bins [start + k·width − ½, start + (k + 1)·width − ½): one-wide bins are centred on their value.
        let start = (lo / width).floor() * width - 0.5;
        (start, width, ((hi - start) / width).floor() as usize + 1)
    } else {
        let width = if hi > 0.0 { hi / 30.0 } else { 1.0 };
        (0.0, width, 30)
    }
}

fn histogram(path: &Path, size: (u32, u32), title: &str, x_desc: &str, values: &[f64], integer: bool) -> Result<(), String> {
    let (start, width, n) = bins(values, integer);
    let mut counts = vec![0u64; n];
    for &v in values {
        counts[(((v - start) / width).floor().max(0.0) as usize).min(n - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0) as f64;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|x| x.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(start..start + width * n as f64, 0.0..(top * 1.08).max(1.0))
        .map_err(|x| x.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(x_desc)
        .y_desc("videos")
        .x_label_formatter(&|v| if integer { format!("{:.0}", v) } else { format!("{v:.1}") })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|x| x.to_string())?;
    chart
        .draw_series(counts.iter().enumerate().filter(|c| *c.1 > 0).map(|(i, &c)| {
            let x0 = start + width * i as f64;
            Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], BLUE.mix(0.5).filled())
        }))
        .map_err(|x| x.to_string())?;
    root.present().map_err(|x| x.to_string())
}

/// One horizontal bar per (label, group, value), first on top, labels at the left; bars of one
/// group share a colour, named in a legend when there is more than one group.
fn bar_chart(path: &Path, size: (u32, u32), title: &str, bars: &[(String, &str, f64)]) -> Result<(), String> {
    let mut groups: Vec<&str> = Vec::new();
    for b in bars {
        if !groups.contains(&b.1) {
            groups.push(b.1);
        }
    }
    let n = bars.len();
    let top = bars.iter().map(|b| b.2).fold(0.0, f64::max);
    let longest = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(1) as u32;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|x| x.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size((16 + 8 * longest).min(size.0 / 2))
        .build_cartesian_2d(0.0..(top * 1.1).max(1.0), -0.5..n as f64 - 0.5)
        .map_err(|x| x.to_string())?;
    // Bar i sits at y = n - 1 - i, so the first bar is on top.
    let label = |v: &f64| {
        let i = n as f64 - 1.0 - v;
        if (i - i.round()).abs() < 1e-6 {
            bars.get(i.round() as usize).map(|b| b.0.clone()).unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .y_label_style(("sans-serif", 14))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("videos")
        .draw()
        .map_err(|x| x.to_string())?;
    for (g, name) in groups.iter().enumerate() {
        let colour = Palette99::pick(g).mix(0.8);
        let series = chart
            .draw_series(bars.iter().enumerate().filter(|b| b.1 .1 == *name).map(|(i, b)| {
                let y = (n - 1 - i) as f64;
                Rectangle::new([(0.0, y - 0.35), (b.2, y + 0.35)], colour.filled())
            }))
            .map_err(|x| x.to_string())?;
        if groups.len() > 1 {
            series.label(*name).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        }
    }
    if groups.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|x| x.to_string())?;
    }
    root.present().map_err(|x| x.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::{write_videos, VideoRow};

    #[allow(clippy::too_many_arguments)]
    fn row(
        id: i32,
        sub: &str,
        class: Option<&str>,
        kind: &str,
        wh: Option<(i32, i32)>,
        duration: Option<f64>,
        fps: Option<f64>,
        kept: i64,
        status: &str,
    ) -> VideoRow {
        VideoRow {
            video_id: id,
            subdataset: sub.into(),
            source_path: format!("{sub}/{id}.mp4"),
            kind: kind.into(),
            class_name: class.map(Into::into),
            class_index: class.map(|c| (c == "b") as i32),
            patient_id: None,
            source_bytes: Some(100),
            source_sha256: None,
            width: wh.map(|x| x.0),
            height: wh.map(|x| x.1),
            duration_s: duration,
            native_fps: fps,
            frames_decoded: kept,
            frames_kept: kept,
            first_frame_row: 0,
            payload_sha256: None,
            status: status.into(),
            message: None,
        }
    }

    /// Sub-dataset s1: class a has 3 videos (2, 4, 9 frames; 640×480 at 25, 25, 29.97 fps,
    /// 1, 2, 4 s) and a failed one; class b one image (1 frame, 300×200). Sub-dataset s2: one
    /// classless video (6 frames, 640×480, 14.5 fps → 15, 3 s) and a missing file.
    fn version(dir: &Path) -> PathBuf {
        let rows = vec![
            row(0, "s1", Some("a"), "video", Some((640, 480)), Some(1.0), Some(25.0), 2, "ok"),
            row(1, "s1", Some("a"), "video", Some((640, 480)), Some(2.0), Some(25.0), 4, "ok"),
            row(2, "s1", Some("a"), "video", Some((640, 480)), Some(4.0), Some(29.97), 9, "partial"),
            row(3, "s1", Some("a"), "video", None, None, None, 0, "failed"),
            row(4, "s1", Some("b"), "image", Some((300, 200)), Some(0.0), None, 1, "ok"),
            row(5, "s2", None, "video", Some((640, 480)), Some(3.0), Some(14.5), 6, "ok"),
            row(6, "s2", Some("a"), "video", None, None, None, 0, "missing"),
        ];
        // A folder name with glob characters: every reader must take it literally.
        let v = dir.join("ds [x]*/0001-00112233445566aa");
        std::fs::create_dir_all(&v).unwrap();
        write_videos(&v.join("videos.parquet"), &rows).unwrap();
        v
    }

    fn counts(sub: &str, class: Option<&str>, videos: i64, stored: i64, frames: i64) -> ClassCounts {
        ClassCounts { subdataset: sub.into(), class_name: class.map(Into::into), videos, stored, frames }
    }

    #[test]
    fn tables_have_the_known_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let d = distributions(&version(tmp.path())).unwrap();
        assert_eq!(
            d.per_class,
            vec![counts("s1", Some("a"), 4, 3, 15), counts("s1", Some("b"), 1, 1, 1), counts("s2", Some("a"), 1, 0, 0), counts("s2", None, 1, 1, 6)]
        );
        fn s<T>(sub: &str, class: Option<&str>, n: i64, min: T, median: f64, mean: f64, max: T) -> Summary<T> {
            Summary { subdataset: sub.to_string(), class_name: class.map(Into::into), n, min, median, mean, max }
        }
        assert_eq!(d.frames_per_video, vec![s("s1", Some("a"), 3, 2, 4.0, 5.0, 9), s("s1", Some("b"), 1, 1, 1.0, 1.0, 1), s("s2", None, 1, 6, 6.0, 6.0, 6)]);
        assert_eq!(d.durations_s, vec![s("s1", Some("a"), 3, 1.0, 2.0, 7.0 / 3.0, 4.0), s("s2", None, 1, 3.0, 3.0, 3.0, 3.0)]);
        let r = |width, height, videos| Resolution { width, height, videos };
        assert_eq!(d.resolutions, vec![r(640, 480, 4), r(300, 200, 1)]);
        let f = |fps, videos| FrameRate { fps, videos };
        assert_eq!(d.frame_rates, vec![f(15, 1), f(25, 2), f(30, 1)]);
        let st = |sub: &str, status: &str, videos| StatusCount { subdataset: sub.into(), status: status.into(), videos };
        assert_eq!(d.statuses, vec![st("s1", "failed", 1), st("s1", "ok", 3), st("s1", "partial", 1), st("s2", "missing", 1), st("s2", "ok", 1)]);
        assert_eq!((d.frames_kept.clone(), d.durations.clone()), (vec![2, 4, 9, 1, 6], vec![1.0, 2.0, 4.0, 3.0]));

        let md = d.markdown();
        assert!(md.contains("| s1 | a | 4 | 3 | 15 |\n"), "{md}");
        assert!(md.contains("| s2 | (no class) | 1 | 1 | 6 |\n"), "{md}");
        assert!(md.contains("| s1 | a | 3 | 1.00 | 2.00 | 2.33 | 4.00 |\n"), "{md}");
        assert!(md.contains("| 640 | 480 | 4 |\n| 300 | 200 | 1 |\n"), "{md}");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["frame_rates"][2], serde_json::json!({"fps": 30, "videos": 1}));
        assert!(json.get("frames_kept").is_none(), "per-row values stay out of report.json");
    }

    #[test]
    fn plots_are_pngs_of_the_stated_size() {
        let tmp = tempfile::tempdir().unwrap();
        let d = distributions(&version(tmp.path())).unwrap();
        let out = tmp.path().join("plots");
        let written = d.write_plots(&out).unwrap();
        let want = [
            (FRAMES_PNG.0, FRAMES_PNG.1),
            (CLASSES_PNG, (BAR_CHART_WIDTH, bar_chart_height(4))),
            (DURATIONS_PNG.0, DURATIONS_PNG.1),
            (RESOLUTIONS_PNG, (BAR_CHART_WIDTH, bar_chart_height(2))),
        ];
        assert_eq!(written, want.iter().map(|w| out.join(w.0)).collect::<Vec<_>>());
        for (name, size) in want {
            let img = image::open(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((img.width(), img.height()), size, "{name}");
            // Something besides the white background was drawn (bars, axes, text).
            let rgb = img.to_rgb8();
            let dark = rgb.pixels().filter(|p| p.0.iter().all(|&c| c < 100)).count();
            assert!(dark > 500, "{name}: {dark} dark pixels");
        }
    }

    #[test]
    fn median_and_mean_as_polars_computes_them() {
        // Interpolated, 0.1 + 0.6·0.5 = 0.4 (polars' answer); (0.1 + 0.7) / 2 = 0.39999999999999997.
        assert_eq!(median(&[0.7, 0.1]), 0.4);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        // Ten 1e-16 after 1.0: a plain sum loses them all, the compensated one (and polars) keeps them.
        let xs: Vec<f64> = std::iter::once(1.0).chain(std::iter::repeat_n(1e-16, 10)).collect();
        assert_eq!(kahan_sum(&xs), 1.0 + 1e-15);
        assert_eq!(xs.iter().sum::<f64>(), 1.0);
    }

    #[test]
    fn histogram_bins() {
        // Integers: one bin per value up to 40 distinct values, else wider integer bins.
        assert_eq!(bins(&[2.0, 4.0, 9.0], true), (1.5, 1.0, 8));
        assert_eq!(bins(&[0.0, 99.0], true), (-0.5, 3.0, 34));
        assert_eq!(bins(&[0.0, 3.0], false), (0.0, 0.1, 30));
        assert_eq!(bins(&[0.0], false), (0.0, 1.0, 30));
    }

    #[test]
    fn errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let e = distributions(tmp.path()).unwrap_err().to_string();
        assert!(e.contains(&tmp.path().join("videos.parquet").display().to_string()) && e.contains("usctl verify"), "{e}");
        std::fs::write(tmp.path().join("videos.parquet"), b"not parquet").unwrap();
        assert!(distributions(tmp.path()).unwrap_err().to_string().contains("videos.parquet"));
    }
}
