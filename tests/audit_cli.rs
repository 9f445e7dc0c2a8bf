//! `usctl audit` on corpora made here with the ffmpeg CLI: planted copies (byte-identical,
//! re-encoded, rescaled, cropped, brightened), a copy filed under another class, a missing, an
//! unlisted and an undecodable file; a saved split that leaks; two stores that share a video.
mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Distinct synthetic clips (3 s at 10 fps, 160×120): two cellular automata, two Mandelbrot
/// zooms, a rule-30 automaton, two gradient fields.
const CLIPS: [(&str, &str); 7] = [
    ("v1", "life=s=160x120:seed=1:rate=10:mold=10:ratio=0.3"),
    ("v2", "life=s=160x120:seed=2:rate=10:mold=10:ratio=0.3"),
    ("v3", "mandelbrot=s=160x120:rate=10:start_scale=2"),
    ("v4", "mandelbrot=s=160x120:rate=10:start_x=-0.7:start_y=0.3:start_scale=0.5"),
    ("v5", "cellauto=s=160x120:rate=10:seed=5:rule=30"),
    ("v6", "gradients=s=160x120:rate=10:seed=7:speed=0.05"),
    ("v7", "gradients=s=160x120:rate=10:seed=8:speed=0.05"),
];

fn clip(raw: &Path, rel: &str, source: &str) {
    let path = raw.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", source, "-t", "3", "-r", "10", "-c:v", "libx264", "-pix_fmt", "yuv420p", path.to_str().unwrap()]);
}

/// A copy of `from` through an ffmpeg filter (or re-encoded harder with `None`).
fn copy(raw: &Path, from: &str, to: &str, filter: Option<&str>) {
    let (src, dst) = (raw.join(from), raw.join(to));
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    let mut args = vec!["-i", src.to_str().unwrap()];
    match filter {
        Some(f) => args.extend(["-vf", f]),
        None => args.extend(["-c:v", "libx264", "-crf", "38"]),
    }
    args.push(dst.to_str().unwrap());
    ffmpeg(&args);
}

const MANIFEST: &str = r#"schema = 1
name = "syn"
classes = ["a", "b"]

[[source]]
subdataset = "syn"
include = ["*/*.mp4"]

[[source.class_rule]]
glob = "a/**"
class = "a"

[[source.class_rule]]
glob = "b/**"
class = "b"
"#;

/// Audits and returns (exit code, report.json).
fn audit(args: &[&str]) -> (i32, Value) {
    let out = run(usctl().arg("audit").args(args));
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 1, "audit failed: {}", text(&out));
    let dir = args.iter().position(|a| *a == "--out").map(|i| args[i + 1]).expect("tests give --out");
    (code, serde_json::from_slice(&std::fs::read(Path::new(dir).join("report.json")).unwrap()).unwrap())
}

fn clusters(report: &Value) -> BTreeSet<Vec<String>> {
    report["findings"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["members"].as_array().unwrap().iter().map(|m| m["source_path"].as_str().unwrap().to_string()).collect())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn planted_copies_conflicts_and_inventory_problems_are_found_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    for (name, source) in CLIPS {
        clip(&raw, &format!("a/{name}.mp4"), source);
    }
    copy(&raw, "a/v1.mp4", "a/v1_reencoded.mp4", None);
    copy(&raw, "a/v2.mp4", "a/v2_small.mp4", Some("scale=96:72"));
    copy(&raw, "a/v3.mp4", "a/v3_cropped.mp4", Some("crop=iw*0.94:ih*0.94"));
    copy(&raw, "a/v4.mp4", "a/v4_brighter.mp4", Some("eq=brightness=0.06:contrast=1.1"));
    std::fs::create_dir_all(raw.join("b")).unwrap();
    std::fs::copy(raw.join("a/v5.mp4"), raw.join("b/v5_as_b.mp4")).unwrap();
    std::fs::write(raw.join("a/broken.mp4"), [7u8; 4000]).unwrap();
    std::fs::write(raw.join("a/notes.txt"), "not a video").unwrap();
    let manifest = tmp.path().join("syn.toml");
    write(&manifest, &format!("{MANIFEST}\n[[source]]\nsubdataset = \"syn\"\nfiles = [\"c/missing.mp4\"]\n"));
    let store = tmp.path().join("store");
    assert_eq!(ingest(&manifest, &raw, &store, &[]).status.code(), Some(1), "two files are skipped");
    let out = tmp.path().join("audit");
    let (m, r, o) = (manifest.to_str().unwrap(), raw.to_str().unwrap(), out.to_str().unwrap());
    let (code, report) = audit(&["--store", store.join("syn").to_str().unwrap(), "--manifest", m, "--raw", r, "--out", o]);
    assert_eq!(code, 1);
    let want: BTreeSet<Vec<String>> = [
        ["a/v1.mp4", "a/v1_reencoded.mp4"],
        ["a/v2.mp4", "a/v2_small.mp4"],
        ["a/v3.mp4", "a/v3_cropped.mp4"],
        ["a/v4.mp4", "a/v4_brighter.mp4"],
        ["a/v5.mp4", "b/v5_as_b.mp4"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(clusters(&report), want);
    // The byte-identical copy is an exact link; the other four are near ones.
    let exact = &report["findings"]["exact"];
    assert_eq!(exact.as_array().unwrap().len(), 1);
    assert_eq!((exact[0]["why"].as_str(), exact[0]["b"]["source_path"].as_str()), (Some("same_source"), Some("b/v5_as_b.mp4")));
    assert_eq!(report["findings"]["near"].as_array().unwrap().len(), 4);
    // One label conflict: v5 is filed as a and as b.
    let conflicts: Vec<&Value> =
        report["findings"]["clusters"].as_array().unwrap().iter().filter(|c| c["conflicting_classes"] != serde_json::json!({})).collect();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0]["conflicting_classes"]["syn"], serde_json::json!(["a", "b"]));
    // Manifest vs disk: the undecodable and the missing file in the store, the unlisted one on disk.
    let inv = &report["inventory"][0];
    let unusable: Vec<(String, String)> =
        inv["unusable"].as_array().unwrap().iter().map(|u| (u["path"].as_str().unwrap().into(), u["kind"].as_str().unwrap().into())).collect();
    assert_eq!(unusable, vec![("a/broken.mp4".to_string(), "failed".to_string()), ("c/missing.mp4".to_string(), "missing".to_string())]);
    assert_eq!(strings(&inv["disk"]["unmatched"]), vec!["a/notes.txt"]);
    assert_eq!(report["counts"]["findings"], 5 + 3);
    // One contact sheet per cluster, a PNG showing each member.
    let sheets = strings(&report["sheets"]);
    assert_eq!(sheets.len(), 5);
    for s in &sheets {
        let img = image::open(out.join(s)).unwrap();
        assert!(img.width() > 400 && img.height() > 2 * 160, "{s}: {}×{}", img.width(), img.height());
    }
    let csv = std::fs::read_to_string(out.join("clusters.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 12, "{csv}");
    assert!(csv.lines().any(|l| l.contains(",a/v5.mp4,c5,2")), "{csv}");
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("LABEL CONFLICT in syn: a vs b"));
}

#[test]
fn a_clean_corpus_exits_0_and_the_default_output_sits_beside_the_version() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    for (name, source) in CLIPS {
        clip(&raw, &format!("{}/{name}.mp4", if name < "v4" { "a" } else { "b" }), source);
    }
    let manifest = tmp.path().join("syn.toml");
    write(&manifest, MANIFEST);
    let store = tmp.path().join("store");
    assert_eq!(ingest(&manifest, &raw, &store, &[]).status.code(), Some(0));
    let version = newest(&store.join("syn"));
    let out = run(usctl().args(["audit", "--store", store.join("syn").to_str().unwrap(), "--manifest"]).arg(&manifest).arg("--raw").arg(&raw));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("duplicate clusters  0"), "{}", text(&out));
    let report = store.join("syn/audits").join(version.file_name().unwrap()).join("report.json");
    let report: Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    assert_eq!((report["format"].as_str(), report["format_version"].as_u64()), (Some("usctl-audit"), Some(1)));
    assert_eq!(report["counts"]["findings"], 0);
    // The audit folder does not disturb the store: the version still opens and verifies.
    assert_eq!(run(usctl().args(["verify", "--store", store.join("syn").to_str().unwrap()])).status.code(), Some(0));
}

#[test]
fn leakage_across_saved_folds_and_across_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, other_raw) = (tmp.path().join("raw"), tmp.path().join("other"));
    for (name, source) in &CLIPS[..4] {
        clip(&raw, &format!("a/{name}.mp4"), source);
    }
    copy(&raw, "a/v1.mp4", "b/v1_small.mp4", Some("scale=120:90"));
    // The other corpus holds v3 re-encoded and v6, which the first does not have.
    clip(&other_raw, "a/v6.mp4", CLIPS[5].1);
    copy(&raw, "a/v3.mp4", "../other/b/v3_again.mp4", None);
    let (m1, m2) = (tmp.path().join("syn.toml"), tmp.path().join("pre.toml"));
    write(&m1, MANIFEST);
    write(&m2, &MANIFEST.replace("name = \"syn\"", "name = \"pre\""));
    let store = tmp.path().join("store");
    assert_eq!(ingest(&m1, &raw, &store, &[]).status.code(), Some(0));
    assert_eq!(ingest(&m2, &other_raw, &store, &[]).status.code(), Some(0));
    // A split that puts v1 and its copy in different folds, and two videos of patient p in two.
    let folds = tmp.path().join("folds.json");
    let item = |video: &str, patient: Option<&str>, class: usize| serde_json::json!({"video": video, "patient": patient, "class": class});
    let split = serde_json::json!({"k": 2, "seed": 0, "fold": [0, 1, 0, 1, 1],
        "items": [item("a/v1.mp4", None, 0), item("b/v1_small.mp4", None, 1), item("a/v2.mp4", Some("p"), 0), item("a/v3.mp4", Some("p"), 0), item("a/v4.mp4", None, 0)]});
    write(&folds, &split.to_string());
    let out = tmp.path().join("audit");
    let (s1, s2) = (store.join("syn"), store.join("pre"));
    let args = ["--store", s1.to_str().unwrap(), "--store", s2.to_str().unwrap(), "--folds", folds.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let (code, report) = audit(&args);
    assert_eq!(code, 1);
    let leaks: Vec<(String, usize)> = report["findings"]["fold_leaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["unit"].as_str().unwrap().into(), l["folds"].as_object().unwrap().len()))
        .collect();
    assert_eq!(leaks, vec![("cluster c1".to_string(), 2), ("patient p".to_string(), 2)]);
    let across: Vec<&Value> = report["findings"]["clusters"].as_array().unwrap().iter().filter(|c| c["datasets"].as_array().unwrap().len() > 1).collect();
    assert_eq!(across.len(), 1);
    let members: Vec<(&str, &str)> =
        across[0]["members"].as_array().unwrap().iter().map(|m| (m["dataset"].as_str().unwrap(), m["source_path"].as_str().unwrap())).collect();
    assert_eq!(members, vec![("syn", "a/v3.mp4"), ("pre", "b/v3_again.mp4")]);
    // A split made for other data is refused, naming the video it does not know.
    write(&folds, &split.to_string().replace("a/v4.mp4", "a/v9.mp4"));
    let out = run(usctl().arg("audit").args(args));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("a/v9.mp4") && text(&out).contains("give the store the split was made for"), "{}", text(&out));
    // An output folder that cannot be made: exit 2, naming it and the fix.
    let blocked = tmp.path().join("a-file");
    write(&blocked, "x");
    let out = run(usctl().args(["audit", "--store", s1.to_str().unwrap(), "--out"]).arg(blocked.join("audit")));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("a-file/audit") && text(&out).contains("give a writable --out"), "{}", text(&out));
}
