//! On the real corpora in ../shared/datasets (skipped, with a message, where they are absent):
//! every file decodes, frames kept per video equal what sampling by timestamp predicts from an
//! independent decoder run (ffprobe), the four absent POCUS files are reported, the store
//! verifies, and a second ingest gives the same version id.
mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use usctl::ingest::resample::{kept_indices, Rational};

/// (time base, best-effort timestamps of every decoded frame) of the best video stream. A frame
/// without any timestamp gets the previous one plus one frame period (1 / average frame rate),
/// the fallback docs/store-format.md documents for the decoder.
fn probe(path: &Path) -> (Rational, Vec<i64>) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=time_base,avg_frame_rate:frame=best_effort_timestamp", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is installed by `make setup`");
    let text = String::from_utf8_lossy(&out.stdout);
    let ratio = |s: &str| s.split_once('/').and_then(|(n, d)| Rational::new(n.parse().ok()?, d.parse().ok()?));
    let (mut tb, mut rate) = (None, None);
    let mut raw: Vec<Option<i64>> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').filter(|f| !f.is_empty()).collect();
        match fields.as_slice() {
            ["N/A"] => raw.push(None),
            [one] if !one.contains('/') => raw.push(Some(one.parse().unwrap_or_else(|e| panic!("{line}: {e}")))),
            // ffprobe prints its own field order: avg_frame_rate, then time_base.
            [r, t] => (tb, rate) = (ratio(t), ratio(r)),
            [t] => tb = ratio(t),
            _ => panic!("unexpected ffprobe line for {}: {line}", path.display()),
        }
    }
    let tb = tb.unwrap_or_else(|| panic!("no time base for {}", path.display()));
    let step = rate.map_or(1, |r| ((tb.den as i128 * r.den as i128) / (tb.num as i128 * r.num as i128)).max(1) as i64);
    let mut last: Option<i64> = None;
    let pts = raw
        .into_iter()
        .map(|p| {
            let p = p.or_else(|| last.map(|l| l + step)).unwrap_or(0);
            last = Some(p);
            p
        })
        .collect();
    (tb, pts)
}

fn check_corpus(name: &str, expect_missing: &[&str], then: impl FnOnce(&Path)) -> Option<(usize, usize)> {
    let Some(datasets) = shared_datasets() else {
        eprintln!("real_data: ../shared/datasets is absent; {name} not checked");
        return None;
    };
    let raw = datasets.join(name);
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dataset_manifests/{name}.toml"));
    let out = run(usctl().args(["ingest", "--json", "--size", "64", "--manifest"]).arg(&manifest).arg("--raw").arg(&raw).arg("--store").arg(&store));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(out.status.code(), Some(if expect_missing.is_empty() { 0 } else { 1 }), "{}", text(&out));
    let v = newest(&store);
    let (videos, frames) = tables(&v);

    let missing: Vec<&str> = videos.iter().filter(|r| r.status == "missing").map(|r| r.source_path.as_str()).collect();
    let mut want: Vec<&str> = expect_missing.to_vec();
    want.sort();
    assert_eq!(missing, want);
    let problems = report["problems"].as_array().unwrap();
    for m in expect_missing {
        assert!(problems.iter().any(|p| p["path"].as_str().unwrap().ends_with(m)), "{m} not reported");
    }
    let not_ok: Vec<_> = videos.iter().filter(|r| r.status != "ok" && r.status != "missing").map(|r| (&r.source_path, &r.message)).collect();
    assert!(not_ok.is_empty(), "{not_ok:#?}");

    // Every video against an independent ffprobe decode, two at a time.
    let fps = Rational::new(3, 1).unwrap();
    let present: Vec<_> = videos.iter().filter(|r| r.status == "ok").collect();
    let mismatches = std::sync::Mutex::new(Vec::new());
    let chunks: Vec<_> = present.chunks(present.len().div_ceil(2).max(1)).collect();
    std::thread::scope(|s| {
        for chunk in &chunks {
            let (frames, mismatches, raw) = (&frames, &mismatches, &raw);
            s.spawn(move || {
                for r in chunk.iter() {
                    let stored: Vec<i64> = frames.iter().filter(|f| f.video_id == r.video_id).map(|f| f.source_index).collect();
                    let expected: Vec<i64> = if r.kind == "image" {
                        vec![0]
                    } else {
                        let (tb, pts) = probe(&raw.join(&r.source_path));
                        if pts.len() as i64 != r.frames_decoded {
                            mismatches.lock().unwrap().push(format!("{}: decoded {} frames, ffprobe {}", r.source_path, r.frames_decoded, pts.len()));
                        }
                        kept_indices(&pts, fps, tb).into_iter().map(|i| i as i64).collect()
                    };
                    if stored != expected {
                        mismatches.lock().unwrap().push(format!("{}: kept {stored:?}, predicted {expected:?}", r.source_path));
                    }
                }
            });
        }
    });
    let mismatches = mismatches.into_inner().unwrap();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    assert!(usctl::store::verify::verify(&v).unwrap().is_ok());
    let again = run(usctl().args(["ingest", "--json", "--size", "64", "--manifest"]).arg(&manifest).arg("--raw").arg(&raw).arg("--store").arg(&store));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["reused"], true);
    assert_eq!(again["version_id"], report["version_id"]);
    eprintln!("real_data: {name}: {} files, {} frames kept, all as predicted", videos.len(), frames.len());
    then(&store);
    Some((videos.len(), present.len()))
}

#[test]
fn covid_blues_all_362_videos() {
    let pretrain = |store: &Path| {
        // One short epoch of USCL on the real store: every video takes part, and labels and
        // patients come from the manifest (severity classes, patient ids from file names).
        let dir = tempfile::tempdir().unwrap();
        let out = run(usctl().args(["train", "--json", "--epochs", "1", "--image-size", "32", "--store"]).arg(store).arg("--out").arg(dir.path().join("run")));
        assert!(out.status.success(), "{}", text(&out));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(s["train_videos"].as_u64().unwrap() + s["val_videos"].as_u64().unwrap(), 362);
        assert!((60..=90).contains(&s["val_videos"].as_u64().unwrap()), "about 20 % held out by patient: {s}");
        assert_eq!(s["labelled_videos"], 3, "1 % of the ~290 labelled training videos");
        assert!(s["last_train_loss"].as_f64().unwrap().is_finite() && s["best_val_nt_xent"].as_f64().unwrap().is_finite());
    };
    if let Some(counts) = check_corpus("covid-blues", &[], pretrain) {
        assert_eq!(counts, (362, 362));
    }
}

#[test]
fn pocus_all_present_files_and_the_four_absent_ones() {
    let counts = check_corpus(
        "pocus",
        &[
            "pocus_videos/convex/Cov_denault_proposedUS_vid2.mov",
            "pocus_videos/convex/Cov_emdocs_vid1.gif",
            "pocus_videos/convex/Cov_emdocs_vid3.gif",
            "pocus_videos/linear/Cov_emdocs_vid2.gif",
        ],
        evaluate_pocus,
    );
    if let Some(counts) = counts {
        assert_eq!(counts, (167, 163));
    }
}

/// A short linear evaluation of a random backbone on the real POCUS store: the default classes
/// (COVID-19, bacterial pneumonia, healthy), 5 folds that never split a patient or a duplicate
/// cluster, a report that beats chance.
fn evaluate_pocus(store: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("eval");
    let out = run(usctl()
        .args([
            "eval",
            "--json",
            "--init",
            "random",
            "--protocol",
            "linear",
            "--seeds",
            "1",
            "--epochs",
            "5",
            "--image-size",
            "32",
            "--augment",
            "off",
            "--store",
        ])
        .arg(store)
        .arg("--out")
        .arg(&out_dir));
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["classes"], serde_json::json!(["covid-19", "bacterial-pneumonia", "healthy"]));
    let (videos, _) = tables(&newest(store));
    let kept: Vec<_> = videos
        .iter()
        .filter(|v| v.frames_kept > 0 && ["covid-19", "bacterial-pneumonia", "healthy"].contains(&v.class_name.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(r["videos"].as_u64().unwrap() as usize, kept.len());
    assert_eq!(r["frames"].as_u64().unwrap() as i64, kept.iter().map(|v| v.frames_kept).sum::<i64>());
    let folds: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("folds.json")).unwrap()).unwrap();
    let mut fold_of = std::collections::HashMap::new();
    for (item, fold) in folds["items"].as_array().unwrap().iter().zip(folds["fold"].as_array().unwrap()) {
        let group = item["patient"].as_str().map_or_else(|| format!("video:{}", item["video"]), |p| format!("patient:{p}"));
        assert_eq!(*fold_of.entry(group.clone()).or_insert(fold.clone()), *fold, "{group} in two folds");
        if let Some(c) = item["cluster"].as_u64() {
            assert_eq!(*fold_of.entry(format!("cluster:{c}")).or_insert(fold.clone()), *fold, "duplicate cluster {c} in two folds");
        }
    }
    assert_eq!(r["runs"].as_array().unwrap().len(), 5);
    let balanced = r["frame"]["balanced_accuracy"]["mean"].as_f64().unwrap();
    assert!(balanced > 0.4, "balanced accuracy {balanced} is no better than chance (1/3)");
    eprintln!("real_data: pocus: random init, linear, 5 folds: frame accuracy {}, balanced {balanced:.3}", r["frame"]["accuracy"]["mean"]);
}

/// `usctl audit` on the real BUSI images at the default 256 px: the byte-identical pair filed
/// under two classes, and the duplicate clusters a published audit counts (about 19 % of the
/// images are extra copies; docs/AUDIT.md has the full figures).
#[test]
fn busi_audit_finds_its_duplicates_and_label_conflicts() {
    let Some(datasets) = shared_datasets() else {
        eprintln!("real_data: ../shared/datasets is absent; BUSI audit not checked");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataset_manifests/busi.toml");
    assert_eq!(ingest(&manifest, &datasets.join("busi"), &store, &[]).status.code(), Some(0));
    let out_dir = tmp.path().join("audit");
    let out = run(usctl().args(["audit", "--json", "--store"]).arg(store.join("busi")).arg("--out").arg(&out_dir));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let exact: Vec<(&str, &str)> =
        r["findings"]["exact"].as_array().unwrap().iter().map(|p| (p["a"]["source_path"].as_str().unwrap(), p["b"]["source_path"].as_str().unwrap())).collect();
    assert_eq!(exact, vec![("benign/images/benign (433).png", "malignant/images/malignant (145).png")]);
    let (clusters, joined) = (r["counts"]["clusters"].as_u64().unwrap(), r["counts"]["videos_in_clusters"].as_u64().unwrap());
    let extra = (joined - clusters) as f64 / 780.0;
    assert!((0.15..0.25).contains(&extra), "{clusters} clusters joining {joined} images: {:.1} % extra copies", 100.0 * extra);
    assert!(r["counts"]["label_conflicts"].as_u64().unwrap() >= 5, "{}", r["counts"]);
    assert_eq!(r["sheets"].as_array().unwrap().len() as u64, clusters);
}

/// BUSI's lesion masks (`[source.masks]` in dataset_manifests/busi.toml) at the default 256 px.
/// Measured 2026-11-30 on ../shared/datasets/busi: 798 mask files for the 780 images, 17 images
/// with more than one (at most 3); the 133 normal images have one all-black mask each (annotated,
/// no lesion), so 798 − 133 = 665 instances (454 benign, 211 malignant); no lesion vanishes at
/// 256 px and every box lies inside its image's letterboxed area.
#[test]
fn busi_masks_are_stored_one_instance_per_mask_file() {
    let Some(datasets) = shared_datasets() else {
        eprintln!("real_data: ../shared/datasets is absent; BUSI masks not checked");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataset_manifests/busi.toml");
    let out = ingest(&manifest, &datasets.join("busi"), &store, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = newest(&store);
    let s = usctl::store::reader::Store::open(&v).unwrap();
    assert_eq!((s.masks.len(), s.instance_count()), (798, 665));
    let mut per_class = std::collections::BTreeMap::new();
    let mut several = 0;
    for video in &s.videos {
        let row = video.first_frame_row as usize;
        let files = s.masks.iter().filter(|m| m.frame_row == row as i64).count();
        several += usize::from(files > 1);
        let instances = s.masks_of(row).expect("every BUSI image is annotated");
        let class = video.class_name.clone().unwrap();
        *per_class.entry(class.clone()).or_insert(0) += instances.len();
        if class == "normal" {
            assert_eq!((files, instances.len()), (1, 0), "{}", video.source_path);
        }
        let (w, h) = usctl::ingest::geometry::fit(video.width.unwrap() as u32, video.height.unwrap() as u32, 256);
        let (x0, y0) = ((256 - w as i32) / 2, (256 - h as i32) / 2);
        for i in &instances {
            let [x, y, bw, bh] = i.bbox();
            assert!(x >= x0 && y >= y0 && x + bw <= x0 + w as i32 && y + bh <= y0 + h as i32, "{}: {:?}", i.row.source_path, i.bbox());
        }
    }
    assert_eq!(several, 17);
    assert_eq!(per_class.into_iter().collect::<Vec<_>>(), vec![("benign".to_string(), 454), ("malignant".to_string(), 211), ("normal".to_string(), 0)]);
    assert!(s.masks.iter().all(|m| (m.source_pixels > 0) == (m.pixels > 0)), "a lesion vanished at 256 px");
    assert!(usctl::store::verify::verify(&v).unwrap().is_ok());
}

/// The pins committed in dataset_manifests/ match the copies in ../shared/datasets (`usctl
/// manifest pin --check`): a manifest edited without pinning again, or a changed copy, fails here.
#[test]
fn committed_pins_match_the_shared_copies() {
    let Some(datasets) = shared_datasets() else {
        eprintln!("real_data: ../shared/datasets is absent; pins not checked");
        return;
    };
    for (name, raw) in [("covid-blues", "covid-blues"), ("pocus", "pocus"), ("busi", "busi"), ("us4-open", "")] {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dataset_manifests/{name}.toml"));
        let out = run(usctl().args(["manifest", "pin", "--check", "--manifest"]).arg(&manifest).arg("--raw").arg(datasets.join(raw)));
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
    }
}
