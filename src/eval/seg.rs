//! Segmentation metrics per image on binary masks (row-major, `w × h`): Dice, IoU and boundary
//! F1. Conventions: when both the prediction and the truth are empty, Dice, IoU and boundary F1
//! are 1 (nothing to find, nothing claimed); when exactly one is empty they are 0.
//!
//! Boundary F1 (Csurka et al., BMVC 2013; the F measure of DAVIS): a mask's boundary is its pixels
//! with a 4-neighbour outside the mask or outside the image; boundary precision is the share of
//! predicted boundary pixels within `tolerance` pixels (Euclidean, centre to centre) of a true
//! boundary pixel, recall the reverse, F1 their harmonic mean (0 when both are 0).

use super::mask::Mask;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SegScores {
    pub dice: f64,
    pub iou: f64,
    pub boundary_f1: f64,
}

/// The three scores of one image.
pub fn scores(pred: &Mask, truth: &Mask, tolerance: f64) -> SegScores {
    SegScores { dice: dice(pred, truth), iou: iou(pred, truth), boundary_f1: boundary_f1(pred, truth, tolerance) }
}

fn counts(pred: &Mask, truth: &Mask) -> (usize, usize, usize) {
    assert_eq!((pred.w, pred.h), (truth.w, truth.h), "masks of different sizes");
    assert_eq!(pred.bits.len(), pred.w * pred.h);
    assert_eq!(truth.bits.len(), truth.w * truth.h);
    let both = pred.bits.iter().zip(&truth.bits).filter(|(p, t)| **p && **t).count();
    (both, pred.bits.iter().filter(|b| **b).count(), truth.bits.iter().filter(|b| **b).count())
}

/// 2|P∩T| / (|P| + |T|).
pub fn dice(pred: &Mask, truth: &Mask) -> f64 {
    let (both, p, t) = counts(pred, truth);
    if p + t == 0 {
        1.0
    } else {
        2.0 * both as f64 / (p + t) as f64
    }
}

/// |P∩T| / |P∪T|.
pub fn iou(pred: &Mask, truth: &Mask) -> f64 {
    let (both, p, t) = counts(pred, truth);
    let union = p + t - both;
    if union == 0 {
        1.0
    } else {
        both as f64 / union as f64
    }
}

/// Pixels of the mask with a 4-neighbour outside it (or outside the image).
pub fn boundary(m: &Mask) -> Vec<bool> {
    let at = |x: isize, y: isize| x >= 0 && y >= 0 && (x as usize) < m.w && (y as usize) < m.h && m.bits[y as usize * m.w + x as usize];
    let mut out = vec![false; m.w * m.h];
    for y in 0..m.h as isize {
        for x in 0..m.w as isize {
            if at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1)) {
                out[y as usize * m.w + x as usize] = true;
            }
        }
    }
    out
}

/// Share of `from`'s set pixels that lie within `tolerance` of a set pixel of `to`.
fn matched_share(from: &[bool], to: &[bool], w: usize, h: usize, tolerance: f64) -> f64 {
    let r = tolerance.floor() as isize;
    let r2 = tolerance * tolerance;
    let (mut total, mut hit) = (0usize, 0usize);
    for y in 0..h as isize {
        for x in 0..w as isize {
            if !from[y as usize * w + x as usize] {
                continue;
            }
            total += 1;
            let near = (-r..=r).any(|dy| {
                (-r..=r).any(|dx| {
                    let (u, v) = (x + dx, y + dy);
                    ((dx * dx + dy * dy) as f64) <= r2 && u >= 0 && v >= 0 && (u as usize) < w && (v as usize) < h && to[v as usize * w + u as usize]
                })
            });
            hit += near as usize;
        }
    }
    if total == 0 {
        0.0
    } else {
        hit as f64 / total as f64
    }
}

/// Boundary F1 at `tolerance` pixels.
pub fn boundary_f1(pred: &Mask, truth: &Mask, tolerance: f64) -> f64 {
    counts(pred, truth);
    let (bp, bt) = (boundary(pred), boundary(truth));
    match (bp.iter().any(|b| *b), bt.iter().any(|b| *b)) {
        (false, false) => return 1.0,
        (false, true) | (true, false) => return 0.0,
        _ => {}
    }
    let precision = matched_share(&bp, &bt, pred.w, pred.h, tolerance);
    let recall = matched_share(&bt, &bp, pred.w, pred.h, tolerance);
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rect(w: usize, h: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Vec<bool> {
        (0..w * h).map(|i| (x0..x1).contains(&(i % w)) && (y0..y1).contains(&(i / w))).collect()
    }

    fn m(bits: &[bool], w: usize) -> Mask {
        Mask { w, h: bits.len() / w, bits: bits.to_vec() }
    }

    #[test]
    fn hand_computed_cases() {
        // 10×10: truth 4×4 at (2,2), prediction 4×4 at (4,2): overlap 2×4 = 8.
        let t = rect(10, 10, 2, 2, 6, 6);
        let p = rect(10, 10, 4, 2, 8, 6);
        assert!((dice(&m(&p, 10), &m(&t, 10)) - 0.5).abs() < 1e-12);
        assert!((iou(&m(&p, 10), &m(&t, 10)) - 8.0 / 24.0).abs() < 1e-12);
        // A 4×4 square's boundary is its 12 outer pixels.
        assert_eq!(boundary(&m(&t, 10)).iter().filter(|b| **b).count(), 12);
        // Shifted by 2: of the prediction's 12 boundary pixels, 8 are within 1 px of the truth's
        // boundary: (4..=6, 2), (4..=6, 5), (4, 3), (4, 4); (7, y) are not. Recall is the same by
        // symmetry, so F1 = 2/3.
        let f = boundary_f1(&m(&p, 10), &m(&t, 10), 1.0);
        assert!((f - 2.0 / 3.0).abs() < 1e-12, "{f}");
        // Same masks: all 1; both empty: 1; one empty: 0.
        let s = scores(&m(&t, 10), &m(&t, 10), 2.0);
        assert_eq!((s.dice, s.iou, s.boundary_f1), (1.0, 1.0, 1.0));
        let empty = vec![false; 100];
        let s = scores(&m(&empty, 10), &m(&empty, 10), 2.0);
        assert_eq!((s.dice, s.iou, s.boundary_f1), (1.0, 1.0, 1.0));
        let s = scores(&m(&p, 10), &m(&empty, 10), 2.0);
        assert_eq!((s.dice, s.iou, s.boundary_f1), (0.0, 0.0, 0.0));
    }

    /// Boundary F1 by brute force: every pair of boundary pixels.
    fn naive_bf1(p: &[bool], t: &[bool], w: usize, tol: f64) -> f64 {
        let pts = |b: &[bool]| -> Vec<(f64, f64)> { b.iter().enumerate().filter(|(_, v)| **v).map(|(i, _)| ((i % w) as f64, (i / w) as f64)).collect() };
        let (bp, bt) = (pts(&boundary(&m(p, w))), pts(&boundary(&m(t, w))));
        if bp.is_empty() && bt.is_empty() {
            return 1.0;
        }
        if bp.is_empty() || bt.is_empty() {
            return 0.0;
        }
        let share = |a: &[(f64, f64)], b: &[(f64, f64)]| {
            a.iter().filter(|(x, y)| b.iter().any(|(u, v)| ((x - u).powi(2) + (y - v).powi(2)).sqrt() <= tol)).count() as f64 / a.len() as f64
        };
        let (pr, rc) = (share(&bp, &bt), share(&bt, &bp));
        if pr + rc == 0.0 {
            0.0
        } else {
            2.0 * pr * rc / (pr + rc)
        }
    }

    #[test]
    fn boundary_f1_equals_a_brute_force_on_random_masks() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..200 {
            let (w, h) = (rng.gen_range(1..20), rng.gen_range(1..20));
            let blob = |rng: &mut ChaCha8Rng| -> Vec<bool> {
                let density = rng.gen_range(0.0..1.0);
                (0..w * h).map(|_| rng.gen_bool(density)).collect()
            };
            let (p, t) = (blob(&mut rng), blob(&mut rng));
            let tol = [0.0, 1.0, 1.5, 2.0, 3.7][case % 5];
            let (fast, slow) = (boundary_f1(&m(&p, w), &m(&t, w), tol), naive_bf1(&p, &t, w, tol));
            assert!((fast - slow).abs() < 1e-12, "case {case} ({w}×{h}, tol {tol}): {fast} vs {slow}");
        }
    }
}
