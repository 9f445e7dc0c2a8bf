//! `usctl audit`'s distribution tables (src/audit/distributions.rs) and the Python polars queries
//! curators run on the same videos.parquet (scripts/distributions.py, docs/AUDIT.md) give the same
//! numbers, to the last bit. Needs polars in the project's .venv: `make setup` installs it.
mod common;

use common::{run, text, venv_python};
use usctl::audit::distributions::distributions;
use usctl::store::index::VideoRow;
use usctl::store::writer::{FrameMeta, StoreWriter};
use usctl::store::{IngestParams, StoreMeta, FORMAT_NAME, FORMAT_VERSION};

/// Frames are SIZE × SIZE.
const SIZE: usize = 2;
const FRAME_BYTES: usize = SIZE * SIZE;

/// Video `i` of a 240-video version: two sub-datasets, classes a, b and none, every 7th an image
/// (one frame, no frame rate), every 11th failed (no frame, nothing known), durations and frame
/// rates with fractions (29.97, 14.5 → 15, 12.5 → 13) so that medians of even counts and
/// compensated means are exercised.
fn video(i: usize) -> (VideoRow, usize) {
    let failed = i.is_multiple_of(11);
    let image = !failed && i.is_multiple_of(7);
    let frames = if failed {
        0
    } else if image {
        1
    } else {
        1 + (i * 37) % 23
    };
    let row = VideoRow {
        video_id: 0,
        subdataset: ["s1", "s2"][i % 2].into(),
        source_path: format!("v{i}.mp4"),
        kind: if image { "image" } else { "video" }.into(),
        class_name: [Some("a"), Some("b"), None][i % 3].map(Into::into),
        class_index: [Some(0), Some(1), None][i % 3],
        patient_id: None,
        source_bytes: Some(1000 + i as i64),
        source_sha256: None,
        width: (!failed).then_some([640, 800, 1024, 300][i % 4]),
        height: (!failed).then_some([480, 600, 768, 200][(i / 4) % 4]),
        duration_s: (!failed).then_some(if image { 0.0 } else { 0.1 * (1 + (i * 53) % 97) as f64 + (i as f64).sin().abs() / 3.0 }),
        native_fps: (!failed && !image).then_some([25.0, 29.97, 14.5, 30.0, 12.5][i % 5]),
        frames_decoded: frames as i64,
        frames_kept: 0,
        first_frame_row: 0,
        payload_sha256: None,
        status: if failed {
            "failed"
        } else if i.is_multiple_of(13) {
            "partial"
        } else {
            "ok"
        }
        .into(),
        message: None,
    };
    (row, frames)
}

/// One published version, under a dataset folder whose name has glob characters (both readers
/// must take the path literally).
fn version(root: &std::path::Path) -> std::path::PathBuf {
    let mut w = StoreWriter::create(&root.join("ds [x]*"), "00112233445566aa", SIZE).unwrap();
    let (mut videos, mut frames) = (0, 0);
    for i in 0..240 {
        let (row, n) = video(i);
        let meta: Vec<FrameMeta> = (0..n as i64).map(|k| FrameMeta { time_s: k as f64, source_index: k, pts: k }).collect();
        w.add(row, &vec![i as u8; n * FRAME_BYTES], &meta).unwrap();
        (videos, frames) = (videos + 1, frames + n as u64);
    }
    let meta = StoreMeta {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        dataset: "ds [x]*".into(),
        version_id: "00112233445566aa".into(),
        version_sha256: "00112233445566aa".repeat(4),
        params: IngestParams { fps: "3".into(), size: SIZE as u32, pixel_format: "gray8".into(), fit: "letterbox".into(), decoder: "test".into() },
        frame_bytes: FRAME_BYTES as u64,
        frames,
        videos,
        classes: vec!["a".into(), "b".into()],
        files: Default::default(),
        meta_sha256: None,
    };
    w.publish(meta, b"schema = 1\nname = \"ds [x]*\"\nclasses = [\"a\", \"b\"]\n").unwrap().path
}

#[test]
fn python_polars_queries_give_usctls_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let v = version(tmp.path());
    let ours = serde_json::to_value(distributions(&v).unwrap()).unwrap();

    let python = venv_python().expect("no .venv/bin/python: run `make setup` (it creates the venv and installs polars there)");
    let probe = run(std::process::Command::new(&python).args(["-c", "import polars"]));
    assert!(probe.status.success(), "polars is not installed in {}: run `make setup`\n{}", python.display(), text(&probe));
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    // The curator's command: prints the tables as JSON.
    let out = run(std::process::Command::new(&python).arg(scripts.join("distributions.py")).arg(&v));
    assert!(out.status.success(), "{}", text(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    // The same `tables()`, every float as its IEEE-754 bits: serde_json's parser may round the
    // last bit of a float, and the two must agree on every bit.
    let bits = r#"
import json, struct, sys
sys.path.insert(0, sys.argv[1])
from distributions import tables
def bits(x):
    if isinstance(x, float):
        return struct.unpack("<q", struct.pack("<d", x))[0]
    if isinstance(x, dict):
        return {k: bits(v) for k, v in x.items()}
    if isinstance(x, list):
        return [bits(v) for v in x]
    return x
print(json.dumps(bits(tables(sys.argv[2] + "/videos.parquet"))))
"#;
    let out = run(std::process::Command::new(&python).args(["-c", bits]).arg(&scripts).arg(&v));
    assert!(out.status.success(), "{}", text(&out));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));

    // The input is rich enough for the comparison to mean something.
    let tables = ["per_class", "frames_per_video", "durations_s", "resolutions", "frame_rates", "statuses"];
    let rows = |t: &str| ours[t].as_array().map_or(0, Vec::len);
    assert_eq!(tables.map(rows), [6, 6, 6, 16, 4, 6], "{ours:#}");
    assert_eq!(
        ours["frame_rates"],
        serde_json::json!([{"fps": 13, "videos": 38}, {"fps": 15, "videos": 38}, {"fps": 25, "videos": 37}, {"fps": 30, "videos": 74}])
    );
    assert_eq!(tables.map(|t| printed[t].as_array().map_or(0, Vec::len)), tables.map(rows), "{printed:#}");
    assert_eq!(printed["videos_parquet"], ours["videos_parquet"]);
    let ours = float_bits(ours);
    for table in ["videos_parquet", "per_class", "frames_per_video", "durations_s", "resolutions", "frame_rates", "statuses"] {
        assert_eq!(ours[table], theirs[table], "{table} (floats as bits): usctl (left) vs scripts/distributions.py (right); as printed:\n{:#}", printed[table]);
    }
    assert_eq!(ours, theirs);
}

fn float_bits(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => Value::from(n.as_f64().unwrap().to_bits() as i64),
        Value::Array(a) => Value::Array(a.into_iter().map(float_bits).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, float_bits(v))).collect()),
        other => other,
    }
}
