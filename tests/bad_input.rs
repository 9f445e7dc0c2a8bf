//! Bad input: each bad file or folder is reported with its path and reason, the good files are
//! still ingested, the exit code says something was skipped, earlier versions stay intact, and
//! nothing is written outside --store.
mod common;
use common::*;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Root reads any folder whatever its mode, so an unreadable folder is only unreadable to an
/// unprivileged user: run usctl as `nobody` then (setpriv, util-linux).
fn usctl_unprivileged() -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(env!("CARGO_BIN_EXE_usctl"));
        c
    } else {
        usctl()
    }
}

fn open_up(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        let mode = if e.file_type().is_dir() { 0o777 } else { 0o666 };
        if !e.path_is_symlink() {
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode));
        }
    }
}

#[test]
fn bad_files_are_reported_and_skipped_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let raw = root.join("raw");
    let v = raw.join("v");
    std::fs::create_dir_all(&v).unwrap();
    let p = |name: &str| v.join(name).display().to_string();
    ffmpeg(&["-f", "lavfi", "-i", &testsrc(64, 48, 25, 50), "-c:v", "libx264", "-pix_fmt", "yuv420p", &p("good.mp4")]);
    // The same clip with its index at the front, then cut in half: frames are lost, not all.
    ffmpeg(&["-f", "lavfi", "-i", &testsrc(160, 120, 25, 200), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", &p("full_faststart.mp4")]);
    let full = std::fs::read(p("full_faststart.mp4")).unwrap();
    std::fs::write(p("truncated.mp4"), &full[..full.len() / 2]).unwrap();
    std::fs::remove_file(p("full_faststart.mp4")).unwrap();
    // Cut before its index (written at the end by default): nothing can be read.
    let good = std::fs::read(p("good.mp4")).unwrap();
    std::fs::write(p("truncated_noindex.mp4"), &good[..good.len() / 3]).unwrap();
    std::fs::write(p("empty.mp4"), b"").unwrap();
    std::fs::write(p("notes.mp4"), "this is a text file, renamed\n".repeat(50)).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", &p("audio_only.mp4")]);
    // A folder whose link points back at an ancestor, and a folder nobody may read.
    std::fs::create_dir_all(v.join("loop")).unwrap();
    symlink("..", v.join("loop/back")).unwrap();
    std::fs::create_dir_all(v.join("locked")).unwrap();
    std::fs::copy(p("good.mp4"), v.join("locked/hidden.mp4")).unwrap();

    let m = root.join("m.toml");
    manifest(&m, "bad", &["v/**/*.mp4"], &["v/listed_but_absent.mp4"]);
    let store = root.join("store");
    std::fs::create_dir_all(&store).unwrap();
    open_up(root);
    std::fs::set_permissions(v.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();

    // An earlier version (good file only) that the bad run must not touch.
    let m_good = root.join("m_good.toml");
    manifest(&m_good, "bad", &[], &["v/good.mp4"]);
    open_up(&store);
    let first =
        run(usctl_unprivileged().args(["ingest", "--quiet", "--size", "24", "--manifest"]).arg(&m_good).arg("--raw").arg(&raw).arg("--store").arg(&store));
    assert!(first.status.success(), "{}", text(&first));
    let earlier = newest(&store);
    let earlier_bytes = snapshot(&earlier);
    let raw_before = snapshot(&raw);
    let root_before: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();

    let out =
        run(usctl_unprivileged().args(["ingest", "--size", "24", "--manifest"]).arg(&m).arg("--raw").arg(&raw).arg("--store").arg(&store).current_dir(root));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for (file, reason) in [
        ("empty.mp4", "empty"),
        ("notes.mp4", "not a video"),
        ("audio_only.mp4", "no video stream"),
        ("truncated_noindex.mp4", "not a video"),
        ("truncated.mp4", "partial"),
        ("listed_but_absent.mp4", "not found"),
        ("loop", "link loop"),
    ] {
        assert!(t.lines().any(|l| l.contains(file) && l.contains(reason)), "no '{reason}' report for {file}:\n{t}");
    }
    if is_root() && Path::new("/usr/bin/setpriv").exists() || !is_root() {
        assert!(t.lines().any(|l| l.contains("locked") && l.contains("Permission denied")), "{t}");
    }

    let new = newest(&store);
    assert_ne!(new, earlier);
    let (videos, _) = tables(&new);
    let status = |f: &str| videos.iter().find(|r| r.source_path.ends_with(f)).map(|r| (r.status.clone(), r.frames_kept));
    assert_eq!(status("good.mp4"), Some(("ok".into(), 6)));
    assert_eq!(status("truncated.mp4").map(|s| s.0), Some("partial".into()));
    assert!(status("truncated.mp4").unwrap().1 > 0);
    for f in ["empty.mp4", "notes.mp4", "audio_only.mp4", "truncated_noindex.mp4"] {
        assert_eq!(status(f), Some(("failed".into(), 0)), "{f}");
    }
    assert_eq!(status("listed_but_absent.mp4"), Some(("missing".into(), 0)));
    assert!(usctl::store::verify::verify(&new).unwrap().is_ok());

    // Nothing lost or written elsewhere.
    assert_eq!(snapshot(&earlier), earlier_bytes);
    assert_eq!(snapshot(&raw), raw_before);
    let root_after: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(root_after, root_before);
    let leftovers: Vec<_> =
        std::fs::read_dir(store.join("bad")).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::set_permissions(v.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn fatal_errors_name_the_file_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m.toml");
    write(&m, "schema = 1\nname = \"x\"\nclases = []\n");
    let out = ingest(&m, tmp.path(), &tmp.path().join("s"), &[]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("m.toml") && t.contains("clases"), "{t}");

    let out = ingest(&tmp.path().join("absent.toml"), tmp.path(), &tmp.path().join("s"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("absent.toml"));
    assert_eq!(text(&out).matches("No such file").count(), 1, "the OS error is said once: {}", text(&out));

    manifest(&m, "x", &["*.mp4"], &[]);
    let out = ingest(&m, &tmp.path().join("no_such_raw"), &tmp.path().join("s"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no_such_raw") && text(&out).contains("--raw"));

    let out = run(usctl().args(["verify", "--store"]).arg(tmp.path().join("nowhere")));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("nowhere") && text(&out).contains("usctl ingest"), "{}", text(&out));
    assert!(!tmp.path().join("s").exists(), "a failed start must not create the store");
}

#[test]
fn same_bytes_under_two_names_are_noted_with_both_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    png(&raw.join("a1.png"), "white");
    png(&raw.join("a9.png"), "red");
    std::fs::copy(raw.join("a1.png"), raw.join("b1.png")).unwrap();
    std::fs::copy(raw.join("a1.png"), raw.join("a2.png")).unwrap();
    let m = tmp.path().join("m.toml");
    manifest(&m, "dup", &["*.png"], &[]);
    let store = tmp.path().join("store");
    let out = run(usctl().args(["ingest", "--json", "--size", "16", "--manifest"]).arg(&m).arg("--raw").arg(&raw).arg("--store").arg(&store));
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes: Vec<(String, String)> =
        report["notes"].as_array().unwrap().iter().map(|n| (n["path"].as_str().unwrap().to_string(), n["reason"].as_str().unwrap().to_string())).collect();
    let about = |f: &str| notes.iter().filter(|(p, r)| p == f || r.contains(f)).cloned().collect::<Vec<_>>();
    let conflict: Vec<_> = about("b1.png");
    assert_eq!(conflict.len(), 1, "{notes:?}");
    let line = format!("{} {}", conflict[0].0, conflict[0].1);
    assert!(line.contains("a1.png") && line.contains("'a'") && line.contains("'b'") && line.contains("different classes"), "{line}");
    let same: Vec<_> = about("a2.png");
    assert_eq!(same.len(), 1, "{notes:?}");
    assert!(same[0].1.contains("a1.png") && same[0].1.contains("same class"), "{same:?}");
    assert!(about("a9.png").is_empty(), "{notes:?}");

    // On the terminal too, conflicts first.
    let out = run(usctl().args(["ingest", "--size", "16", "--manifest"]).arg(&m).arg("--raw").arg(&raw).arg("--store").arg(&store));
    let t = text(&out);
    assert!(t.lines().any(|l| l.contains("b1.png") && l.contains("a1.png") && l.contains("different classes")), "{t}");
}

#[test]
fn a_file_name_that_is_not_utf8_is_reported_and_the_others_are_ingested() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    png(&raw.join("v/a1.png"), "white");
    let odd = raw.join("v").join(std::ffi::OsStr::from_bytes(b"a\xff2.png"));
    std::fs::copy(raw.join("v/a1.png"), &odd).unwrap();
    std::fs::write(raw.join("v").join(std::ffi::OsStr::from_bytes(b"b\xfe.txt")), b"not matched").unwrap();
    let m = tmp.path().join("m.toml");
    manifest(&m, "names", &["v/*.png"], &[]);
    let store = tmp.path().join("store");
    let out = run(usctl().args(["ingest", "--size", "16", "--manifest"]).arg(&m).arg("--raw").arg(&raw).arg("--store").arg(&store));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = t.lines().find(|l| l.contains("a\\xff2.png")).unwrap_or_else(|| panic!("no report of the name:\n{t}"));
    assert!(line.contains("not valid UTF-8") && line.contains("rename"), "{line}");
    assert!(!t.contains("No such file"), "{t}");
    assert!(!t.contains("\\xfe"), "a name no pattern matches is not reported: {t}");
    let (videos, _) = tables(&newest(&store));
    assert_eq!(videos.iter().map(|v| v.source_path.as_str()).collect::<Vec<_>>(), vec!["v/a1.png"]);
}
