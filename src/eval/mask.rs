//! The binary mask every dense-task part shares (segmentation metrics, COCO AP, overlays,
//! instances from a segmentation): `w × h` pixels, row-major, pixel (x, y) at `bits[y * w + x]`.

/// A binary mask, row-major: pixel (x, y) is `bits[y * w + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub w: usize,
    pub h: usize,
    pub bits: Vec<bool>,
}

impl Mask {
    /// An empty `w × h` mask.
    pub fn empty(w: usize, h: usize) -> Mask {
        Mask { w, h, bits: vec![false; w * h] }
    }

    /// A mask from bytes (as the store keeps them): any nonzero byte is set.
    pub fn from_bytes(bytes: &[u8], w: usize, h: usize) -> Mask {
        assert_eq!(bytes.len(), w * h, "{} bytes are not a {w}×{h} mask", bytes.len());
        Mask { w, h, bits: bytes.iter().map(|&b| b != 0).collect() }
    }

    /// Set pixels.
    pub fn area(&self) -> usize {
        self.bits.iter().filter(|&&b| b).count()
    }

    /// `[x, y, w, h]` of the set pixels (w, h count pixels), None when none is set.
    pub fn bbox(&self) -> Option<[usize; 4]> {
        let mut b: Option<[usize; 4]> = None; // x0, y0, x1, y1
        for (i, _) in self.bits.iter().enumerate().filter(|(_, &v)| v) {
            let (x, y) = (i % self.w, i / self.w);
            b = Some(match b {
                None => [x, y, x, y],
                Some([x0, y0, x1, y1]) => [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
            });
        }
        b.map(|[x0, y0, x1, y1]| [x0, y0, x1 - x0 + 1, y1 - y0 + 1])
    }

    /// Pixel-wise union of masks of one size.
    pub fn union<'a>(w: usize, h: usize, masks: impl IntoIterator<Item = &'a Mask>) -> Mask {
        let mut out = Mask::empty(w, h);
        for m in masks {
            assert_eq!((m.w, m.h), (w, h), "masks of different sizes");
            for (o, &b) in out.bits.iter_mut().zip(&m.bits) {
                *o |= b;
            }
        }
        out
    }

    /// The 8-connected components of the set pixels, one mask each, in the order of their first
    /// pixel (row-major).
    pub fn components(&self) -> Vec<Mask> {
        let (w, h) = (self.w, self.h);
        let mut label = vec![usize::MAX; w * h];
        let mut out = Vec::new();
        let mut stack = Vec::new();
        for start in 0..w * h {
            if !self.bits[start] || label[start] != usize::MAX {
                continue;
            }
            let id = out.len();
            let mut m = Mask::empty(w, h);
            label[start] = id;
            stack.push(start);
            while let Some(i) = stack.pop() {
                m.bits[i] = true;
                let (x, y) = ((i % w) as isize, (i / w) as isize);
                for (dx, dy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                    let (u, v) = (x + dx, y + dy);
                    if u < 0 || v < 0 || u as usize >= w || v as usize >= h {
                        continue;
                    }
                    let j = v as usize * w + u as usize;
                    if self.bits[j] && label[j] == usize::MAX {
                        label[j] = id;
                        stack.push(j);
                    }
                }
            }
            out.push(m);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Components by repeated merging: start with one set per pixel and join 8-neighbours until
    /// nothing changes (quadratic, obviously right).
    fn naive_components(m: &Mask) -> Vec<Vec<usize>> {
        let on: Vec<usize> = (0..m.w * m.h).filter(|&i| m.bits[i]).collect();
        let mut comp: Vec<usize> = (0..on.len()).collect();
        let near = |a: usize, b: usize| {
            let (ax, ay, bx, by) = ((a % m.w) as isize, (a / m.w) as isize, (b % m.w) as isize, (b / m.w) as isize);
            (ax - bx).abs() <= 1 && (ay - by).abs() <= 1
        };
        loop {
            let mut changed = false;
            for i in 0..on.len() {
                for j in 0..on.len() {
                    if near(on[i], on[j]) && comp[i] != comp[j] {
                        let (keep, drop) = (comp[i].min(comp[j]), comp[i].max(comp[j]));
                        comp.iter_mut().filter(|c| **c == drop).for_each(|c| *c = keep);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut ids: Vec<usize> = comp.clone();
        ids.sort_unstable();
        ids.dedup();
        let mut sets: Vec<Vec<usize>> = ids.iter().map(|id| (0..on.len()).filter(|&k| comp[k] == *id).map(|k| on[k]).collect()).collect();
        sets.sort_by_key(|s| s[0]);
        sets
    }

    #[test]
    fn components_equal_a_naive_merge_on_random_masks() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for case in 0..150 {
            let (w, h) = (rng.gen_range(1..16), rng.gen_range(1..16));
            let density = rng.gen_range(0.0..0.7);
            let m = Mask { w, h, bits: (0..w * h).map(|_| rng.gen_bool(density)).collect() };
            let got: Vec<Vec<usize>> = m.components().iter().map(|c| (0..w * h).filter(|&i| c.bits[i]).collect()).collect();
            assert_eq!(got, naive_components(&m), "case {case} ({w}×{h})");
            assert_eq!(Mask::union(w, h, &m.components()), m, "case {case}: the components cover the mask");
        }
    }

    #[test]
    fn diagonal_neighbours_join_and_boxes_count_pixels() {
        // 5×3: (0,0) and (1,1) touch diagonally; (4,2) is alone.
        let mut m = Mask::empty(5, 3);
        for (x, y) in [(0, 0), (1, 1), (4, 2)] {
            m.bits[y * 5 + x] = true;
        }
        let c = m.components();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].area(), c[0].bbox()), (2, Some([0, 0, 2, 2])));
        assert_eq!(c[1].bbox(), Some([4, 2, 1, 1]));
        assert_eq!(Mask::empty(3, 3).bbox(), None);
        assert_eq!(Mask::from_bytes(&[0, 7, 0, 255], 2, 2).bits, vec![false, true, false, true]);
    }
}
