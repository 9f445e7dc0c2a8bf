//! Helpers shared by the integration tests: the usctl binary, synthetic media made with the
//! ffmpeg CLI (installed by `make setup`), and store inspection.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use usctl::store::index::{FrameRow, VideoRow};

pub fn usctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_usctl"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("usctl runs")
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs the ffmpeg CLI quietly; panics with its message when it fails.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is installed by `make setup` (Debian package ffmpeg)");
    assert!(out.status.success(), "ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A moving test pattern of `frames` frames at `rate` fps, `w`×`h`.
pub fn testsrc(w: u32, h: u32, rate: u32, frames: u32) -> String {
    format!("testsrc2=size={w}x{h}:rate={rate},trim=end_frame={frames}")
}

/// A 16×16 one-frame PNG of one colour (an ffmpeg colour name), its folder made.
pub fn png(path: &Path, colour: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", &format!("color=c={colour}:size=16x16"), "-frames:v", "1", path.to_str().unwrap()]);
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A manifest with one source that takes every file under `dir` matching `include`, plus
/// `files` listed one by one; class "a" for names starting with "a", "b" otherwise.
pub fn manifest(path: &Path, name: &str, include: &[&str], files: &[&str]) {
    let list = |v: &[&str]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    write(
        path,
        &format!(
            "schema = 1\nname = \"{name}\"\nclasses = [\"a\", \"b\"]\n\n[[source]]\nsubdataset = \"synthetic\"\ninclude = [{}]\nfiles = [{}]\n\n[[source.class_rule]]\nprefix = \"a\"\nclass = \"a\"\n\n[[source.class_rule]]\nglob = \"**\"\nclass = \"b\"\n",
            list(include),
            list(files)
        ),
    );
}

pub fn ingest(manifest: &Path, raw: &Path, store: &Path, extra: &[&str]) -> Output {
    run(usctl().args(["ingest", "--quiet", "--manifest"]).arg(manifest).arg("--raw").arg(raw).arg("--store").arg(store).args(extra))
}

/// The newest version directory of the only dataset under `store`.
pub fn newest(store: &Path) -> PathBuf {
    usctl::store::locate(store, None, None).expect("a published version")
}

pub fn tables(version: &Path) -> (Vec<VideoRow>, Vec<FrameRow>) {
    (
        usctl::store::index::read_videos(&version.join("videos.parquet")).unwrap(),
        usctl::store::index::read_frames(&version.join("frames.parquet"), usctl::store::FORMAT_VERSION).unwrap(),
    )
}

/// Source frame indices kept for one video, by source path.
pub fn kept(version: &Path, source_path: &str) -> Vec<i64> {
    let (videos, frames) = tables(version);
    let v = videos.iter().find(|v| v.source_path == source_path).unwrap_or_else(|| panic!("{source_path} in the index"));
    frames.iter().filter(|f| f.video_id == v.video_id).map(|f| f.source_index).collect()
}

/// Every file under `dir` (relative path → bytes), for before/after comparisons.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name().into_iter().flatten() {
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        if e.file_type().is_file() {
            out.push((rel, std::fs::read(e.path()).unwrap_or_default()));
        } else {
            out.push((rel, Vec::new()));
        }
    }
    out
}

pub fn shared_datasets() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    p.is_dir().then_some(p)
}

/// Eight 2-second clips (a0, b1, a2, …: class a or b by name) of differently coloured, moving
/// test patterns, ingested at 32 px; returns the store root.
pub fn clips_store(root: &Path) -> PathBuf {
    let raw = root.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    for i in 0..8 {
        let name = format!("{}{i}.mp4", if i % 2 == 0 { "a" } else { "b" });
        let src = format!("testsrc2=size=64x48:rate=15,trim=end_frame=30,hue=h={}", i * 45);
        ffmpeg(&["-f", "lavfi", "-i", &src, "-c:v", "libx264", "-pix_fmt", "yuv420p", raw.join(name).to_str().unwrap()]);
    }
    let m = root.join("m.toml");
    manifest(&m, "clips", &["*.mp4"], &[]);
    let out = ingest(&m, &raw, &root.join("store"), &["--size", "32"]);
    assert!(out.status.success(), "{}", text(&out));
    root.join("store")
}

/// The project's venv Python (`make setup` installs torch and torchvision there), if present.
pub fn venv_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    python.is_file().then_some(python)
}
