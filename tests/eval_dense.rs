//! `usctl eval --task segment|detect` through the front door: a BUSI-shaped corpus made here
//! (gray images with bright lesions, their masks beside them), ingested with `[source.masks]`,
//! evaluated, and the report, overlays and folds checked; and the errors a user meets first.
mod common;
use common::*;
use std::path::Path;

const MANIFEST: &str = r#"schema = 3
name = "lesions"
classes = ["benign", "malignant"]

[[source]]
subdataset = "s"
include = ["*/images/*.png"]

[source.masks]
dir = "{parent}/mask"
name = '{stem}_mask(_[0-9]+)?\.png'

[[source.class_rule]]
glob = "benign/**"
class = "benign"

[[source.class_rule]]
glob = "malignant/**"
class = "malignant"
"#;

/// Image k: a 48×48 speckled background with one bright ellipse (two for every fifth image);
/// the same ellipses as 255 in the masks.
fn lesions(k: u32) -> Vec<(f64, f64, f64, f64)> {
    let e = |j: u32| (10.0 + ((k * 7 + j * 13) % 24) as f64, 10.0 + ((k * 5 + j * 11) % 24) as f64, 5.0 + (k % 4) as f64, 4.0 + ((k + j) % 3) as f64);
    if k.is_multiple_of(5) {
        vec![(8.0 + (k % 3) as f64, 9.0, 4.0, 4.0), (38.0, 36.0 - (k % 4) as f64, 5.0, 4.0)]
    } else {
        vec![e(0)]
    }
}

fn inside(x: u32, y: u32, (cx, cy, rx, ry): (f64, f64, f64, f64)) -> bool {
    ((x as f64 - cx) / rx).powi(2) + ((y as f64 - cy) / ry).powi(2) <= 1.0
}

fn save(path: &Path, img: image::GrayImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// 24 images in benign/ and malignant/, each with its mask file(s); benign/images/b0.png is
/// copied as b0-copy.png (an exact duplicate, with the same mask); malignant/images/m99.png has
/// no mask.
fn corpus(raw: &Path) {
    for k in 0..24u32 {
        let class = if k.is_multiple_of(2) { "benign" } else { "malignant" };
        let name = format!("{}{k}", &class[..1]);
        let ls = lesions(k);
        let mut noise = 0x2545_f491u32.wrapping_mul(k + 1);
        let img = image::GrayImage::from_fn(48, 48, |x, y| {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let speckle = (noise % 40) as u8;
            image::Luma([if ls.iter().any(|&l| inside(x, y, l)) { 200 + speckle } else { 30 + speckle }])
        });
        save(&raw.join(format!("{class}/images/{name}.png")), img.clone());
        for (j, &l) in ls.iter().enumerate() {
            let suffix = if j == 0 { String::new() } else { format!("_{j}") };
            save(
                &raw.join(format!("{class}/mask/{name}_mask{suffix}.png")),
                image::GrayImage::from_fn(48, 48, |x, y| image::Luma([if inside(x, y, l) { 255 } else { 0 }])),
            );
        }
        if k == 0 {
            save(&raw.join("benign/images/b0-copy.png"), img);
            std::fs::copy(raw.join("benign/mask/b0_mask.png"), raw.join("benign/mask/b0-copy_mask.png")).unwrap();
        }
    }
    save(&raw.join("malignant/images/m99.png"), image::GrayImage::from_pixel(48, 48, image::Luma([90])));
}

fn eval(store: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(usctl()
        .args(["eval", "--quiet", "--init", "random", "--store"])
        .arg(store)
        .arg("--out")
        .arg(out)
        .args(["--folds", "2", "--image-size", "32", "--batch-size", "8", "--threads", "1"])
        .args(extra))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn segment_and_detect_on_an_ingested_corpus_with_masks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    corpus(&d.join("raw"));
    write(&d.join("m.toml"), MANIFEST);
    let out =
        run(usctl().args(["ingest", "--size", "32", "--manifest"]).arg(d.join("m.toml")).arg("--raw").arg(d.join("raw")).arg("--store").arg(d.join("store")));
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    let store = d.join("store").join("lesions");

    let seg = d.join("seg");
    let out = eval(&store, &seg, &["--task", "segment", "--seeds", "2", "--epochs", "15", "--lr", "0.01", "--augment", "off"]);
    assert!(out.status.success(), "{}", text(&out));
    let r = json(&seg.join("report.json"));
    assert_eq!(r["format"], "usctl-dense-eval-report");
    assert_eq!((r["task"].as_str(), r["images"].as_u64(), r["not_annotated"].as_u64()), (Some("segment"), Some(25), Some(1)), "m99 has no mask");
    assert_eq!(r["lesions"].as_u64(), Some(25 + 5), "b0-copy's lesion, and two in every fifth image");
    assert_eq!(r["runs"].as_array().unwrap().len(), 4);
    let dice = r["summary"]["dice"]["mean"].as_f64().unwrap();
    assert!(dice > 0.5, "bright ellipses on a dark background: Dice {dice}");
    for key in ["box_ap", "box_ap50", "box_ap75", "mask_ap", "mask_ap50", "mask_ap75", "iou", "boundary_f1"] {
        let v = r["summary"][key]["mean"].as_f64().unwrap_or_else(|| panic!("{key}: {}", r["summary"]));
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
    }
    assert!(r["summary"]["mask_ap50"]["mean"].as_f64().unwrap() > 0.3, "{}", r["summary"]);
    // Every test image has its line in every run; a fold's images are scored once per seed.
    let runs = std::fs::read_to_string(seg.join("runs.jsonl")).unwrap();
    let per_run: Vec<usize> = runs.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["images"].as_array().unwrap().len()).collect();
    assert_eq!(per_run.len(), 4);
    assert_eq!(per_run[0] + per_run[1], 25);
    // The duplicate pair shares a fold.
    let folds = json(&seg.join("folds.json"));
    let fold_of = |name: &str| folds["items"].as_array().unwrap().iter().find(|i| i["video"].as_str().unwrap().ends_with(name)).map(|i| i["fold"].clone());
    assert!(fold_of("/b0.png").is_some() && fold_of("/b0.png") == fold_of("/b0-copy.png"), "{folds}");
    // Overlays: 4 per fold, first seed, PNGs of the stored size, linked from report.md.
    let overlays: Vec<String> = r["overlays"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect();
    assert_eq!(overlays.len(), 8);
    let md = std::fs::read_to_string(seg.join("report.md")).unwrap();
    for o in &overlays {
        assert_eq!(image::image_dimensions(seg.join(o)).unwrap(), (32, 32), "{o}");
        assert!(md.contains(&format!("]({o})")), "{o} not in report.md");
    }
    assert!(md.contains("| Dice |") && md.lines().position(|l| l.starts_with("| Dice |")) < md.lines().position(|l| l.starts_with("| box AP |")), "{md}");

    // Detect: the same training, the report leads with AP; full fine-tuning.
    let det = d.join("det");
    let out = eval(&store, &det, &["--task", "detect", "--seeds", "1", "--epochs", "1", "--protocol", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::read_to_string(det.join("report.md")).unwrap();
    assert!(md.starts_with("# random · lesion detection · full fine-tuning"), "{md}");
    assert!(md.lines().position(|l| l.starts_with("| box AP |")) < md.lines().position(|l| l.starts_with("| Dice |")), "{md}");

    // Errors a user meets first: no masks in the store; a selection dense tasks do not offer.
    write(
        &d.join("plain.toml"),
        &MANIFEST.replace("[source.masks]\ndir = \"{parent}/mask\"\nname = '{stem}_mask(_[0-9]+)?\\.png'\n", "").replace("lesions", "plain"),
    );
    let out = run(usctl()
        .args(["ingest", "--size", "32", "--manifest"])
        .arg(d.join("plain.toml"))
        .arg("--raw")
        .arg(d.join("raw"))
        .arg("--store")
        .arg(d.join("store")));
    assert!(out.status.code() == Some(0), "{}", text(&out));
    let out = eval(&d.join("store").join("plain"), &d.join("none"), &["--task", "segment", "--epochs", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("[source.masks]"), "{}", text(&out));
    let out = eval(&store, &d.join("val"), &["--task", "segment", "--selection", "validation"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("selection"), "{}", text(&out));
}
