//! Everything a manifest names stays inside --raw: paths that leave it are refused before
//! anything is read, links that leave it are reported and not read, and a source that matches
//! nothing stops the ingest instead of publishing an empty version.
mod common;
use common::*;
use std::os::unix::fs::symlink;

/// A manifest up to its first source's patterns; CSV_SOURCE's `CSV` is replaced by a path.
const HEAD: &str = "schema = 1\nname = \"x\"\nclasses = [\"a\"]\n\n[[source]]\nsubdataset = \"sub\"\n";
const CSV_SOURCE: &str = "[source.class_csv]\nfile = \"CSV\"\nkey_column = \"file\"\ncolumn = \"label\"\n";

#[test]
fn manifest_paths_leaving_raw_are_refused_before_anything_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    png(&raw.join("v/a1.png"), "white");
    write(&tmp.path().join("secret.csv"), "TOPSECRET,label\nx,y\n");
    for (body, field) in [
        ("dir = \"/usr/share\"\ninclude = [\"**/*.png\"]\n".to_string(), "dir"),
        ("dir = \"v/../../..\"\ninclude = [\"**\"]\n".to_string(), "dir"),
        ("include = [\"../raw/v/*.png\"]\n".to_string(), "include"),
        ("include = [\"/etc/*\"]\n".to_string(), "include"),
        ("include = [\"v/*.png\"]\nexclude = [\"../*\"]\n".to_string(), "exclude"),
        (format!("include = [\"v/*.png\"]\n{}", CSV_SOURCE.replace("CSV", "../secret.csv")), "file"),
        (format!("include = [\"v/*.png\"]\n{}", CSV_SOURCE.replace("CSV", "/etc/passwd")), "file"),
        (format!("include = [\"v/*.png\"]\n{}", CSV_SOURCE.replace("class_csv", "patient.csv").replace("CSV", "/etc/passwd")), "file"),
    ] {
        let m = tmp.path().join("m.toml");
        write(&m, &format!("{HEAD}{body}"));
        let out = ingest(&m, &raw, &tmp.path().join("store"), &["--size", "16"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{body}\n{t}");
        assert!(t.contains("m.toml") && t.contains("source #1 (sub)") && t.contains(&format!("`{field}`")), "{body}\n{t}");
        assert!(t.contains("--raw"), "{body}\n{t}");
        assert!(!t.contains("root:") && !t.contains("TOPSECRET"), "echoes a file outside --raw: {t}");
        assert!(!tmp.path().join("store").exists(), "{body}");
    }
}

#[test]
fn links_leaving_raw_are_reported_and_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, outside) = (tmp.path().join("raw"), tmp.path().join("outside"));
    png(&raw.join("v/a1.png"), "white");
    png(&outside.join("b_secret.png"), "red");
    symlink(outside.join("b_secret.png"), raw.join("v/b_out.png")).unwrap();
    symlink(&outside, raw.join("v/outdir")).unwrap();
    // Not read either, but no pattern takes it: not reported.
    symlink(outside.join("b_secret.png"), raw.join("v/b_out.txt")).unwrap();
    symlink(outside.join("b_secret.png"), raw.join("listed.png")).unwrap();
    // A link that stays inside --raw is followed.
    symlink(raw.join("v/a1.png"), raw.join("v/a_inside.png")).unwrap();
    let m = tmp.path().join("m.toml");
    manifest(&m, "links", &["v/**/*.png"], &["listed.png"]);
    let store = tmp.path().join("store");
    let out = ingest(&m, &raw, &store, &["--size", "16", "--json"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    for link in ["b_out.png", "outdir", "listed.png"] {
        assert!(
            problems.iter().any(|p| p["path"].as_str().unwrap().ends_with(link)
                && p["reason"].as_str().unwrap().contains(outside.to_str().unwrap())
                && p["reason"].as_str().unwrap().contains("outside --raw")),
            "{link}: {t}"
        );
    }
    assert_eq!(problems.len(), 3, "{t}");
    let (videos, _) = tables(&newest(&store));
    let paths: Vec<&str> = videos.iter().map(|v| v.source_path.as_str()).collect();
    assert_eq!(paths, vec!["v/a1.png", "v/a_inside.png"]);
}

#[test]
fn a_metadata_csv_linked_from_outside_raw_is_refused_without_showing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    png(&raw.join("a1.png"), "white");
    write(&tmp.path().join("secret.csv"), "TOPSECRET,password\nx,y\n");
    symlink(tmp.path().join("secret.csv"), raw.join("meta.csv")).unwrap();
    let m = tmp.path().join("m.toml");
    write(&m, &format!("{HEAD}include = [\"*.png\"]\n{}", CSV_SOURCE.replace("CSV", "meta.csv")));
    let out = ingest(&m, &raw, &tmp.path().join("store"), &["--size", "16"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("meta.csv") && t.contains("outside --raw"), "{t}");
    assert!(!t.contains("TOPSECRET"), "{t}");
}

#[test]
fn a_source_that_matches_nothing_stops_the_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    png(&raw.join("v/a1.png"), "white");
    let m = tmp.path().join("m.toml");
    // A typo in the folder name: nothing matches.
    manifest(&m, "typo", &["V/*.png"], &[]);
    let store = tmp.path().join("store");
    let out = ingest(&m, &raw, &store, &["--size", "16"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    for needle in ["m.toml", "source #1 (synthetic)", "V/*.png", "matches no file", raw.to_str().unwrap()] {
        assert!(t.contains(needle), "{needle}: {t}");
    }
    assert!(!store.join("typo").exists(), "no empty version: {t}");

    // Listed files that are all missing still make a version that reports them (exit 1).
    manifest(&m, "typo", &[], &["v/gone.png"]);
    let out = ingest(&m, &raw, &store, &["--size", "16"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (videos, _) = tables(&newest(&store));
    assert_eq!(videos.iter().map(|v| v.status.as_str()).collect::<Vec<_>>(), vec!["missing"]);
}
