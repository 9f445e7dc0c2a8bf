//! Overlays for segmentation and detection reports: a stored gray frame with the outlines of the
//! true masks in green, the predicted ones in red (yellow where they coincide), and boxes drawn
//! as 1-pixel rectangles in the same colours, so that a reader sees what a Dice or an AP means.

use super::mask::Mask;
use super::seg::boundary;
use image::{Rgb, RgbImage};

pub const TRUTH: Rgb<u8> = Rgb([0, 220, 0]);
pub const PREDICTED: Rgb<u8> = Rgb([230, 0, 0]);
pub const BOTH: Rgb<u8> = Rgb([240, 220, 0]);

/// A box in pixels: x, y of the top-left corner, width, height (COCO's order).
pub type PixelBox = [usize; 4];

/// What to draw on one frame.
#[derive(Debug, Clone, Default)]
pub struct Marks<'a> {
    pub truth: Vec<&'a Mask>,
    pub predicted: Vec<&'a Mask>,
    pub truth_boxes: Vec<PixelBox>,
    pub predicted_boxes: Vec<PixelBox>,
}

/// The frame (`w × h` gray bytes) in colour with `marks` drawn on it.
pub fn overlay(gray: &[u8], w: usize, h: usize, marks: &Marks) -> RgbImage {
    assert_eq!(gray.len(), w * h, "frame of {} bytes is not {w}×{h}", gray.len());
    let mut truth = vec![false; w * h];
    let mut predicted = vec![false; w * h];
    for (layer, masks, boxes) in [(&mut truth, &marks.truth, &marks.truth_boxes), (&mut predicted, &marks.predicted, &marks.predicted_boxes)] {
        for m in masks {
            assert_eq!((m.w, m.h), (w, h), "a mask of another size than its frame");
            for (dst, b) in layer.iter_mut().zip(boundary(m)) {
                *dst |= b;
            }
        }
        for b in boxes {
            outline(layer, w, h, *b);
        }
    }
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        match (truth[i], predicted[i]) {
            (true, true) => BOTH,
            (true, false) => TRUTH,
            (false, true) => PREDICTED,
            (false, false) => Rgb([gray[i]; 3]),
        }
    })
}

/// Sets the 1-pixel outline of `b` (clipped to the frame).
fn outline(layer: &mut [bool], w: usize, h: usize, [x, y, bw, bh]: PixelBox) {
    if bw == 0 || bh == 0 || x >= w || y >= h {
        return;
    }
    let (x1, y1) = ((x + bw - 1).min(w - 1), (y + bh - 1).min(h - 1));
    for u in x..=x1 {
        layer[y * w + u] = true;
        layer[y1 * w + u] = true;
    }
    for v in y..=y1 {
        layer[v * w + x] = true;
        layer[v * w + x1] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(w: usize, h: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Vec<bool> {
        (0..w * h).map(|i| (x0..x1).contains(&(i % w)) && (y0..y1).contains(&(i / w))).collect()
    }

    #[test]
    fn outlines_and_boxes_in_their_colours() {
        let (w, h) = (12, 10);
        let gray: Vec<u8> = (0..w * h).map(|i| (i * 2) as u8).collect();
        // Truth x 2..6, y 2..6; prediction x 4..8, y 2..6: their top edges overlap at x 4, 5.
        let (t, p) = (Mask { w, h, bits: rect(w, h, 2, 2, 6, 6) }, Mask { w, h, bits: rect(w, h, 4, 2, 8, 6) });
        let marks = Marks { truth: vec![&t], predicted: vec![&p], truth_boxes: vec![], predicted_boxes: vec![[9, 0, 5, 3]] };
        let img = overlay(&gray, w, h, &marks);
        assert_eq!(*img.get_pixel(2, 2), TRUTH);
        assert_eq!(*img.get_pixel(7, 5), PREDICTED);
        assert_eq!(*img.get_pixel(4, 2), BOTH);
        assert_eq!(*img.get_pixel(5, 5), BOTH);
        // Inside the truth, off both outlines: the frame's own gray.
        assert_eq!(*img.get_pixel(3, 3), Rgb([gray[3 * w + 3]; 3]));
        // The box runs off the right edge: clipped, its corners and edges drawn.
        for (x, y) in [(9, 0), (11, 0), (9, 2), (11, 2), (9, 1), (11, 1)] {
            assert_eq!(*img.get_pixel(x, y), PREDICTED, "({x}, {y})");
        }
        assert_eq!(*img.get_pixel(10, 1), Rgb([gray[w + 10]; 3]), "a box is an outline");
        // Nothing to draw: the gray frame.
        let plain = overlay(&gray, w, h, &Marks::default());
        assert!(plain.enumerate_pixels().all(|(x, y, px)| *px == Rgb([gray[y as usize * w + x as usize]; 3])));
    }
}
