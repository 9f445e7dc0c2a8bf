//! `make us4` as it runs (scripts/us4.sh with this build's usctl): a RAW holding only a small
//! Butterfly builds that sub-dataset of us4 and us4-open and reports the others as absent (exit
//! 0); a RAW holding nothing fails saying so. And `ingest --skip-absent-sources` itself.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output};

/// Three 2-second clips at 15 fps (30 frames each, 6 kept at --fps 3), each of its own colour:
/// one in butterfly/regular, two in butterfly/covid-19.
fn butterfly(raw: &Path) {
    for (i, rel) in ["regular/r0.mp4", "covid-19/c0.mp4", "covid-19/c1.mp4"].iter().enumerate() {
        let path = raw.join("butterfly").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let src = format!("testsrc2=size=64x48:rate=15,trim=end_frame=30,hue=h={}", i * 90);
        ffmpeg(&["-f", "lavfi", "-i", &src, "-c:v", "libx264", "-pix_fmt", "yuv420p", path.to_str().unwrap()]);
    }
}

fn make_us4(raw: &Path, store: &Path) -> Output {
    let root = env!("CARGO_MANIFEST_DIR");
    Command::new("bash")
        .arg(Path::new(root).join("scripts/us4.sh"))
        .arg(raw)
        .arg(store)
        .current_dir(root)
        .env("USCTL_BIN", env!("CARGO_BIN_EXE_usctl"))
        .output()
        .expect("bash runs")
}

#[test]
fn make_us4_builds_what_is_present_and_reports_the_rest_absent() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, store) = (dir.path().join("raw"), dir.path().join("store"));
    butterfly(&raw);
    let out = make_us4(&raw, &store);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // Butterfly against Table 1 (22 videos, 1,533 images), per class, in both manifests.
    let built = "built   butterfly                3 videos      18 frames   expected 22 videos (-19), 1533 frames (-1515)";
    assert_eq!(t.matches(built).count(), 2, "{t}");
    assert_eq!(t.matches("            regular                1 videos       6 frames").count(), 2, "{t}");
    assert_eq!(t.matches("            covid-19               2 videos      12 frames").count(), 2, "{t}");
    for (sub, expected) in [
        ("clust", "63 videos, 3150 frames"),
        ("liver-fibrosis", "296 videos, 11714 frames"),
        ("covid19-lusms", "670 videos, 6834 frames"),
        ("covid-blues", "362 videos"),
    ] {
        let line = format!("absent  {sub:<20} no folder {}: absent (not an error); expected {expected}", raw.join(sub).display());
        assert!(t.contains(&line), "{line}\n{t}");
    }
    assert!(!t.contains("absent  butterfly"), "{t}");
    // us4-open is pinned (its COVID-BLUES files); the Butterfly clips have no pin: listed, not
    // refused, and the absent COVID-BLUES's pins are not problems.
    assert!(t.contains("pins    3 files have no pin (pin them: usctl manifest pin): butterfly/covid-19/c0.mp4"), "{t}");
    assert!(!t.contains("pinned in the manifest but not found"), "{t}");
    // Two stores, each with the three clips under their classes.
    for name in ["us4", "us4-open"] {
        let (videos, _) = tables(&usctl::store::locate(&store.join(name), None, None).unwrap());
        let rows: Vec<(&str, &str, Option<&str>, i64)> =
            videos.iter().map(|v| (v.subdataset.as_str(), v.source_path.as_str(), v.class_name.as_deref(), v.frames_kept)).collect();
        assert_eq!(
            rows,
            vec![
                ("butterfly", "butterfly/covid-19/c0.mp4", Some("covid-19"), 6),
                ("butterfly", "butterfly/covid-19/c1.mp4", Some("covid-19"), 6),
                ("butterfly", "butterfly/regular/r0.mp4", Some("regular"), 6),
            ],
            "{name}"
        );
    }
}

#[test]
fn make_us4_with_nothing_under_raw_fails_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, store) = (dir.path().join("raw"), dir.path().join("store"));
    std::fs::create_dir_all(&raw).unwrap();
    let out = make_us4(&raw, &store);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&format!("us4: nothing built: no sub-dataset folder of dataset_manifests/us4.toml or us4-open.toml is under {}", raw.display())), "{t}");
    for sub in ["butterfly", "clust", "liver-fibrosis", "covid19-lusms", "covid-blues"] {
        assert!(t.contains(&format!("absent  {sub:<20} no folder {}", raw.join(sub).display())), "{sub}\n{t}");
    }
    assert!(!store.exists(), "nothing is written");
}

#[test]
fn ingest_skip_absent_sources_reports_them_in_json_and_stops_when_all_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    butterfly(&raw);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataset_manifests/us4.toml");
    let store = dir.path().join("store");
    // Without the flag the first absent sub-dataset stops the ingest, as before.
    let out = ingest(&manifest, &raw, &store, &["--size", "16"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("source #2 (clust) matches no file"), "{}", text(&out));

    let out = ingest(&manifest, &raw, &store, &["--size", "16", "--skip-absent-sources", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let absent: Vec<(&str, &str)> =
        report["absent"].as_array().unwrap().iter().map(|a| (a["subdataset"].as_str().unwrap(), a["dir"].as_str().unwrap())).collect();
    assert_eq!(absent, [("clust", "clust"), ("liver-fibrosis", "liver-fibrosis"), ("covid19-lusms", "covid19-lusms")]);
    let e = &report["expectations"][0];
    assert_eq!((e["subdataset"].as_str(), e["videos"]["found"].as_u64(), e["frames"]["expected"].as_u64()), (Some("butterfly"), Some(3), Some(1533)));
    assert_eq!(report["subdatasets"][0]["total"]["frames"].as_u64(), Some(18));

    // Nothing of any source there: a clear error, exit 2.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = ingest(&manifest, &empty, &store, &["--skip-absent-sources"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("every source is absent under") && text(&out).contains("covid19-lusms: no folder"), "{}", text(&out));
}
