//! Frame geometry: every stored frame is S×S 8-bit grayscale. A source frame is scaled, keeping
//! its aspect ratio, so that its longer side is S, and centred on a black S×S canvas
//! (letterbox). Ultrasound sectors already sit on black, so the padding adds no new edges, and
//! no anatomy is cropped away or stretched.

/// Size of the scaled image inside the S×S canvas for a w×h source.
pub fn fit(w: u32, h: u32, size: u32) -> (u32, u32) {
    if w == 0 || h == 0 {
        return (size, size);
    }
    if w >= h {
        let sh = ((h as u64 * size as u64 + w as u64 / 2) / w as u64).max(1) as u32;
        (size, sh)
    } else {
        let sw = ((w as u64 * size as u64 + h as u64 / 2) / h as u64).max(1) as u32;
        (sw, size)
    }
}

/// Copies a `w`×`h` image (rows `stride` bytes apart) to the centre of a zeroed S×S canvas
/// appended to `out`.
pub fn letterbox_into(out: &mut Vec<u8>, src: &[u8], w: usize, h: usize, stride: usize, size: usize) {
    let start = out.len();
    out.resize(start + size * size, 0);
    let x0 = (size - w.min(size)) / 2;
    let y0 = (size - h.min(size)) / 2;
    for y in 0..h.min(size) {
        let row = &src[y * stride..y * stride + w.min(size)];
        let dst = start + (y0 + y) * size + x0;
        out[dst..dst + row.len()].copy_from_slice(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect() {
        assert_eq!(fit(350, 350, 256), (256, 256));
        assert_eq!(fit(640, 480, 256), (256, 192));
        assert_eq!(fit(484, 604, 256), (205, 256));
        assert_eq!(fit(5000, 1, 64), (64, 1));
    }

    #[test]
    fn letterbox_centres() {
        let src = [1u8, 2, 9, 3, 4, 9]; // 2×2 with stride 3
        let mut out = vec![7u8];
        letterbox_into(&mut out, &src, 2, 2, 3, 4);
        assert_eq!(out[0], 7);
        assert_eq!(&out[1..], &[0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0]);
    }
}
