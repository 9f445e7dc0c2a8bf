//! COCO-style average precision for boxes and instance masks, pure Rust. It reproduces
//! pycocotools' `COCOeval` (evaluate, accumulate, summarize) with its default parameters: IoU
//! thresholds 0.50:0.05:0.95, 101 recall points, at most 100 detections per image, area ranges
//! all / small (≤ 32²) / medium (32²–96²) / large (≥ 96²). tests/coco_ap.rs checks it against
//! pycocotools on generated cases; docs/eval.md says what is mirrored.
//!
//! Areas: a box's is w·h, a mask's its pixel count, for ground truth and detections alike (pycocotools
//! takes the ground truth's from the annotation's `area` field; the test writes these values there).

use serde::{Deserialize, Serialize};

use super::mask::Mask;

#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// `[x, y, w, h]`, as COCO writes boxes.
    Box([f64; 4]),
    Mask(Mask),
}

/// A ground-truth instance. A crowd instance is never counted as missed; detections that match it
/// are neither true nor false positives.
#[derive(Debug, Clone, PartialEq)]
pub struct Gt {
    pub image: usize,
    pub category: u32,
    pub shape: Shape,
    pub crowd: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Det {
    pub image: usize,
    pub category: u32,
    pub score: f64,
    pub shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IouKind {
    /// pycocotools' `iouType='bbox'`: every shape must be a box.
    Box,
    /// `iouType='segm'`: every shape must be a mask.
    Mask,
}

/// pycocotools' `stats[0..6]` and `stats[8]`; `None` where it prints -1 (no category with
/// non-ignored ground truth in that area range).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CocoSummary {
    /// AP averaged over IoU 0.50:0.05:0.95, area all, 100 detections.
    pub ap: Option<f64>,
    pub ap50: Option<f64>,
    pub ap75: Option<f64>,
    pub ap_small: Option<f64>,
    pub ap_medium: Option<f64>,
    pub ap_large: Option<f64>,
    /// Recall at 100 detections per image, averaged over IoU 0.50:0.05:0.95, area all.
    pub ar100: Option<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CocoError {
    #[error("{what} {index} is a {found} but the evaluation is of {kind:?} IoU: give every shape as a {}", kind_name(*.kind))]
    WrongShape { what: &'static str, index: usize, found: &'static str, kind: IouKind },
    #[error("detection {index} has score {score}: scores must be finite")]
    BadScore { index: usize, score: f64 },
    #[error("{what} {index} is a {w}×{h} mask with {len} pixels: a mask has w·h pixels")]
    BadMask { what: &'static str, index: usize, w: usize, h: usize, len: usize },
    #[error("image {image}: masks of sizes {a:?} and {b:?} (w, h); every mask of an image must have the image's size")]
    MaskSizes { image: usize, a: (usize, usize), b: (usize, usize) },
}

fn kind_name(kind: IouKind) -> &'static str {
    match kind {
        IouKind::Box => "box",
        IouKind::Mask => "mask",
    }
}

/// pycocotools' `Params.maxDets[-1]`.
pub const MAX_DETS: usize = 100;
const AREA_RANGES: [(f64, f64); 4] = [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];

/// `np.linspace(.5, .95, 10)` bit for bit: i·step + start, the last point exactly the stop.
pub fn iou_thresholds() -> [f64; 10] {
    let step = (0.95 - 0.5) / 9.0;
    let mut t = [0.0; 10];
    for (i, v) in t.iter_mut().enumerate() {
        *v = i as f64 * step + 0.5;
    }
    t[9] = 0.95;
    t
}

/// `np.linspace(0, 1, 101)` bit for bit.
pub fn recall_points() -> [f64; 101] {
    let mut r = [0.0; 101];
    for (i, v) in r.iter_mut().enumerate() {
        *v = i as f64 * (1.0 / 100.0);
    }
    r[100] = 1.0;
    r
}

/// A box's area w·h, a mask's pixel count.
pub fn area(shape: &Shape) -> f64 {
    match shape {
        Shape::Box(b) => b[2] * b[3],
        Shape::Mask(m) => m.bits.iter().filter(|&&b| b).count() as f64,
    }
}

/// IoU of a detection with a ground truth as maskApi's bbIou / rleIou: for a crowd ground truth
/// the union is the detection's area. Mixed shapes give 0.
pub fn iou(det: &Shape, gt: &Shape, crowd: bool) -> f64 {
    match (det, gt) {
        (Shape::Box(d), Shape::Box(g)) => {
            let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
            if w <= 0.0 {
                return 0.0;
            }
            let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
            if h <= 0.0 {
                return 0.0;
            }
            let i = w * h;
            let da = d[2] * d[3];
            let u = if crowd { da } else { da + g[2] * g[3] - i };
            i / u
        }
        (Shape::Mask(d), Shape::Mask(g)) => {
            let (mut i, mut u, mut da) = (0u64, 0u64, 0u64);
            for (&a, &b) in d.bits.iter().zip(&g.bits) {
                i += (a && b) as u64;
                u += (a || b) as u64;
                da += a as u64;
            }
            if i == 0 {
                0.0
            } else if crowd {
                i as f64 / da as f64
            } else {
                i as f64 / u as f64
            }
        }
        _ => 0.0,
    }
}

/// One image and category in one area range: evaluateImg's result.
struct ImageEval {
    /// Scores of the kept detections, best first.
    scores: Vec<f64>,
    /// `[threshold][detection]`: matched to some ground truth.
    matched: Vec<Vec<bool>>,
    /// `[threshold][detection]`: neither true nor false positive.
    ignored: Vec<Vec<bool>>,
    /// Ground truths that count (not crowd, area in range).
    counted: usize,
}

fn check(gts: &[Gt], dets: &[Det], kind: IouKind) -> Result<(), CocoError> {
    let shapes = gts.iter().map(|g| ("ground truth", g.image, &g.shape)).chain(dets.iter().map(|d| ("detection", d.image, &d.shape)));
    let mut sizes: std::collections::HashMap<usize, (usize, usize)> = std::collections::HashMap::new();
    let mut counters = [0usize, 0usize];
    for (what, image, shape) in shapes {
        let c = &mut counters[(what == "detection") as usize];
        let index = *c;
        *c += 1;
        match (shape, kind) {
            (Shape::Box(_), IouKind::Box) => {}
            (Shape::Mask(m), IouKind::Mask) => {
                if m.bits.len() != m.w * m.h {
                    return Err(CocoError::BadMask { what, index, w: m.w, h: m.h, len: m.bits.len() });
                }
                let size = *sizes.entry(image).or_insert((m.w, m.h));
                if size != (m.w, m.h) {
                    return Err(CocoError::MaskSizes { image, a: size, b: (m.w, m.h) });
                }
            }
            (Shape::Box(_), _) => return Err(CocoError::WrongShape { what, index, found: "box", kind }),
            (Shape::Mask(_), _) => return Err(CocoError::WrongShape { what, index, found: "mask", kind }),
        }
    }
    for (index, d) in dets.iter().enumerate() {
        if !d.score.is_finite() {
            return Err(CocoError::BadScore { index, score: d.score });
        }
    }
    Ok(())
}

/// Stable sort by score, highest first: `np.argsort(-scores, kind='mergesort')`.
fn by_score_desc(idx: &mut [usize], score: impl Fn(usize) -> f64) {
    idx.sort_by(|&a, &b| score(b).partial_cmp(&score(a)).expect("finite scores"));
}

/// evaluateImg for one image and category: `g` and `d` index `gts` and `dets` in input order;
/// `ious[d][g]` over the score-sorted, truncated detections.
fn evaluate_image(gts: &[&Gt], dets: &[&Det], ious: &[Vec<f64>], range: (f64, f64), thresholds: &[f64]) -> ImageEval {
    let out_of = |a: f64| a < range.0 || a > range.1;
    let gt_ignore: Vec<bool> = gts.iter().map(|g| g.crowd || out_of(area(&g.shape))).collect();
    // np.argsort(_ignore, kind='mergesort'): counted first, input order kept.
    let mut order: Vec<usize> = (0..gts.len()).collect();
    order.sort_by_key(|&g| gt_ignore[g]);
    let t_n = thresholds.len();
    let mut matched = vec![vec![false; dets.len()]; t_n];
    let mut ignored = vec![vec![false; dets.len()]; t_n];
    if !gts.is_empty() && !dets.is_empty() {
        for (ti, &t) in thresholds.iter().enumerate() {
            let mut gt_taken = vec![false; gts.len()];
            for di in 0..dets.len() {
                let mut best = t.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for &g in &order {
                    if gt_taken[g] && !gts[g].crowd {
                        continue;
                    }
                    if let Some(mg) = m {
                        if !gt_ignore[mg] && gt_ignore[g] {
                            break;
                        }
                    }
                    let v = ious[di][g];
                    if v < best {
                        continue;
                    }
                    best = v;
                    m = Some(g);
                }
                if let Some(g) = m {
                    ignored[ti][di] = gt_ignore[g];
                    matched[ti][di] = true;
                    gt_taken[g] = true;
                }
            }
        }
    }
    for (ti, row) in ignored.iter_mut().enumerate() {
        for (di, ig) in row.iter_mut().enumerate() {
            *ig = *ig || (!matched[ti][di] && out_of(area(&dets[di].shape)));
        }
    }
    ImageEval { scores: dets.iter().map(|d| d.score).collect(), matched, ignored, counted: gt_ignore.iter().filter(|&&i| !i).count() }
}

/// One category in one area range, per threshold: precision at the 101 recall points and the
/// recall reached.
struct Accumulated {
    precision: Vec<Vec<f64>>,
    recall: Vec<f64>,
}

/// accumulate for one category and area range; `None` when no ground truth counts (pycocotools' -1).
fn accumulate(evals: &[ImageEval], t_n: usize, rec: &[f64]) -> Option<Accumulated> {
    let counted: usize = evals.iter().map(|e| e.counted).sum();
    if evals.is_empty() || counted == 0 {
        return None;
    }
    let scores: Vec<f64> = evals.iter().flat_map(|e| e.scores.iter().copied()).collect();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    by_score_desc(&mut order, |i| scores[i]);
    let mut precision = Vec::with_capacity(t_n);
    let mut recall = Vec::with_capacity(t_n);
    for t in 0..t_n {
        let matched: Vec<bool> = evals.iter().flat_map(|e| e.matched[t].iter().copied()).collect();
        let ignored: Vec<bool> = evals.iter().flat_map(|e| e.ignored[t].iter().copied()).collect();
        let (mut tp, mut fp) = (0.0f64, 0.0f64);
        let mut rc = Vec::with_capacity(order.len());
        let mut pr = Vec::with_capacity(order.len());
        for &i in &order {
            if !ignored[i] {
                if matched[i] {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
            }
            rc.push(tp / counted as f64);
            pr.push(tp / (fp + tp + f64::EPSILON));
        }
        recall.push(rc.last().copied().unwrap_or(0.0));
        for i in (1..pr.len()).rev() {
            if pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i];
            }
        }
        // searchsorted(rc, r, side='left'): the first index with rc >= r; past the end gives 0.
        let q = rec.iter().map(|&r| pr.get(rc.partition_point(|&x| x < r)).copied().unwrap_or(0.0)).collect();
        precision.push(q);
    }
    Some(Accumulated { precision, recall })
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        sum += v;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// COCO AP of `dets` against `gts` (pycocotools' `COCOeval` with default parameters). Categories
/// are those occurring in either list; one without counted ground truth is left out of the means.
pub fn evaluate(gts: &[Gt], dets: &[Det], kind: IouKind) -> Result<CocoSummary, CocoError> {
    check(gts, dets, kind)?;
    let thresholds = iou_thresholds();
    let rec = recall_points();
    let mut categories: Vec<u32> = gts.iter().map(|g| g.category).chain(dets.iter().map(|d| d.category)).collect();
    categories.sort_unstable();
    categories.dedup();
    let mut images: Vec<usize> = gts.iter().map(|g| g.image).chain(dets.iter().map(|d| d.image)).collect();
    images.sort_unstable();
    images.dedup();
    let mut gt_at: std::collections::BTreeMap<(u32, usize), Vec<&Gt>> = Default::default();
    for g in gts {
        gt_at.entry((g.category, g.image)).or_default().push(g);
    }
    let mut det_at: std::collections::BTreeMap<(u32, usize), Vec<&Det>> = Default::default();
    for d in dets {
        det_at.entry((d.category, d.image)).or_default().push(d);
    }

    // [area range][category] -> per-threshold precision and recall
    let mut results: Vec<Vec<Option<Accumulated>>> = (0..AREA_RANGES.len()).map(|_| Vec::new()).collect();
    for &c in &categories {
        let mut per_range: Vec<Vec<ImageEval>> = (0..AREA_RANGES.len()).map(|_| Vec::new()).collect();
        for &im in &images {
            let g: &[&Gt] = gt_at.get(&(c, im)).map_or(&[], Vec::as_slice);
            let d_all: &[&Det] = det_at.get(&(c, im)).map_or(&[], Vec::as_slice);
            if g.is_empty() && d_all.is_empty() {
                continue;
            }
            let mut idx: Vec<usize> = (0..d_all.len()).collect();
            by_score_desc(&mut idx, |i| d_all[i].score);
            idx.truncate(MAX_DETS);
            let d: Vec<&Det> = idx.iter().map(|&i| d_all[i]).collect();
            let ious: Vec<Vec<f64>> = d.iter().map(|d| g.iter().map(|g| iou(&d.shape, &g.shape, g.crowd)).collect()).collect();
            for (a, &range) in AREA_RANGES.iter().enumerate() {
                per_range[a].push(evaluate_image(g, &d, &ious, range, &thresholds));
            }
        }
        for (a, evals) in per_range.iter().enumerate() {
            results[a].push(accumulate(evals, thresholds.len(), &rec));
        }
    }
    let ap = |a: usize, t: Option<usize>| {
        mean(
            results[a]
                .iter()
                .flatten()
                .flat_map(|acc| acc.precision.iter().enumerate().filter(move |(ti, _)| t.is_none_or(|t| t == *ti)).flat_map(|(_, q)| q.iter().copied())),
        )
    };
    Ok(CocoSummary {
        ap: ap(0, None),
        ap50: ap(0, Some(0)),
        ap75: ap(0, Some(5)),
        ap_small: ap(1, None),
        ap_medium: ap(2, None),
        ap_large: ap(3, None),
        ar100: mean(results[0].iter().flatten().flat_map(|acc| acc.recall.iter().copied())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt(image: usize, b: [f64; 4]) -> Gt {
        Gt { image, category: 1, shape: Shape::Box(b), crowd: false }
    }
    fn det(image: usize, score: f64, b: [f64; 4]) -> Det {
        Det { image, category: 1, score, shape: Shape::Box(b) }
    }
    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn thresholds_and_recall_points_are_numpys() {
        let t = iou_thresholds();
        assert_eq!(t[0], 0.5);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[8], 0.8999999999999999);
        let r = recall_points();
        // np.linspace(0, 1, 101)[35] is 35 * 0.01, not 0.35.
        assert_eq!(r[35], 35.0 * 0.01);
        assert_ne!(r[35], 0.35);
    }

    #[test]
    fn box_iou_with_the_crowd_rule() {
        let a = Shape::Box([0.0, 0.0, 10.0, 10.0]);
        let b = Shape::Box([5.0, 0.0, 10.0, 10.0]);
        assert_eq!(iou(&a, &b, false), 50.0 / 150.0);
        // crowd: the union is the detection's area
        assert_eq!(iou(&a, &b, true), 0.5);
        assert_eq!(iou(&a, &Shape::Box([10.0, 0.0, 5.0, 5.0]), false), 0.0);
    }

    #[test]
    fn mask_iou_with_the_crowd_rule() {
        let m = |on: &[usize]| Shape::Mask(Mask { w: 4, h: 1, bits: (0..4).map(|i| on.contains(&i)).collect() });
        assert_eq!(iou(&m(&[0, 1]), &m(&[1, 2, 3]), false), 0.25);
        assert_eq!(iou(&m(&[0, 1]), &m(&[1, 2, 3]), true), 0.5);
        assert_eq!(iou(&m(&[0]), &m(&[3]), true), 0.0);
    }

    #[test]
    fn one_perfect_detection_is_ap_1() {
        let s = evaluate(&[gt(0, [0.0, 0.0, 10.0, 10.0])], &[det(0, 0.9, [0.0, 0.0, 10.0, 10.0])], IouKind::Box).unwrap();
        assert!(close(s.ap, 1.0) && close(s.ap50, 1.0) && close(s.ap75, 1.0) && close(s.ar100, 1.0), "{s:?}");
        // 100 px is small; no medium or large ground truth
        assert!(close(s.ap_small, 1.0) && s.ap_medium.is_none() && s.ap_large.is_none(), "{s:?}");
    }

    #[test]
    fn a_false_positive_scored_higher_halves_precision() {
        // Recall 1 is reached at the second detection with precision 1/2 (minus pycocotools' eps).
        let s =
            evaluate(&[gt(0, [0.0, 0.0, 10.0, 10.0])], &[det(0, 0.9, [50.0, 50.0, 10.0, 10.0]), det(0, 0.8, [0.0, 0.0, 10.0, 10.0])], IouKind::Box).unwrap();
        let half = 1.0 / (2.0 + f64::EPSILON);
        assert!(close(s.ap, half) && close(s.ap50, half), "{s:?}");
        // Ranked the other way round the false positive comes after full recall: AP 1.
        let s =
            evaluate(&[gt(0, [0.0, 0.0, 10.0, 10.0])], &[det(0, 0.7, [50.0, 50.0, 10.0, 10.0]), det(0, 0.8, [0.0, 0.0, 10.0, 10.0])], IouKind::Box).unwrap();
        assert!(close(s.ap, 1.0), "{s:?}");
    }

    #[test]
    fn partial_overlap_counts_only_below_its_iou() {
        // IoU 0.6 exactly (60 / 100): a true positive at thresholds 0.50, 0.55, 0.60 (≥), missed above.
        let s = evaluate(&[gt(0, [0.0, 0.0, 10.0, 10.0])], &[det(0, 0.9, [0.0, 0.0, 6.0, 10.0])], IouKind::Box).unwrap();
        assert!(close(s.ap, 0.3) && close(s.ap50, 1.0) && close(s.ap75, 0.0), "{s:?}");
    }

    #[test]
    fn no_detections_is_0_and_no_ground_truth_is_none() {
        let s = evaluate(&[gt(0, [0.0, 0.0, 10.0, 10.0])], &[], IouKind::Box).unwrap();
        assert!(close(s.ap, 0.0) && close(s.ar100, 0.0), "{s:?}");
        let s = evaluate(&[], &[det(0, 0.9, [0.0, 0.0, 10.0, 10.0])], IouKind::Box).unwrap();
        assert_eq!(s.ap, None);
        // only crowd ground truth: nothing counts
        let crowd = Gt { crowd: true, ..gt(0, [0.0, 0.0, 10.0, 10.0]) };
        assert_eq!(evaluate(&[crowd], &[det(0, 0.9, [0.0, 0.0, 10.0, 10.0])], IouKind::Box).unwrap().ap, None);
    }

    #[test]
    fn detections_on_a_crowd_are_ignored_and_it_matches_repeatedly() {
        let crowd = Gt { crowd: true, ..gt(0, [0.0, 0.0, 100.0, 100.0]) };
        let dets = [det(0, 0.9, [10.0, 10.0, 5.0, 5.0]), det(0, 0.8, [20.0, 20.0, 5.0, 5.0]), det(0, 0.5, [200.0, 0.0, 10.0, 10.0])];
        let s = evaluate(&[crowd, gt(0, [200.0, 0.0, 10.0, 10.0])], &dets, IouKind::Box).unwrap();
        assert!(close(s.ap, 1.0), "{s:?}");
    }

    #[test]
    fn categories_without_ground_truth_are_left_out() {
        let mut d = det(0, 0.9, [0.0, 0.0, 10.0, 10.0]);
        d.category = 2;
        let s = evaluate(&[gt(0, [0.0, 0.0, 10.0, 10.0])], &[det(0, 0.9, [0.0, 0.0, 10.0, 10.0]), d], IouKind::Box).unwrap();
        assert!(close(s.ap, 1.0), "{s:?}");
    }

    #[test]
    fn wrong_shapes_and_scores_are_refused() {
        let m = Shape::Mask(Mask { w: 2, h: 1, bits: vec![true, false] });
        let e = evaluate(&[gt(0, [0.0, 0.0, 1.0, 1.0])], &[], IouKind::Mask).unwrap_err();
        assert!(matches!(e, CocoError::WrongShape { found: "box", .. }), "{e}");
        let e = evaluate(&[], &[Det { shape: m, ..det(0, 0.5, [0.0; 4]) }], IouKind::Box).unwrap_err();
        assert!(matches!(e, CocoError::WrongShape { what: "detection", found: "mask", .. }), "{e}");
        let e = evaluate(&[], &[det(0, f64::NAN, [0.0; 4])], IouKind::Box).unwrap_err();
        assert!(matches!(e, CocoError::BadScore { index: 0, .. }), "{e}");
        let a = Shape::Mask(Mask { w: 2, h: 1, bits: vec![true, false] });
        let b = Shape::Mask(Mask { w: 1, h: 2, bits: vec![true, false] });
        let e = evaluate(&[Gt { shape: a, ..gt(3, [0.0; 4]) }, Gt { shape: b, ..gt(3, [0.0; 4]) }], &[], IouKind::Mask).unwrap_err();
        assert!(matches!(e, CocoError::MaskSizes { image: 3, .. }), "{e}");
    }
}
