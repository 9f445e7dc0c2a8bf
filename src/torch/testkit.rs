//! Synthetic stores for the trainer's tests, written with the store writer (no FFmpeg needed).
//! Video v shows a sinusoidal grating with its own orientation and frequency that drifts from
//! frame to frame, plus noise: frames of one video look alike, videos differ by a learnable pattern.

use std::path::{Path, PathBuf};
use usctl::eval::config::{EvalConfig, Protocol};
use usctl::store::index::VideoRow;
use usctl::store::writer::{FrameMeta, NewMask, StoreWriter};
use usctl::store::{IngestParams, StoreMeta, FORMAT_NAME, FORMAT_VERSION};

/// Options of an evaluation of `store` into `out` from random weights, quiet.
pub fn eval_options(store: &Path, out: PathBuf, config: EvalConfig) -> crate::finetune::EvalOptions {
    crate::finetune::EvalOptions { store: store.to_path_buf(), init: None, label: None, out, config, folds_file: None, progress: false, command_line: vec![] }
}

/// A small, fast evaluation config for tests: 2 folds, 1 seed, 2 epochs, 32 px, batch 4, CPU.
pub fn eval_config(protocol: Protocol) -> EvalConfig {
    EvalConfig {
        protocol,
        folds: 2,
        seeds: 1,
        epochs: 2,
        batch_size: 4,
        image_size: 32,
        lr: 1e-3,
        device: usctl::config::DeviceChoice::Cpu,
        threads: 1,
        exclude_classes: vec![],
        ..Default::default()
    }
}

pub fn grating(v: usize, frame: usize, size: usize) -> Vec<u8> {
    let theta = v as f64 * 2.399; // golden angle: orientations spread out
    let freq = 2.0 + (v % 4) as f64 * 1.5;
    let (c, s) = (theta.cos(), theta.sin());
    let mut noise = 0x9e37_79b9u32.wrapping_mul((v * 131 + frame * 7 + 1) as u32);
    let mut out = Vec::with_capacity(size * size);
    for y in 0..size {
        for x in 0..size {
            let (u, w) = (x as f64 / size as f64, y as f64 / size as f64);
            let phase = 2.0 * std::f64::consts::PI * (freq * (u * c + w * s) + 0.1 * frame as f64);
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let jitter = (noise % 41) as f64 - 20.0;
            out.push((128.0 + 90.0 * phase.sin() + jitter).clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// Publishes a store of `frames.len()` videos (video v has frames[v] frames of size × size, class
/// v % 2, patient v / 2) under `root/synthetic/`, returning the version directory.
pub fn store(root: &Path, frames: &[usize], size: usize) -> PathBuf {
    write(root, frames, size, grating)
}

/// `videos` videos of 3–5 frames whose class shows: class b (odd v) is darker, so even a random
/// backbone's features separate the classes linearly.
pub fn labelled_store(root: &Path, videos: usize, size: usize) -> PathBuf {
    let frames: Vec<usize> = (0..videos).map(|v| 3 + v % 3).collect();
    write(root, &frames, size, |v, f, size| grating(v, f, size).into_iter().map(|p| if v % 2 == 1 { p / 3 } else { p }).collect())
}

/// A lesion of still image `v`: a disc whose centre and radius depend on v.
fn disc(v: usize, size: usize) -> Vec<u8> {
    let (cx, cy) = (size as f64 * (0.3 + 0.4 * ((v * 7) % 5) as f64 / 4.0), size as f64 * (0.3 + 0.4 * ((v * 3) % 4) as f64 / 3.0));
    let r = size as f64 * (0.12 + 0.02 * (v % 3) as f64);
    (0..size * size).map(|i| u8::from(((i % size) as f64 - cx).powi(2) + ((i / size) as f64 - cy).powi(2) <= r * r)).collect()
}

/// `images` still images (one frame each, class v % 2) of a dark grating with one bright disc,
/// and the disc as its lesion mask (store format 4).
pub fn masked_store(root: &Path, images: usize, size: usize) -> PathBuf {
    let pixels = |v: usize, _f: usize, size: usize| -> Vec<u8> {
        grating(v, 0, size).into_iter().zip(disc(v, size)).map(|(p, d)| if d == 1 { 200 + p / 5 } else { p / 3 }).collect()
    };
    let masks = |v: usize| vec![NewMask { source_path: format!("m/v{v:03}_mask.png"), source_sha256: "1e".repeat(32), source_pixels: 1, mask: disc(v, size) }];
    write_with(root, &vec![1; images], size, &|v| v % 2, pixels, Some(&masks))
}

/// `majority` videos of class a, then `minority` of class b, 3 frames each; class b is a little
/// darker (× `shade`), so the classes separate, but not by much.
pub fn imbalanced_store(root: &Path, majority: usize, minority: usize, shade: f64, size: usize) -> PathBuf {
    let pixels = move |v: usize, f: usize, size: usize| -> Vec<u8> {
        grating(v, f, size).into_iter().map(|p| if v >= majority { (p as f64 * shade) as u8 } else { p }).collect()
    };
    write_with(root, &vec![3; majority + minority], size, &|v| usize::from(v >= majority), pixels, None)
}

fn write(root: &Path, frames: &[usize], size: usize, pixels: impl Fn(usize, usize, usize) -> Vec<u8>) -> PathBuf {
    write_with(root, frames, size, &|v| v % 2, pixels, None)
}

type Masks<'a> = Option<&'a dyn Fn(usize) -> Vec<NewMask>>;

fn write_with(
    root: &Path,
    frames: &[usize],
    size: usize,
    class_of: &dyn Fn(usize) -> usize,
    pixels: impl Fn(usize, usize, usize) -> Vec<u8>,
    masks: Masks,
) -> PathBuf {
    let dataset = root.join("synthetic");
    let mut w = StoreWriter::create(&dataset, "5e5e5e5e5e5e5e5e", size).unwrap();
    for (v, &n) in frames.iter().enumerate() {
        let pixels: Vec<u8> = (0..n).flat_map(|f| pixels(v, f, size)).collect();
        let meta: Vec<FrameMeta> = (0..n).map(|f| FrameMeta { time_s: f as f64 / 3.0, source_index: f as i64, pts: f as i64 }).collect();
        let row = VideoRow {
            video_id: 0,
            subdataset: "synthetic".into(),
            source_path: format!("v{v:03}.mp4"),
            kind: "video".into(),
            class_name: Some(["a", "b"][class_of(v)].into()),
            class_index: Some(class_of(v) as i32),
            patient_id: Some(format!("p{}", v / 2)),
            source_bytes: None,
            source_sha256: None,
            width: Some(size as i32),
            height: Some(size as i32),
            duration_s: None,
            native_fps: None,
            frames_decoded: n as i64,
            frames_kept: 0,
            first_frame_row: 0,
            payload_sha256: None,
            status: "ok".into(),
            message: None,
        };
        w.add(row, &pixels, &meta).unwrap();
        if let Some(masks) = masks {
            w.add_masks(&masks(v)).unwrap();
        }
    }
    let meta = StoreMeta {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        dataset: "synthetic".into(),
        version_id: "5e5e5e5e5e5e5e5e".into(),
        version_sha256: "5e".repeat(32),
        params: IngestParams { fps: "3".into(), size: size as u32, pixel_format: "gray8".into(), fit: "letterbox".into(), decoder: "synthetic".into() },
        frame_bytes: 0,
        frames: 0,
        videos: 0,
        classes: vec!["a".into(), "b".into()],
        files: Default::default(),
        meta_sha256: None,
    };
    w.publish(meta, b"schema = 1\nname = \"synthetic\"\nclasses = [\"a\", \"b\"]\n").unwrap().path
}
