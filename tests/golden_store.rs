//! Pins the store format's bytes (format version 1). If this test fails, the bytes of a store
//! changed: bump store::FORMAT_VERSION, update docs/store-format.md, then the digests here.
use sha2::Digest;
use usctl::store::index::VideoRow;
use usctl::store::reader::Store;
use usctl::store::writer::{FrameMeta, StoreWriter};
use usctl::store::{IngestParams, StoreMeta, FORMAT_NAME, FORMAT_VERSION};

fn row(path: &str, class: Option<(&str, i32)>, status: &str, message: Option<&str>) -> VideoRow {
    VideoRow {
        video_id: 0,
        subdataset: "golden".into(),
        source_path: path.into(),
        kind: "video".into(),
        class_name: class.map(|c| c.0.into()),
        class_index: class.map(|c| c.1),
        patient_id: Some("p7".into()),
        source_bytes: Some(1000),
        source_sha256: Some("0f".repeat(32)),
        width: Some(8),
        height: Some(6),
        duration_s: Some(2.0),
        native_fps: Some(25.0),
        frames_decoded: 50,
        frames_kept: 0,
        first_frame_row: 0,
        payload_sha256: None,
        status: status.into(),
        message: message.map(Into::into),
    }
}

fn build(dir: &std::path::Path) -> std::path::PathBuf {
    let size = 4usize;
    let pixels: Vec<u8> = (0..3 * size * size).map(|i| (i * 37 % 251) as u8).collect();
    let meta = |i: i64| FrameMeta { time_s: i as f64 / 3.0, source_index: i * 8, pts: i * 512 };
    let mut w = StoreWriter::create(&dir.join("golden"), "00112233445566aa", size * size).unwrap();
    w.add(row("a.mp4", Some(("x", 0)), "ok", None), &pixels[..2 * size * size], &[meta(0), meta(1)]).unwrap();
    w.add(row("b.mp4", None, "failed", Some("file is empty")), &[], &[]).unwrap();
    w.add(row("c.gif", Some(("y", 1)), "ok", None), &pixels[2 * size * size..], &[meta(0)]).unwrap();
    let meta = StoreMeta {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        dataset: "golden".into(),
        version_id: "00112233445566aa".into(),
        version_sha256: "00112233445566aa".repeat(4),
        params: IngestParams { fps: "3".into(), size: 4, pixel_format: "gray8".into(), fit: "letterbox".into(), decoder: "golden".into() },
        frame_bytes: 0,
        frames: 0,
        videos: 0,
        classes: vec!["x".into(), "y".into()],
        files: Default::default(),
    };
    w.publish(meta, b"schema = 1\n").unwrap().path
}

#[test]
fn store_bytes_are_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let v = build(tmp.path());
    assert_eq!(v.file_name().unwrap(), "0001-00112233445566aa");
    let digest = |name: &str| usctl::hash::hex(&sha2::Sha256::digest(std::fs::read(v.join(name)).unwrap()));
    let got: Vec<(&str, String)> = ["frames.u8", "frames.parquet", "videos.parquet", "manifest.toml", "store.json"]
        .into_iter()
        .map(|f| (f, digest(f)))
        .collect();
    let want = [
        ("frames.u8", "2af0ba23241ab5f19ceb274a6b633a38c445962595449cbaed1b8d6051253dad"),
        ("frames.parquet", "4c0f5786f36b3fac2d823fb3faab8cfc144191eb1a8ce14e2a8f07085ac6b34c"),
        ("videos.parquet", "91f88ab449cce7fea185f91b62f13d941fbd4904668bce7400a7351f171b4dc6"),
        ("manifest.toml", "da93db77ebb07776dbd095f79fe28cbf4d42340c27bc33547ed7eeb2d3c93ea1"),
        ("store.json", "fd41157be1dfa6b8bf257f6fac836c016d08849c86df0e38748dcfa562ad95c1"),
    ];
    let got_ref: Vec<(&str, &str)> = got.iter().map(|(f, d)| (*f, d.as_str())).collect();
    assert_eq!(got_ref, want, "store bytes changed: see the comment at the top of this file");
}

#[test]
fn golden_store_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let v = build(tmp.path());
    let s = Store::open(&v).unwrap();
    assert_eq!((s.meta.frames, s.meta.videos, s.meta.frame_bytes), (3, 3, 16));
    assert_eq!(s.videos.iter().map(|r| (r.video_id, r.first_frame_row, r.frames_kept)).collect::<Vec<_>>(), vec![(0, 0, 2), (1, 2, 0), (2, 2, 1)]);
    assert_eq!(s.frame(2)[0], (32 * 37 % 251) as u8);
    assert_eq!(s.frames[1].pts, 512);
    assert!(usctl::store::verify::verify(&v).unwrap().is_ok());
}

#[test]
fn publishing_skips_a_stray_folder_that_holds_the_next_name() {
    let tmp = tempfile::tempdir().unwrap();
    let first = build(tmp.path());
    // Not a version (no store.json), but it occupies 0002-<id>.
    std::fs::create_dir_all(tmp.path().join("golden/0002-00112233445566aa")).unwrap();
    let second = build(tmp.path());
    assert_eq!(second.file_name().unwrap(), "0003-00112233445566aa");
    assert!(Store::open(&first).is_ok() && Store::open(&second).is_ok());
}
