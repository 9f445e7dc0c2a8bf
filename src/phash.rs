//! The perceptual hash of one stored frame (docs/AUDIT.md, "Frame hash"): a DCT hash (pHash) of
//! the inside of the scan region, not of the whole letterboxed frame. The black borders, the fan
//! outline and the text around it are alike in every clip of one scanner; hashed whole, they make
//! distinct clips look the same. Pure: ingest stores the hash in frames.parquet (store format 3) and
//! the audit recomputes it for older versions with this same function.

/// Side of the block of lowest DCT frequencies kept: 8 × 8 less the DC term = 63 bits.
pub const BLOCK: usize = 8;
/// The scan region is resampled to GRID × GRID before the DCT.
pub const GRID: usize = 32;
/// The part of the scan region's bounding box that is hashed (fractions of its height and width):
/// below the probe's apex and away from the sides of a sector, where tissue fills the box.
const ROWS: (f64, f64) = (0.3, 0.9);
const COLS: (f64, f64) = (0.2, 0.8);

/// A row or column belongs to the scan region when at least this share of the busiest one's
/// pixels are bright: thin text lines and calipers fall below it.
const LINE_SHARE: f64 = 0.1;

/// Hamming distance between two hashes.
pub fn distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// The scan region's bounding box `(y0, y1, x0, x1)` (end exclusive) in a `size × size` frame.
/// A pixel is bright when it exceeds the frame's dark level (10th percentile of its non-zero
/// pixels) by max(8, 15 % of the span to its 95th percentile): the threshold follows brightness
/// and gain changes, and letterbox padding (exactly 0) never counts. A frame with nothing bright
/// is its own box.
pub fn scan_box(frame: &[u8], size: usize) -> (usize, usize, usize, usize) {
    let whole = (0, size, 0, size);
    let mut hist = [0usize; 256];
    for &p in frame {
        hist[p as usize] += 1;
    }
    let nonzero: usize = hist[1..].iter().sum();
    if nonzero == 0 {
        return whole;
    }
    let percentile = |q: f64| {
        let rank = ((q * nonzero as f64).ceil() as usize).clamp(1, nonzero);
        let mut seen = 0;
        (1..256)
            .find(|&v| {
                seen += hist[v];
                seen >= rank
            })
            .unwrap_or(255) as f64
    };
    let (lo, hi) = (percentile(0.10), percentile(0.95));
    let threshold = lo + (0.15 * (hi - lo)).max(8.0);
    let mut rows = vec![0usize; size];
    let mut cols = vec![0usize; size];
    for (y, row) in frame.chunks_exact(size).enumerate() {
        for (x, &p) in row.iter().enumerate() {
            if f64::from(p) > threshold {
                rows[y] += 1;
                cols[x] += 1;
            }
        }
    }
    let span = |counts: &[usize]| {
        let most = *counts.iter().max().unwrap_or(&0);
        let keep = |&(_, &c): &(usize, &usize)| most > 0 && c as f64 >= LINE_SHARE * most as f64;
        let first = counts.iter().enumerate().find(keep).map(|(i, _)| i)?;
        let last = counts.iter().enumerate().rev().find(keep).map(|(i, _)| i)?;
        Some((first, last + 1))
    };
    match (span(&rows), span(&cols)) {
        (Some((y0, y1)), Some((x0, x1))) => (y0, y1, x0, x1),
        _ => whole,
    }
}

/// `[start + ⌊a·len⌋, start + max(⌊b·len⌋, ⌊a·len⌋ + 1))`: never empty.
fn part(start: usize, end: usize, (a, b): (f64, f64)) -> (usize, usize) {
    let len = (end - start) as f64;
    let from = (a * len) as usize;
    (start + from, start + ((b * len) as usize).max(from + 1))
}

/// Mean of each cell of a GRID × GRID partition of the rectangle (area resampling); a rectangle
/// smaller than the grid repeats its pixels.
fn resample(frame: &[u8], size: usize, (y0, y1, x0, x1): (usize, usize, usize, usize)) -> Vec<f64> {
    let (h, w) = (y1 - y0, x1 - x0);
    // Integral image of the rectangle: sum[y][x] = Σ pixels above and left of (y, x).
    let mut sum = vec![0u64; (h + 1) * (w + 1)];
    for y in 0..h {
        let mut run = 0u64;
        for x in 0..w {
            run += u64::from(frame[(y0 + y) * size + x0 + x]);
            sum[(y + 1) * (w + 1) + x + 1] = sum[y * (w + 1) + x + 1] + run;
        }
    }
    let edges = |n: usize, i: usize| {
        let a = i * n / GRID;
        (a, ((i + 1) * n / GRID).max(a + 1).min(n))
    };
    let mut out = vec![0.0; GRID * GRID];
    for i in 0..GRID {
        let (ya, yb) = edges(h, i);
        for j in 0..GRID {
            let (xa, xb) = edges(w, j);
            let s = sum[yb * (w + 1) + xb] + sum[ya * (w + 1) + xa] - sum[ya * (w + 1) + xb] - sum[yb * (w + 1) + xa];
            out[i * GRID + j] = s as f64 / ((yb - ya) * (xb - xa)) as f64;
        }
    }
    out
}

/// Row k of the orthonormal DCT-II matrix of size GRID.
fn dct_row(k: usize) -> [f64; GRID] {
    let n = GRID as f64;
    let scale = if k == 0 { (1.0 / n).sqrt() } else { (2.0 / n).sqrt() };
    std::array::from_fn(|i| scale * (std::f64::consts::PI * (2 * i + 1) as f64 * k as f64 / (2.0 * n)).cos())
}

/// The BLOCK × BLOCK lowest-frequency DCT coefficients of a GRID × GRID image, row-major.
fn low_dct(img: &[f64]) -> Vec<f64> {
    let c: Vec<[f64; GRID]> = (0..BLOCK).map(dct_row).collect();
    // t = C_k · img (BLOCK × GRID), then t · C_kᵀ.
    let t: Vec<[f64; GRID]> = c.iter().map(|ck| std::array::from_fn(|x| (0..GRID).map(|y| ck[y] * img[y * GRID + x]).sum())).collect();
    let mut out = Vec::with_capacity(BLOCK * BLOCK);
    for tu in &t {
        for cv in &c {
            out.push((0..GRID).map(|x| tu[x] * cv[x]).sum());
        }
    }
    out
}

/// The frame's 63-bit pHash: bit i (i = 0..63) is set when the i-th of the BLOCK × BLOCK lowest DCT
/// coefficients after the DC term (row-major) exceeds their median. Bit 63 is always 0.
pub fn phash(frame: &[u8], size: usize) -> u64 {
    debug_assert_eq!(frame.len(), size * size);
    let (y0, y1, x0, x1) = scan_box(frame, size);
    let (ry0, ry1) = part(y0, y1, ROWS);
    let (rx0, rx1) = part(x0, x1, COLS);
    let coeffs = low_dct(&resample(frame, size, (ry0, ry1.min(size), rx0, rx1.min(size))));
    let ac = &coeffs[1..];
    let mut sorted = ac.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    ac.iter().enumerate().fold(0u64, |h, (i, &v)| if v > median { h | 1 << i } else { h })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sector-shaped "scan" with tissue texture `seed`, drawn into a size × size frame.
    fn fan(size: usize, seed: u64, gain: f64, offset: f64) -> Vec<u8> {
        let mut f = vec![0u8; size * size];
        let c = size as f64 / 2.0;
        for y in 0..size {
            for x in 0..size {
                let (dy, dx) = (y as f64 - size as f64 * 0.05, x as f64 - c);
                let r = (dy * dy + dx * dx).sqrt();
                if dy > 0.0 && dx.abs() < dy * 0.8 && r < size as f64 * 0.9 {
                    let (u, v) = (x as f64 / size as f64, y as f64 / size as f64);
                    let s = seed as f64;
                    let t = 90.0 + 50.0 * (u * (3.0 + s) * 6.3).sin() * (v * (2.0 + s * 0.7) * 6.3).cos() + 30.0 * (v * 9.0 + s).sin();
                    f[y * size + x] = (t * gain + offset).clamp(0.0, 255.0) as u8;
                }
            }
        }
        f
    }

    #[test]
    fn the_dct_rows_are_orthonormal() {
        for a in 0..BLOCK {
            for b in 0..BLOCK {
                let dot: f64 = dct_row(a).iter().zip(dct_row(b)).map(|(x, y)| x * y).sum();
                assert!((dot - f64::from(a == b)).abs() < 1e-12, "{a} {b} {dot}");
            }
        }
    }

    #[test]
    fn low_dct_equals_the_textbook_double_sum() {
        let img: Vec<f64> = (0..GRID * GRID).map(|i| ((i * 37 + 11) % 251) as f64).collect();
        let got = low_dct(&img);
        let n = GRID as f64;
        let alpha = |k: usize| if k == 0 { (1.0 / n).sqrt() } else { (2.0 / n).sqrt() };
        for u in 0..BLOCK {
            for v in 0..BLOCK {
                let mut s = 0.0;
                for y in 0..GRID {
                    for x in 0..GRID {
                        let cy = (std::f64::consts::PI * (2 * y + 1) as f64 * u as f64 / (2.0 * n)).cos();
                        let cx = (std::f64::consts::PI * (2 * x + 1) as f64 * v as f64 / (2.0 * n)).cos();
                        s += img[y * GRID + x] * cy * cx;
                    }
                }
                let want = alpha(u) * alpha(v) * s;
                assert!((got[u * BLOCK + v] - want).abs() < 1e-6 * want.abs().max(1.0), "{u},{v}: {} vs {want}", got[u * BLOCK + v]);
            }
        }
    }

    #[test]
    fn resampling_averages_cells_and_repeats_small_rectangles() {
        let size = 64;
        let frame: Vec<u8> = (0..size * size).map(|i| if (i % size) < 32 { 10 } else { 200 }).collect();
        let g = resample(&frame, size, (0, 64, 0, 64));
        assert_eq!(g[0], 10.0);
        assert_eq!(g[GRID - 1], 200.0);
        // A 2 × 2 rectangle: every cell is one of its pixels.
        let g = resample(&frame, size, (0, 2, 31, 33));
        assert!(g.iter().all(|&v| v == 10.0 || v == 200.0));
        assert_eq!(g[0], 10.0);
        assert_eq!(g[GRID - 1], 200.0);
    }

    #[test]
    fn the_box_is_the_scan_not_the_padding_nor_a_text_line() {
        let size = 128;
        let mut f = fan(size, 1, 1.0, 0.0);
        // A short text line in the top padding (10 of 128 pixels: under a tenth of the widest row).
        for x in 10..20 {
            f[2 * size + x] = 255;
        }
        // The apex is at row 6.4 and row y is 1.6·(y − 6.4) wide: rows narrower than a tenth of the
        // widest (128) end at y = 14. The arc ends 115.2 below the apex (row 121); the widest rows
        // span the frame.
        assert_eq!(scan_box(&f, size), (14, 122, 0, 128));
        // A narrower scan: the box follows it.
        let mut narrow = vec![0u8; size * size];
        for y in 20..100 {
            for x in 30..90 {
                narrow[y * size + x] = 60 + ((x * 7 + y * 3) % 50) as u8;
            }
        }
        assert_eq!(scan_box(&narrow, size), (20, 100, 30, 90));
        assert_eq!(scan_box(&vec![0; size * size], size), (0, size, 0, size));
    }

    #[test]
    fn copies_stay_close_and_other_tissue_does_not() {
        let size = 128;
        let a = phash(&fan(size, 1, 1.0, 0.0), size);
        let b = phash(&fan(size, 4, 1.0, 0.0), size);
        assert_eq!(a >> 63, 0);
        assert!(distance(a, b) > 16, "distinct textures: {}", distance(a, b));
        // Brightness and gain move the threshold with them.
        assert!(distance(a, phash(&fan(size, 1, 1.1, 12.0), size)) <= 4);
        assert!(distance(a, phash(&fan(size, 1, 0.9, -4.0), size)) <= 4);
        // Same scan at another resolution (a rescaled copy after letterboxing).
        let big = fan(256, 1, 1.0, 0.0);
        assert!(distance(a, phash(&big, 256)) <= 6, "{}", distance(a, phash(&big, 256)));
        // The same fan outline with other tissue inside is not a copy: the outline is not hashed.
        let mut mixed = fan(size, 1, 1.0, 0.0);
        let other = fan(size, 4, 1.0, 0.0);
        for i in 0..size * size {
            if mixed[i] > 0 {
                mixed[i] = other[i].max(1);
            }
        }
        assert!(distance(a, phash(&mixed, size)) > 16);
    }
}
