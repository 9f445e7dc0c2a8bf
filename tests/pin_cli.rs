//! `usctl manifest pin` and ingest's pin check: pinning keeps the hand-written manifest and raises
//! its schema; ingest refuses changed, unpinned and re-written metadata files (naming both digests)
//! unless `--accept-changed`, and reports pinned files that are gone.
mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

const MANIFEST: &str = "# hand-written part\nschema = 1\nname = \"d\"\nclasses = [\"a\", \"b\"]\n\n[[source]]\nsubdataset = \"s\"\ninclude = [\"*.png\"]\n\n[[source.class_rule]]\nprefix = \"a\"\nclass = \"a\"\n\n[[source.class_rule]]\nglob = \"**\"\nclass = \"b\"\n\n[source.patient.csv]\nfile = \"meta.csv\"\nkey_column = \"file\"\ncolumn = \"patient\"\n";

fn pin(m: &Path, raw: &Path, extra: &[&str]) -> std::process::Output {
    run(usctl().args(["manifest", "pin", "--manifest"]).arg(m).arg("--raw").arg(raw).args(extra))
}

fn sha(path: &Path) -> String {
    usctl::hash::sha256_file(path).unwrap().1
}

#[test]
fn pins_are_written_checked_and_enforced_by_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, store, m) = (tmp.path().join("raw"), tmp.path().join("store"), tmp.path().join("m.toml"));
    png(&raw.join("a1.png"), "red");
    png(&raw.join("b2.png"), "blue");
    write(&raw.join("meta.csv"), "file,patient\na1,p1\nb2,p2\n");
    write(&m, MANIFEST);

    // Pinning: media and metadata, the hand-written text kept, schema raised to 3.
    let out = pin(&m, &raw, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("pinned 3 files") && text(&out).contains("(schema 1 → 3)"), "{}", text(&out));
    let pinned = std::fs::read_to_string(&m).unwrap();
    assert!(pinned.starts_with(&MANIFEST.replace("schema = 1", "schema = 3")), "{pinned}");
    let manifest = usctl::manifest::Manifest::parse(pinned.as_bytes(), &m).unwrap();
    let files = manifest.pinned.unwrap().files;
    let paths: Vec<&str> = files.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["a1.png", "b2.png", "meta.csv"]);
    assert_eq!(files[0].sha256, sha(&raw.join("a1.png")));
    assert_eq!(files[2].size, 25);
    let out = pin(&m, &raw, &["--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("pins are current"));
    // Pinning again changes nothing.
    assert_eq!(pin(&m, &raw, &[]).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&m).unwrap(), pinned);

    // Pinned bytes ingest as usual and the summary says they matched.
    let out = ingest(&m, &raw, &store, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["pins"]["checked"], 3);
    assert_eq!(r["pins"]["accepted"], false);

    // Other bytes under a pinned name: refused before anything is stored, both digests named.
    let old = sha(&raw.join("b2.png"));
    png(&raw.join("b2.png"), "green");
    let new = sha(&raw.join("b2.png"));
    let versions = || std::fs::read_dir(store.join("d")).unwrap().count();
    let before = versions();
    let out = pin(&m, &raw, &["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("differ: b2.png (pinned"), "{}", text(&out));
    let out = ingest(&m, &raw, &store, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = text(&out);
    assert!(err.contains(&format!("sha256 {old}, found")) && err.contains(&format!("sha256 {new})")), "{err}");
    assert!(err.contains("1 file(s) under") && err.contains("nothing was ingested") && err.contains("--accept-changed"), "{err}");
    assert_eq!(versions(), before, "a refused ingest stores nothing");

    // Told to accept: ingested, and the report says which file.
    let out = ingest(&m, &raw, &store, &["--accept-changed", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["pins"]["changed"][0]["path"], "b2.png");
    assert_eq!(r["pins"]["changed"][0]["pinned_sha256"], old);
    assert_eq!(r["pins"]["accepted"], true);
    let out = ingest(&m, &raw, &store, &["--accept-changed"]);
    assert!(text(&out).is_empty(), "--quiet: {}", text(&out));

    // A new file without a pin is ingested and listed; an edited metadata CSV (labels depend on
    // it) is refused like a video.
    png(&raw.join("b2.png"), "blue");
    png(&raw.join("a3.png"), "white");
    let out = ingest(&m, &raw, &store, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["pins"]["unpinned"], serde_json::json!(["a3.png"]));
    let out = pin(&m, &raw, &["--check"]);
    assert!(out.status.code() == Some(1) && text(&out).contains("no pin: a3.png"), "{}", text(&out));
    std::fs::remove_file(raw.join("a3.png")).unwrap();
    write(&raw.join("meta.csv"), "file,patient\na1,p1\nb2,p1\n");
    let out = ingest(&m, &raw, &store, &[]);
    assert!(out.status.code() == Some(2) && text(&out).contains("meta.csv (pinned 25 bytes"), "{}", text(&out));
    write(&raw.join("meta.csv"), "file,patient\na1,p1\nb2,p2\n");

    // A pinned file that is gone: the rest is ingested, the file reported (exit 1).
    std::fs::remove_file(raw.join("a1.png")).unwrap();
    let out = ingest(&m, &raw, &store, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["pins"]["absent"], serde_json::json!(["a1.png"]));
    let problems = r["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["path"] == "a1.png" && p["reason"].as_str().unwrap().contains("pinned in the manifest but not found")), "{problems:?}");
}

#[test]
fn a_hand_written_pinned_table_is_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, m) = (tmp.path().join("raw"), tmp.path().join("m.toml"));
    png(&raw.join("a1.png"), "red");
    write(&raw.join("meta.csv"), "file,patient\na1,p1\n");
    let text_in = format!("{}\n[pinned]\ngenerated_by = \"me\"\nfiles = []\n", MANIFEST.replace("schema = 1", "schema = 3"));
    write(&m, &text_in);
    let out = pin(&m, &raw, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("has a [pinned] table above the line") && text(&out).contains("remove that table"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&m).unwrap(), text_in, "the manifest is untouched");
    let out = pin(&m, &raw, &["--check"]);
    assert_eq!(out.status.code(), Some(1), "an empty pin table is out of date: {}", text(&out));
    write(&m, MANIFEST);
    let out = pin(&m, &raw, &["--check"]);
    assert!(out.status.code() == Some(2) && text(&out).contains("has no [pinned] table to check"), "{}", text(&out));
}
