//! Lesion masks (store format 4): what is measured of a stored S×S mask, and an instance as a
//! reader gets it. A mask is one byte per pixel, 1 = lesion, 0 = background, row-major like a
//! frame.

use super::index::MaskRow;

/// Lesion pixels and the bounding box `[x, y, w, h]` (w, h count pixels: max − min + 1) of an
/// S×S mask; None for the box when it has no lesion pixel. Any nonzero byte is lesion.
pub fn measure(mask: &[u8], size: usize) -> (i64, Option<[i32; 4]>) {
    let (mut n, mut x0, mut y0, mut x1, mut y1) = (0i64, usize::MAX, usize::MAX, 0usize, 0usize);
    for (y, row) in mask.chunks(size.max(1)).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            if v != 0 {
                n += 1;
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    let bbox = (n > 0).then(|| [x0 as i32, y0 as i32, (x1 - x0 + 1) as i32, (y1 - y0 + 1) as i32]);
    (n, bbox)
}

/// One lesion of a stored frame: its row of masks.parquet and its S×S mask (a slice of the
/// memory-mapped masks.u8, 0/1 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    pub row: &'a MaskRow,
    pub mask: &'a [u8],
}

impl Instance<'_> {
    /// `[x, y, w, h]` in stored coordinates.
    pub fn bbox(&self) -> [i32; 4] {
        self.row.bbox.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_pixels_and_box() {
        let mut m = vec![0u8; 16];
        assert_eq!(measure(&m, 4), (0, None));
        m[4 + 1] = 1; // (1, 1)
        m[2 * 4 + 3] = 255; // (3, 2)
        assert_eq!(measure(&m, 4), (2, Some([1, 1, 3, 2])));
    }
}
