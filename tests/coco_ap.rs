//! usctl's COCO AP (src/eval/coco.rs) against pycocotools' COCOeval on generated cases: boxes and
//! masks, several images and categories, crowded images with many overlapping instances, crowd
//! ground truth, images with ground truth and no detections and the reverse, tied scores, more
//! than 100 detections in an image. Every reported number must agree within 1e-6.

mod common;

use common::{run, text, venv_python};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use usctl::eval::coco::{evaluate, CocoSummary, Det, Gt, IouKind, Shape};
use usctl::eval::mask::Mask;

struct Case {
    kind: IouKind,
    /// (width, height) per image
    images: Vec<(usize, usize)>,
    categories: u32,
    gts: Vec<Gt>,
    dets: Vec<Det>,
}

/// A score: often from a coarse grid, so that ties occur within and across images.
fn score(rng: &mut ChaCha8Rng) -> f64 {
    if rng.gen_bool(0.5) {
        rng.gen_range(1..=10) as f64 / 10.0
    } else {
        rng.gen::<f64>()
    }
}

/// A coordinate: a multiple of 1/8 (so that IoUs hit the thresholds exactly now and then) or an
/// arbitrary float; never negative.
fn coord(v: f64, exact: bool) -> f64 {
    if exact { (v * 8.0).round() / 8.0 } else { v }.max(0.0)
}

fn rand_box(rng: &mut ChaCha8Rng, exact: bool, cx: f64, cy: f64, spread: f64) -> [f64; 4] {
    // sides from 6 to 160 px on a log scale: small, medium and large instances
    let side = |rng: &mut ChaCha8Rng| (rng.gen_range(6f64.ln()..160f64.ln())).exp();
    let (w, h) = (side(rng), side(rng));
    let x = cx + rng.gen_range(-spread..=spread);
    let y = cy + rng.gen_range(-spread..=spread);
    [coord(x, exact), coord(y, exact), coord(w, exact).max(1.0), coord(h, exact).max(1.0)]
}

fn jitter_box(rng: &mut ChaCha8Rng, b: [f64; 4], exact: bool, amount: f64) -> [f64; 4] {
    let dx = rng.gen_range(-amount..=amount) * b[2];
    let dy = rng.gen_range(-amount..=amount) * b[3];
    let sw = 1.0 + rng.gen_range(-amount..=amount);
    let sh = 1.0 + rng.gen_range(-amount..=amount);
    [coord(b[0] + dx, exact), coord(b[1] + dy, exact), coord(b[2] * sw, exact).max(1.0), coord(b[3] * sh, exact).max(1.0)]
}

fn ellipse(w: usize, h: usize, cx: f64, cy: f64, rx: f64, ry: f64) -> Mask {
    let bits = (0..h).flat_map(|y| (0..w).map(move |x| ((x as f64 - cx) / rx).powi(2) + ((y as f64 - cy) / ry).powi(2) <= 1.0)).collect();
    Mask { w, h, bits }
}

fn rand_mask(rng: &mut ChaCha8Rng, w: usize, h: usize) -> (Mask, [f64; 4]) {
    loop {
        let p = [rng.gen_range(0.0..w as f64), rng.gen_range(0.0..h as f64), rng.gen_range(1.5..9.0), rng.gen_range(1.5..9.0)];
        let m = ellipse(w, h, p[0], p[1], p[2], p[3]);
        if m.bits.iter().any(|&b| b) {
            return (m, p);
        }
    }
}

/// A detection of the ellipse `p`: shifted, scaled and with flipped pixels, by `amount` (0–1).
fn jitter_mask(rng: &mut ChaCha8Rng, w: usize, h: usize, p: [f64; 4], amount: f64) -> Mask {
    let shift = 3.0 * amount + 0.01;
    let scale = 0.4 * amount + 0.01;
    let mut m = ellipse(
        w,
        h,
        p[0] + rng.gen_range(-shift..shift),
        p[1] + rng.gen_range(-shift..shift),
        p[2] * (1.0 + rng.gen_range(-scale..scale)),
        p[3] * (1.0 + rng.gen_range(-scale..scale)),
    );
    for b in m.bits.iter_mut() {
        if rng.gen_bool(0.02 * amount) {
            *b = !*b;
        }
    }
    m
}

/// One generated case. Image kinds: ordinary, crowded (many overlapping instances, sometimes a
/// crowd region over them), ground truth without detections, detections without ground truth.
fn generate(seed: u64, kind: IouKind) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let categories = if rng.gen_bool(0.3) { rng.gen_range(2..=3) } else { 1 };
    let n_images = rng.gen_range(2..=7);
    let exact = rng.gen_bool(0.5);
    let mut case = Case { kind, images: Vec::new(), categories, gts: Vec::new(), dets: Vec::new() };
    for image in 0..n_images {
        let (w, h) = match kind {
            IouKind::Box => (320, 320),
            IouKind::Mask => *[(24, 24), (20, 28), (32, 16)].get(rng.gen_range(0..3)).unwrap(),
        };
        case.images.push((w, h));
        let style = rng.gen_range(0..10);
        let (n_gt, crowded) = match style {
            0 => (0, false),
            1..=2 => (rng.gen_range(8..=16), true),
            _ => (rng.gen_range(1..=5), false),
        };
        let with_dets = style != 9;
        let (cx, cy) = (rng.gen_range(40.0..200.0), rng.gen_range(40.0..200.0));
        for _ in 0..n_gt {
            let category = rng.gen_range(1..=categories);
            let (shape, det_shapes): (Shape, Vec<Shape>) = match kind {
                IouKind::Box => {
                    let b = if crowded { rand_box(&mut rng, exact, cx, cy, 25.0) } else { rand_box(&mut rng, exact, 150.0, 150.0, 140.0) };
                    let n = if rng.gen_bool(0.8) { rng.gen_range(1..=3) } else { 0 };
                    let amount = *[0.02, 0.1, 0.25].get(rng.gen_range(0..3)).unwrap();
                    (Shape::Box(b), (0..n).map(|_| Shape::Box(jitter_box(&mut rng, b, exact, amount))).collect())
                }
                IouKind::Mask => {
                    let (m, p) = rand_mask(&mut rng, w, h);
                    let n = if rng.gen_bool(0.8) { rng.gen_range(1..=3) } else { 0 };
                    let amount = *[0.1, 0.3, 1.0].get(rng.gen_range(0..3)).unwrap();
                    (Shape::Mask(m), (0..n).map(|_| Shape::Mask(jitter_mask(&mut rng, w, h, p, amount))).collect())
                }
            };
            case.gts.push(Gt { image, category, shape, crowd: false });
            if with_dets {
                for s in det_shapes {
                    // now and then a detection of the wrong category
                    let c = if rng.gen_bool(0.1) { rng.gen_range(1..=categories) } else { category };
                    case.dets.push(Det { image, category: c, score: score(&mut rng), shape: s });
                }
            }
        }
        if crowded && rng.gen_bool(0.6) {
            let shape = match kind {
                IouKind::Box => Shape::Box([cx - 30.0, cy - 30.0, 150.0, 150.0]),
                IouKind::Mask => Shape::Mask(ellipse(w, h, w as f64 / 2.0, h as f64 / 2.0, w as f64 / 3.0, h as f64 / 3.0)),
            };
            case.gts.push(Gt { image, category: 1, shape, crowd: true });
        }
        // false positives (all of them when the image has no ground truth)
        let n_fp = if style == 0 {
            rng.gen_range(1..=6)
        } else if with_dets {
            rng.gen_range(0..=3)
        } else {
            0
        };
        for _ in 0..n_fp {
            let shape = match kind {
                IouKind::Box => Shape::Box(rand_box(&mut rng, exact, 150.0, 150.0, 140.0)),
                IouKind::Mask => Shape::Mask(rand_mask(&mut rng, w, h).0),
            };
            case.dets.push(Det { image, category: rng.gen_range(1..=categories), score: score(&mut rng), shape });
        }
    }
    // pycocotools' loadRes needs at least one detection
    if case.dets.is_empty() {
        let (w, h) = case.images[0];
        let shape = match kind {
            IouKind::Box => Shape::Box([1.0, 1.0, 10.0, 10.0]),
            IouKind::Mask => Shape::Mask(rand_mask(&mut rng, w, h).0),
        };
        case.dets.push(Det { image: 0, category: 1, score: 0.5, shape });
    }
    case
}

/// COCO's uncompressed RLE: run lengths over the pixels in column-major order, starting with 0s.
fn rle(m: &Mask) -> Value {
    let mut counts = Vec::new();
    let (mut current, mut run_len) = (false, 0u64);
    for x in 0..m.w {
        for y in 0..m.h {
            let b = m.bits[y * m.w + x];
            if b != current {
                counts.push(run_len);
                run_len = 0;
                current = b;
            }
            run_len += 1;
        }
    }
    counts.push(run_len);
    json!({"size": [m.h, m.w], "counts": counts})
}

fn shape_json(shape: &Shape) -> (&'static str, Value) {
    match shape {
        Shape::Box(b) => ("bbox", json!(b)),
        Shape::Mask(m) => ("segmentation", rle(m)),
    }
}

fn to_json(case: &Case) -> Value {
    let images: Vec<Value> = case.images.iter().enumerate().map(|(i, (w, h))| json!({"id": i + 1, "width": w, "height": h})).collect();
    let annotations: Vec<Value> = case
        .gts
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let (key, value) = shape_json(&g.shape);
            // the area pycocotools uses for the area ranges: w·h of a box, a mask's pixel count
            json!({"id": k + 1, "image_id": g.image + 1, "category_id": g.category, key: value,
                   "area": usctl::eval::coco::area(&g.shape), "iscrowd": g.crowd as u8})
        })
        .collect();
    let dt: Vec<Value> = case
        .dets
        .iter()
        .map(|d| {
            let (key, value) = shape_json(&d.shape);
            json!({"image_id": d.image + 1, "category_id": d.category, "score": d.score, key: value})
        })
        .collect();
    let categories: Vec<Value> = (1..=case.categories).map(|c| json!({"id": c, "name": format!("c{c}")})).collect();
    let iou_type = match case.kind {
        IouKind::Box => "bbox",
        IouKind::Mask => "segm",
    };
    json!({"iou_type": iou_type, "gt": {"images": images, "annotations": annotations, "categories": categories}, "dt": dt})
}

/// pycocotools' stats indices of the summary's fields (stats[8] is AR at 100 detections).
fn fields(s: &CocoSummary) -> [(usize, &'static str, Option<f64>); 7] {
    [
        (0, "AP", s.ap),
        (1, "AP50", s.ap50),
        (2, "AP75", s.ap75),
        (3, "AP_small", s.ap_small),
        (4, "AP_medium", s.ap_medium),
        (5, "AP_large", s.ap_large),
        (8, "AR100", s.ar100),
    ]
}

#[test]
fn coco_ap_matches_pycocotools() {
    let python = venv_python().expect("no .venv/bin/python: run `make setup` (it creates the venv and installs pycocotools there)");
    let probe = run(std::process::Command::new(&python).args(["-c", "import pycocotools.cocoeval"]));
    assert!(probe.status.success(), "pycocotools is not installed in {}: run `make setup`\n{}", python.display(), text(&probe));

    let mut cases: Vec<Case> = (0..40).map(|s| generate(s, IouKind::Box)).chain((0..40).map(|s| generate(1000 + s, IouKind::Mask))).collect();
    // more than 100 detections in one image: only the best 100 count
    let mut many = generate(77, IouKind::Box);
    let mut rng = ChaCha8Rng::seed_from_u64(78);
    for _ in 0..130 {
        let b = rand_box(&mut rng, true, 150.0, 150.0, 140.0);
        many.gts.push(Gt { image: 0, category: 1, shape: Shape::Box(b), crowd: false });
        many.dets.push(Det { image: 0, category: 1, score: score(&mut rng), shape: Shape::Box(jitter_box(&mut rng, b, true, 0.05)) });
    }
    cases.push(many);

    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("cases.json");
    std::fs::write(&input, serde_json::to_vec(&Value::Array(cases.iter().map(to_json).collect())).unwrap()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/coco_reference.py");
    let out = run(std::process::Command::new(&python).arg(&script).arg(&input));
    assert!(out.status.success(), "{}", text(&out));
    let theirs: Vec<Vec<f64>> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(theirs.len(), cases.len());

    let mut max_diff = [0.0f64; 2];
    let (mut absent, mut fractional) = (0, 0);
    for (i, (case, stats)) in cases.iter().zip(&theirs).enumerate() {
        let ours = evaluate(&case.gts, &case.dets, case.kind).unwrap();
        for (k, name, value) in fields(&ours) {
            let reference = stats[k];
            match value {
                None => {
                    assert_eq!(reference, -1.0, "case {i} ({:?}): {name} is absent here, pycocotools gives {reference}", case.kind);
                    absent += 1;
                }
                Some(v) => {
                    let diff = (v - reference).abs();
                    assert!(diff < 1e-6, "case {i} ({:?}): {name} {v} here, {reference} in pycocotools", case.kind);
                    max_diff[(case.kind == IouKind::Mask) as usize] = max_diff[(case.kind == IouKind::Mask) as usize].max(diff);
                    fractional += (v > 0.01 && v < 0.99) as usize;
                }
            }
        }
    }
    eprintln!("{} cases; max |usctl - pycocotools|: boxes {:e}, masks {:e}; {absent} values absent (-1)", cases.len(), max_diff[0], max_diff[1]);
    // the cases exercise more than the trivial answers
    assert!(fractional > cases.len() * 3, "only {fractional} values strictly between 0 and 1");
    assert!(absent > 0, "no case without counted ground truth in some area range");
}
