//! `usctl diff` between two versions of one dataset made here: one file re-labelled (renamed from
//! a… to b…), one replaced by other bytes, one removed, one added; and a version against itself.
mod common;
use common::*;
use serde_json::Value;

#[test]
fn diff_names_what_changed_between_two_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, store, m) = (tmp.path().join("raw"), tmp.path().join("store"), tmp.path().join("m.toml"));
    for (name, colour) in [("a1.png", "red"), ("a2.png", "green"), ("b3.png", "blue"), ("b4.png", "white")] {
        png(&raw.join(name), colour);
    }
    manifest(&m, "d", &["*.png"], &[]);
    assert_eq!(ingest(&m, &raw, &store, &[]).status.code(), Some(0));
    let first = newest(&store.join("d"));
    // a1 → b1 (class a → b is a rename here: the path changes too, so it is removed + added);
    // a2 gets other pixels; b4 goes; b5 comes.
    std::fs::rename(raw.join("a1.png"), raw.join("b1.png")).unwrap();
    png(&raw.join("a2.png"), "yellow");
    std::fs::remove_file(raw.join("b4.png")).unwrap();
    png(&raw.join("b5.png"), "gray");
    assert_eq!(ingest(&m, &raw, &store, &[]).status.code(), Some(0));
    let second = newest(&store.join("d"));
    assert_ne!(first, second);

    let out = run(usctl().arg("diff").arg(&first).arg(&second).arg("--json"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["version"], serde_json::json!([]));
    assert_eq!(d["added"], serde_json::json!(["b1.png", "b5.png"]));
    assert_eq!(d["removed"], serde_json::json!(["a1.png", "b4.png"]));
    let changed = d["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["source_path"], "a2.png");
    // Other bytes (and here another file size, which depends on the colour) and other pixels;
    // same class, patient, frame count and status.
    let fields: Vec<&str> = changed[0]["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).filter(|f| *f != "source_bytes").collect();
    assert_eq!(fields, vec!["source_sha256", "payload_sha256"], "{changed:?}");

    // Re-labelling in place: the manifest now calls every file b.
    let m2 = tmp.path().join("m2.toml");
    write(&m2, &std::fs::read_to_string(&m).unwrap().replace("prefix = \"a\"\nclass = \"a\"", "prefix = \"a\"\nclass = \"b\""));
    assert_eq!(ingest(&m2, &raw, &store, &[]).status.code(), Some(0));
    let third = newest(&store.join("d"));
    let out = run(usctl().arg("diff").arg(&second).arg(&third));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("1 changed (1 re-labelled)") && text(&out).contains("changed  a2.png: class a → b"), "{}", text(&out));

    // A version against itself, and a dataset folder meaning its newest version.
    let out = run(usctl().arg("diff").arg(&third).arg(store.join("d")));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).ends_with("identical\n"), "{}", text(&out));
    // Another size: a version-level difference.
    assert_eq!(ingest(&m2, &raw, &store, &["--size", "32"]).status.code(), Some(0));
    let out = run(usctl().arg("diff").arg(&third).arg(store.join("d")));
    assert!(text(&out).contains("version  size: 256 → 32"), "{}", text(&out));
}
