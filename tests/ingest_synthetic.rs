//! Ingest of small synthetic files in every supported container, with exact expected frames.
mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Makes the synthetic corpus; returns the raw folder.
fn corpus(root: &Path) -> PathBuf {
    let raw = root.join("raw");
    std::fs::create_dir_all(raw.join("stills")).unwrap();
    let p = |name: &str| raw.join(name).display().to_string();
    // H.264 in mp4, 25 fps, 50 frames (t_last = 1.96 s).
    ffmpeg(&["-f", "lavfi", "-i", &testsrc(96, 64, 25, 50), "-c:v", "libx264", "-pix_fmt", "yuv420p", &p("a_h264.mp4")]);
    // MPEG-4 part 2 in avi, 10 fps, 30 frames.
    ffmpeg(&["-f", "lavfi", "-i", &testsrc(80, 60, 10, 30), "-c:v", "mpeg4", &p("b_mpeg4.avi")]);
    // MPEG-2 program stream, 25 fps, 50 frames.
    ffmpeg(&["-f", "lavfi", "-i", &testsrc(96, 64, 25, 50), "-c:v", "mpeg2video", "-f", "mpeg", &p("b_mpeg2.mpeg")]);
    // Variable frame rate mov: 10 frames 0.1 s apart, then 40 frames 0.02 s apart.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &testsrc(64, 64, 50, 50),
        "-vf",
        "setpts='if(lt(N,10),N*0.1,1+(N-10)*0.02)/TB'",
        "-fps_mode",
        "passthrough",
        "-video_track_timescale",
        "1000",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        &p("b_vfr.mov"),
    ]);
    // GIF, 10 fps, 20 frames.
    ffmpeg(&["-f", "lavfi", "-i", &testsrc(64, 48, 10, 20), &p("b_anim.gif")]);
    // Stills: a white 64×32 png (letterbox check), a jpg and a bmp.
    ffmpeg(&["-f", "lavfi", "-i", "color=c=white:size=64x32", "-frames:v", "1", &p("stills/a_white.png")]);
    ffmpeg(&["-f", "lavfi", "-i", &testsrc(50, 70, 1, 1), "-frames:v", "1", &p("stills/b_photo.jpg")]);
    ffmpeg(&["-f", "lavfi", "-i", &testsrc(40, 40, 1, 1), "-frames:v", "1", &p("stills/b_scan.bmp")]);
    raw
}

/// The synthetic corpus under `root`, a manifest taking `include` from it, and a store path.
fn setup(root: &Path, include: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let raw = corpus(root);
    let m = root.join("m.toml");
    manifest(&m, "synthetic", include, &[]);
    (raw, m, root.join("store"))
}

#[test]
fn every_container_samples_by_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, m, store) = setup(tmp.path(), &["*.*", "stills/*"]);
    let out = ingest(&m, &raw, &store, &["--size", "32"]);
    assert!(out.status.success(), "{}", text(&out));
    let v = newest(&store);
    // First frame at or after each k/3 s, up to the last frame's start time.
    assert_eq!(kept(&v, "a_h264.mp4"), vec![0, 9, 17, 25, 34, 42]);
    assert_eq!(kept(&v, "b_mpeg2.mpeg"), vec![0, 9, 17, 25, 34, 42]);
    assert_eq!(kept(&v, "b_mpeg4.avi"), vec![0, 4, 7, 10, 14, 17, 20, 24, 27]);
    assert_eq!(kept(&v, "b_vfr.mov"), vec![0, 4, 7, 10, 27, 44]);
    assert_eq!(kept(&v, "b_anim.gif"), vec![0, 4, 7, 10, 14, 17]);
    for still in ["stills/a_white.png", "stills/b_photo.jpg", "stills/b_scan.bmp"] {
        assert_eq!(kept(&v, still), vec![0], "{still}");
    }
    let (videos, frames) = tables(&v);
    assert!(videos.iter().all(|r| r.status == "ok"), "{videos:#?}");
    let vfr = videos.iter().find(|r| r.source_path == "b_vfr.mov").unwrap();
    assert_eq!(vfr.frames_decoded, 50);
    let times: Vec<f64> = frames.iter().filter(|f| f.video_id == vfr.video_id).map(|f| f.time_s).collect();
    assert_eq!(times, vec![0.0, 0.4, 0.7, 1.0, 1.34, 1.68]);
    assert_eq!(videos.iter().find(|r| r.source_path == "stills/a_white.png").unwrap().class_name.as_deref(), Some("a"));
    assert_eq!(videos.iter().find(|r| r.source_path == "b_anim.gif").unwrap().class_index, Some(1));

    // Letterbox: the 64×32 white still fills rows 8..24 of its 32×32 frame, black elsewhere.
    let store = usctl::store::reader::Store::open(&v).unwrap();
    let white = store.videos.iter().find(|r| r.source_path == "stills/a_white.png").unwrap();
    let px = store.video_pixels(white);
    assert_eq!(px.len(), 32 * 32);
    for y in 0..32 {
        let row = &px[y * 32..(y + 1) * 32];
        if (8..24).contains(&y) {
            assert!(row.iter().all(|&p| p > 200), "row {y}: {row:?}");
        } else {
            assert!(row.iter().all(|&p| p == 0), "row {y}: {row:?}");
        }
    }
    assert_eq!(usctl::store::verify::verify(&v).unwrap().bad_videos, Vec::<String>::new());
}

#[test]
fn bytes_do_not_depend_on_thread_count_and_reruns_reuse() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, m, _) = setup(tmp.path(), &["*.*", "stills/*"]);
    let (one, two) = (tmp.path().join("s1"), tmp.path().join("s2"));
    assert!(ingest(&m, &raw, &one, &["--size", "48", "--threads", "1"]).status.success());
    assert!(ingest(&m, &raw, &two, &["--size", "48", "--threads", "2"]).status.success());
    let (v1, v2) = (newest(&one), newest(&two));
    assert_eq!(v1.file_name(), v2.file_name());
    assert_eq!(snapshot(&v1), snapshot(&v2));

    // Identical inputs: the same version is reused, nothing new is written.
    let before = snapshot(&two);
    let out = run(usctl().args(["ingest", "--json", "--threads", "2", "--size", "48", "--manifest"]).arg(&m).arg("--raw").arg(&raw).arg("--store").arg(&two));
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reused"], true);
    assert_eq!(report["version_id"].as_str().unwrap(), v2.file_name().unwrap().to_str().unwrap().split_once('-').unwrap().1);
    assert_eq!(snapshot(&two), before);

    // A different size is a new version beside the old one, which stays as it was.
    assert!(ingest(&m, &raw, &two, &["--size", "40"]).status.success());
    let v3 = newest(&two);
    assert_ne!(v3, v2);
    assert!(v3.file_name().unwrap().to_str().unwrap().starts_with("0002-"));
    assert_eq!(snapshot(&v2), snapshot(&v1));
    // --version picks the older one back; the folder name, id prefix and sequence number work.
    let id = v2.file_name().unwrap().to_str().unwrap().to_string();
    for pick in [id.as_str(), &id[5..12], "1"] {
        assert_eq!(usctl::store::locate(&two, None, Some(pick)).unwrap(), v2, "{pick}");
    }
}

#[test]
fn verify_names_the_damaged_video() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, m, store) = setup(tmp.path(), &["*.mp4", "*.gif"]);
    assert!(ingest(&m, &raw, &store, &["--size", "16"]).status.success());
    let v = newest(&store);
    let ok = run(usctl().arg("verify").arg("--store").arg(&store));
    assert!(ok.status.success(), "{}", text(&ok));

    // Flip one byte inside the gif's frames (videos are stored in path order: mp4 first).
    let (videos, _) = tables(&v);
    let gif = videos.iter().find(|r| r.source_path == "b_anim.gif").unwrap();
    let payload = v.join("frames.u8");
    let mut bytes = std::fs::read(&payload).unwrap();
    bytes[(gif.first_frame_row as usize + 1) * 256 + 7] ^= 0xff;
    std::fs::write(&payload, bytes).unwrap();
    let bad = run(usctl().arg("verify").arg("--store").arg(&v));
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let t = text(&bad);
    assert!(t.contains("DIFFERS video b_anim.gif") && !t.contains("video a_h264.mp4"), "{t}");
    assert!(t.contains("DIFFERS file  frames.u8"), "{t}");
}

/// Names in `dir` that start with `prefix`.
fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| n.starts_with(prefix)).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn ingest_command(m: &Path, raw: &Path, store: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = usctl();
    cmd.args(["ingest", "--json", "--manifest"]).arg(m).arg("--raw").arg(raw).arg("--store").arg(store).args(extra);
    cmd
}

#[test]
fn identical_ingests_started_together_publish_one_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, m, store) = setup(tmp.path(), &["*.*", "stills/*"]);
    let children: Vec<_> =
        (0..4).map(|_| ingest_command(&m, &raw, &store, &["--size", "32", "--threads", "1"]).stdout(std::process::Stdio::piped()).spawn().unwrap()).collect();
    let reports: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let dataset = store.join("synthetic");
    let versions = usctl::store::list_versions(&dataset).unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(reports.iter().filter(|r| r["reused"] == false).count(), 1, "{reports:?}");
    for r in &reports {
        assert_eq!(r["version_dir"].as_str().unwrap(), versions[0].path.to_str().unwrap());
    }
    assert_eq!(entries(&dataset, "."), Vec::<String>::new());
    let full_id = versions[0].path.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(usctl::store::locate(&store, None, Some(&full_id)).unwrap(), versions[0].path);
    assert!(usctl::store::verify::verify(&versions[0].path).unwrap().is_ok());
}

#[test]
fn the_next_ingest_removes_temporary_folders_of_dead_ingests_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, m, store) = setup(tmp.path(), &["*.gif"]);
    let dataset = store.join("synthetic");
    // pid_max on Linux is at most 2^22, so this pid cannot be running.
    let dead = dataset.join(".tmp-0123456789abcdef-4194999");
    let live = dataset.join(format!(".tmp-0123456789abcdef-{}", std::process::id()));
    for d in [&dead, &live] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("frames.u8"), vec![0u8; 4096]).unwrap();
    }
    let out = run(&mut ingest_command(&m, &raw, &store, &["--size", "16"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dead.exists() && live.join("frames.u8").exists());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = report["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n["path"].as_str().unwrap().ends_with(".tmp-0123456789abcdef-4194999")), "{notes:?}");
    assert!(!notes.iter().any(|n| n["path"].as_str().unwrap().ends_with(&format!("-{}", std::process::id()))), "{notes:?}");
    std::fs::remove_dir_all(&live).unwrap();
}

#[test]
fn an_interrupted_or_terminated_ingest_leaves_no_temporary_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    // Many small files, decoded one at a time: the ingest runs for seconds.
    let first = raw.join("a000.mp4");
    ffmpeg(&["-f", "lavfi", "-i", &testsrc(64, 48, 25, 75), "-c:v", "libx264", "-pix_fmt", "yuv420p", first.to_str().unwrap()]);
    for i in 1..400 {
        std::fs::copy(&first, raw.join(format!("a{i:03}.mp4"))).unwrap();
    }
    let m = tmp.path().join("m.toml");
    manifest(&m, "many", &["*.mp4"], &[]);
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let store = tmp.path().join(format!("store{signal}"));
        let dataset = store.join("many");
        let mut child = ingest_command(&m, &raw, &store, &["--size", "64", "--threads", "1"]).stdout(std::process::Stdio::null()).spawn().unwrap();
        let started = std::time::Instant::now();
        while entries(&dataset, ".tmp-").is_empty() {
            assert!(started.elapsed().as_secs() < 60 && child.try_wait().unwrap().is_none(), "no temporary folder appeared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let kill = std::process::Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap();
        assert!(kill.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}: {status:?}");
        assert_eq!(entries(&dataset, ".tmp-"), Vec::<String>::new(), "{signal}");
        assert!(usctl::store::list_versions(&dataset).unwrap().is_empty(), "{signal}");
    }
}
