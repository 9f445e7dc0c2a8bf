//! Lesion masks of still images (`[source.masks]`, store format 4) on a corpus made here, whose
//! stored boxes and pixel counts are worked out by hand below.
use std::path::Path;
use usctl::ingest::{ingest, resample::Rational, IngestOptions, IngestReport};
use usctl::manifest::Manifest;
use usctl::store::reader::Store;

const MANIFEST: &str = r#"schema = 3
name = "lesions"
classes = ["x"]

[[source]]
subdataset = "s"
include = ["*/images/*.png"]

[source.masks]
dir = "{parent}/mask"
name = '{stem}_mask(_[0-9]+)?\.png'
"#;

/// A `w`×`h` gray PNG, 255 inside the rectangles `[x0, x1) × [y0, y1)`, `fill` elsewhere.
fn png(path: &Path, w: u32, h: u32, fill: u8, rects: &[(u32, u32, u32, u32)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        let inside = rects.iter().any(|&(x0, x1, y0, y1)| (x0..x1).contains(&x) && (y0..y1).contains(&y));
        image::Luma([if inside { 255 } else { fill }])
    });
    img.save(path).unwrap();
}

/// Images 64×32 in c/images/, masks in c/mask/:
/// - two.png: two masks, rectangles x 8..24 × y 4..12 and x 40..56 × y 16..28;
/// - empty.png: one all-black mask (no lesion);
/// - wrong.png: a 32×32 mask (another size);
/// - gone.png: no mask at all;
/// - twox_mask.png and two_masks.png match no image's pattern.
fn corpus(raw: &Path) {
    for name in ["two", "empty", "wrong", "gone"] {
        png(&raw.join(format!("c/images/{name}.png")), 64, 32, 90, &[(0, 4, 0, 4)]);
    }
    png(&raw.join("c/mask/two_mask.png"), 64, 32, 0, &[(8, 24, 4, 12)]);
    png(&raw.join("c/mask/two_mask_1.png"), 64, 32, 0, &[(40, 56, 16, 28)]);
    png(&raw.join("c/mask/empty_mask.png"), 64, 32, 0, &[]);
    png(&raw.join("c/mask/wrong_mask.png"), 32, 32, 0, &[(0, 8, 0, 8)]);
    png(&raw.join("c/mask/twox_mask.png"), 64, 32, 0, &[(0, 64, 0, 32)]);
    png(&raw.join("c/mask/two_masks.png"), 64, 32, 0, &[(0, 64, 0, 32)]);
}

fn run(root: &Path) -> IngestReport {
    let opts = IngestOptions {
        manifest: root.join("m.toml"),
        raw: root.join("raw"),
        store: root.join("store"),
        fps: Rational::new(3, 1).unwrap(),
        size: 32,
        threads: 2,
        progress: false,
        accept_changed: false,
        skip_absent_sources: false,
    };
    ingest(&opts).unwrap()
}

fn problem<'a>(report: &'a IngestReport, path: &str) -> &'a str {
    let found = report.problems.iter().find(|p| p.path == path);
    &found.unwrap_or_else(|| panic!("no problem for {path}: {:?}", report.problems)).reason
}

#[test]
fn masks_are_stored_in_frame_geometry_one_instance_per_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    corpus(&root.join("raw"));
    std::fs::write(root.join("m.toml"), MANIFEST).unwrap();
    let report = run(root);
    assert_eq!(report.ok, 4);
    assert!(problem(&report, "c/mask/wrong_mask.png").contains("it is 32×32 but the image is 64×32"));
    assert!(problem(&report, "c/images/gone.png").contains("no mask file found"));
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);

    let s = Store::open(&report.version_dir).unwrap();
    assert_eq!(s.meta.format_version, 4);
    // Frames in path order: empty, gone, two, wrong.
    let paths: Vec<&str> = s.videos.iter().map(|v| v.source_path.as_str()).collect();
    assert_eq!(paths, ["c/images/empty.png", "c/images/gone.png", "c/images/two.png", "c/images/wrong.png"]);
    assert_eq!(s.masks_of(0).map(|v| v.len()), Some(0), "an empty mask file: annotated, no lesion");
    assert!(s.masks_of(1).is_none(), "no mask file: not annotated");
    assert!(s.masks_of(3).is_none(), "a mask of another size: nothing stored for the image");
    assert_eq!(s.masks.len(), 3);
    assert_eq!((s.masks[0].source_path.as_str(), s.masks[0].source_pixels, s.masks[0].pixels), ("c/mask/empty_mask.png", 0, 0));

    // 64×32 at size 32 fits as 32×16 at y 8. Nearest neighbour: stored x takes source 2x+1, so
    // source x 8..24 → x 4..=11 (w 8) and y 4..12 → 2..=5 (h 4), at y 8+2; source x 40..56 →
    // 20..=27, y 16..28 → 8..=13 (h 6), at y 16.
    let two = s.masks_of(2).unwrap();
    let got: Vec<(&str, i32, [i32; 4], i64, i64)> =
        two.iter().map(|i| (i.row.source_path.as_str(), i.row.mask_index, i.bbox(), i.row.pixels, i.row.source_pixels)).collect();
    assert_eq!(got, vec![("c/mask/two_mask.png", 0, [4, 10, 8, 4], 32, 16 * 8), ("c/mask/two_mask_1.png", 1, [20, 16, 8, 6], 48, 16 * 12)]);
    let at = |mask: &[u8], x: usize, y: usize| mask[y * 32 + x];
    assert_eq!((at(two[0].mask, 4, 10), at(two[0].mask, 11, 13), at(two[0].mask, 3, 10), at(two[0].mask, 4, 14)), (1, 1, 0, 0));
    assert_eq!(two[1].mask.iter().map(|&b| b as i64).sum::<i64>(), 48);
    assert_eq!(s.instance_count(), 2);

    // verify passes; one flipped byte of masks.u8 fails it.
    assert!(usctl::store::verify::verify(&report.version_dir).unwrap().is_ok());
    let copy = root.join("copy/lesions");
    std::fs::create_dir_all(&copy).unwrap();
    let dir = copy.join(report.version_dir.file_name().unwrap());
    std::fs::create_dir(&dir).unwrap();
    for f in std::fs::read_dir(&report.version_dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    let mut bytes = std::fs::read(dir.join("masks.u8")).unwrap();
    bytes[4 + 10 * 32] ^= 1;
    std::fs::write(dir.join("masks.u8"), bytes).unwrap();
    let v = usctl::store::verify::verify(&dir).unwrap();
    assert!(!v.is_ok() && v.bad_files.iter().any(|f| f.starts_with("masks.u8")), "{v:?}");

    // The same inputs: reused, and the images without stored masks are still reported.
    let again = run(root);
    assert!(again.reused);
    assert_eq!(again.version_id, report.version_id);
    assert!(problem(&again, "c/images/gone.png").contains("without masks"));
    assert!(problem(&again, "c/images/wrong.png").contains("without masks"));

    // A changed mask file is a new version.
    png(&root.join("raw/c/mask/two_mask_1.png"), 64, 32, 0, &[(40, 58, 16, 28)]);
    let changed = run(root);
    assert!(!changed.reused);
    assert_ne!(changed.version_id, report.version_id);
}

#[test]
fn pins_cover_mask_files() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    corpus(&raw);
    let m = Manifest::parse(MANIFEST.as_bytes(), Path::new("m.toml")).unwrap();
    let pinned = usctl::manifest::pin::pin(&m, &raw, Path::new("m.toml")).unwrap().pinned;
    let paths: Vec<&str> = pinned.files.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "c/images/empty.png",
            "c/images/gone.png",
            "c/images/two.png",
            "c/images/wrong.png",
            "c/mask/empty_mask.png",
            "c/mask/two_mask.png",
            "c/mask/two_mask_1.png",
            "c/mask/wrong_mask.png"
        ]
    );
}

#[test]
fn mask_rules_are_validated() {
    let parse = |t: String| Manifest::parse(t.as_bytes(), Path::new("m.toml")).map(|_| ()).map_err(|e| e.to_string());
    for (from, to, want) in [
        ("{parent}/mask", "../mask", "masks `dir` '../mask' has a '..' component"),
        ("{parent}/mask", "/abs", "is absolute"),
        ("{parent}/mask", "{grandparent}/mask", "placeholder"),
        ("'{stem}_mask(_[0-9]+)?\\.png'", "'x_mask.png'", "has no {stem}"),
        ("'{stem}_mask(_[0-9]+)?\\.png'", "'{stem}_mask(.png'", "masks.name"),
        ("schema = 3", "schema = 2", "`masks` needs `schema = 3`"),
    ] {
        let err = parse(MANIFEST.replace(from, to)).unwrap_err();
        assert!(err.contains(want) && err.contains("source #1 (s)"), "{to}: {err}");
    }
    let err = parse(MANIFEST.replace("name = '{stem}", "nam = '{stem}")).unwrap_err();
    assert!(err.contains("nam"), "{err}");
}

#[test]
fn a_video_in_a_source_with_masks_is_reported_and_gets_none() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    corpus(&root.join("raw"));
    let clip = root.join("raw/c/images/clip.mp4");
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x32:rate=10,trim=end_frame=5", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .output()
        .expect("the ffmpeg CLI is installed by `make setup`");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A mask named like the clip's would be listed for it, and is not read.
    png(&root.join("raw/c/mask/clip_mask.png"), 64, 32, 0, &[(0, 8, 0, 8)]);
    std::fs::write(root.join("m.toml"), MANIFEST.replace(r#"include = ["*/images/*.png"]"#, r#"include = ["*/images/*.png", "*/images/*.mp4"]"#)).unwrap();
    let report = run(root);
    assert!(problem(&report, "c/images/clip.mp4").contains("masks are read for still images only"));
    let s = Store::open(&report.version_dir).unwrap();
    let clip = s.videos.iter().find(|v| v.source_path == "c/images/clip.mp4").unwrap();
    assert!(clip.frames_kept > 0 && s.masks_of(clip.first_frame_row as usize).is_none());
    assert_eq!(s.instance_count(), 2, "the images' masks are stored as before");
}

/// `usctl audit --manifest`: mask files the manifest names are accounted for; mask-like files no
/// image's pattern takes are still listed as unmatched.
#[test]
fn the_audit_counts_named_mask_files_as_accounted_for() {
    let tmp = tempfile::tempdir().unwrap();
    corpus(&tmp.path().join("raw"));
    std::fs::write(tmp.path().join("m.toml"), MANIFEST).unwrap();
    let report = run(tmp.path());
    let inv =
        usctl::audit::inventory::inventory(&Store::open(&report.version_dir).unwrap(), Some((&tmp.path().join("m.toml"), &tmp.path().join("raw")))).unwrap();
    let unmatched = &inv.disk.as_ref().unwrap().unmatched;
    assert_eq!(unmatched, &vec!["c/mask/two_masks.png".to_string(), "c/mask/twox_mask.png".to_string()]);
}
