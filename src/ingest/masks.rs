//! Lesion masks of still images (`[source.masks]`, docs/manifest-format.md): each mask file is
//! decoded, checked to have its image's size, and brought into the frame's geometry: scaled to
//! the same fitted size with nearest-neighbour sampling (so a mask stays 0/1, no blended edge),
//! then letterboxed on the same S×S canvas. One mask file is one instance: the files are how the
//! annotators separated lesions, and two touching lesions drawn in two files stay two, while one
//! lesion drawn with a gap stays one (connected components would split or merge them).

use super::geometry::{fit, letterbox_into};
use crate::manifest::Problem;
use crate::store::writer::NewMask;
use std::path::Path;

/// A mask file as hashed before decoding.
#[derive(Debug, Clone)]
pub struct HashedMask {
    pub rel_path: String,
    pub path: std::path::PathBuf,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    /// Why it could not be hashed (unreadable, empty file).
    pub error: Option<String>,
}

/// What the masks of one image gave: the masks to store (none when any file was unusable: a
/// frame's masks are stored all or none), problems (the frame's masks are then not stored) and
/// notes (a lesion too small to survive the scaling).
#[derive(Debug, Default)]
pub struct MaskOutcome {
    pub masks: Vec<NewMask>,
    pub problems: Vec<Problem>,
    pub notes: Vec<Problem>,
}

/// Scales a `w`×`h` 0/1 mask to `sw`×`sh` by nearest neighbour: output pixel (x, y) takes source
/// pixel (⌊(2x+1)·w / 2sw⌋, ⌊(2y+1)·h / 2sh⌋), the source pixel under its centre.
pub fn nearest(src: &[u8], w: usize, h: usize, sw: usize, sh: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(sw * sh);
    for y in 0..sh {
        let sy = ((2 * y + 1) * h / (2 * sh)).min(h - 1);
        for x in 0..sw {
            let sx = ((2 * x + 1) * w / (2 * sw)).min(w - 1);
            out.push(src[sy * w + sx]);
        }
    }
    out
}

/// One mask file as 0/1 bytes (any nonzero colour channel is lesion; alpha is ignored), with its
/// width and height.
fn decode(path: &Path) -> Result<(Vec<u8>, usize, usize), String> {
    let img = image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| format!("not a decodable image: {e}"))?;
    let rgb = img.to_rgb16();
    let bits = rgb.pixels().map(|p| u8::from(p.0.iter().any(|&c| c != 0))).collect();
    Ok((bits, img.width() as usize, img.height() as usize))
}

/// Loads the masks of an image of `width`×`height` (its path relative to --raw is `image`) for
/// frames of `size`.
pub fn load(image: &str, masks: &[HashedMask], width: u32, height: u32, size: u32) -> MaskOutcome {
    let mut out = MaskOutcome::default();
    if masks.is_empty() {
        out.problems.push(Problem {
            path: image.to_string(),
            reason: "no mask file found for it by the source's [source.masks] rule; its frame is stored without masks (add the mask or fix the rule)".into(),
        });
        return out;
    }
    let (sw, sh) = fit(width, height, size);
    let mut stored = Vec::new();
    for m in masks {
        let bad = |why: String| Problem { path: m.rel_path.clone(), reason: format!("mask of {image}: {why}; none of the image's masks are stored") };
        let (Some(sha), None) = (&m.sha256, &m.error) else {
            out.problems.push(bad(m.error.clone().unwrap_or_else(|| "cannot be read".into())));
            continue;
        };
        let (bits, w, h) = match decode(&m.path) {
            Ok(d) => d,
            Err(e) => {
                out.problems.push(bad(e));
                continue;
            }
        };
        if (w, h) != (width as usize, height as usize) {
            out.problems.push(bad(format!("it is {w}×{h} but the image is {width}×{height}")));
            continue;
        }
        let source_pixels = bits.iter().map(|&b| i64::from(b)).sum();
        let scaled = nearest(&bits, w, h, sw as usize, sh as usize);
        let mut mask = Vec::with_capacity((size * size) as usize);
        letterbox_into(&mut mask, &scaled, sw as usize, sh as usize, sw as usize, size as usize);
        if source_pixels > 0 && mask.iter().all(|&b| b == 0) {
            out.notes.push(Problem {
                path: m.rel_path.clone(),
                reason: format!("its lesion of {source_pixels} pixels has none left at {size}×{size}; stored as an empty mask"),
            });
        }
        stored.push(NewMask { source_path: m.rel_path.clone(), source_sha256: sha.clone(), source_pixels, mask });
    }
    if out.problems.is_empty() {
        out.masks = stored;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_takes_the_pixel_under_each_centre() {
        // 4×2 → 2×1: centres at source (1, 1) and (3, 1).
        let src = [0, 1, 0, 0, 0, 2, 0, 3];
        assert_eq!(nearest(&src, 4, 2, 2, 1), vec![2, 3]);
        // 2×1 → 4×2: each source pixel becomes a 2×2 block.
        assert_eq!(nearest(&[5, 6], 2, 1, 4, 2), vec![5, 5, 6, 6, 5, 5, 6, 6]);
    }
}
