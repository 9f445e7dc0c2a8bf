//! Augmentation in two halves: drawing the parameters (pure, from the batch's seeded stream, done
//! by the loader) and applying them to a whole batch as tensor ops (wherever the batch lives, the
//! GPU when training there). Results depend only on the parameters, not on threads or device order.

use crate::config::AugmentConfig;
use crate::seed::Rng;
use rand::Rng as _;

/// One image's augmentation. The crop is a fraction of the (square) stored frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugParams {
    pub x0: f32,
    pub y0: f32,
    pub w: f32,
    pub h: f32,
    pub flip: bool,
    pub brightness: f32,
    pub contrast: f32,
}

impl AugParams {
    /// The whole frame, unchanged (validation).
    pub const IDENTITY: AugParams = AugParams { x0: 0.0, y0: 0.0, w: 1.0, h: 1.0, flip: false, brightness: 1.0, contrast: 1.0 };
}

/// Draws one image's parameters: random resized crop (area fraction in crop_scale, aspect ratio
/// log-uniform in crop_ratio, up to ten tries, then the largest centred crop of a clamped ratio,
/// as torchvision does), flip, and colour jitter applied with probability jitter_prob.
pub fn draw(rng: &mut Rng, a: &AugmentConfig) -> AugParams {
    let (mut x0, mut y0, mut w, mut h) = (None, 0.0, 1.0, 1.0);
    for _ in 0..10 {
        let area = rng.gen_range(a.crop_scale[0]..=a.crop_scale[1]);
        let ratio = rng.gen_range(a.crop_ratio[0].ln()..=a.crop_ratio[1].ln()).exp();
        let (cw, ch) = ((area * ratio).sqrt(), (area / ratio).sqrt());
        if cw <= 1.0 && ch <= 1.0 {
            x0 = Some(rng.gen_range(0.0..=1.0 - cw));
            y0 = rng.gen_range(0.0..=1.0 - ch);
            (w, h) = (cw, ch);
            break;
        }
    }
    let x0 = x0.unwrap_or_else(|| {
        let ratio = 1.0f64.clamp(a.crop_ratio[0], a.crop_ratio[1]);
        (w, h) = if ratio >= 1.0 { (1.0, 1.0 / ratio) } else { (ratio, 1.0) };
        y0 = (1.0 - h) / 2.0;
        (1.0 - w) / 2.0
    });
    let flip = rng.gen_bool(a.flip);
    let factor = |rng: &mut Rng, x: f64| if x > 0.0 { rng.gen_range((1.0 - x).max(0.0)..=1.0 + x) } else { 1.0 };
    let (brightness, contrast) = if rng.gen_bool(a.jitter_prob) {
        let b = factor(rng, a.brightness);
        (b, factor(rng, a.contrast))
    } else {
        (1.0, 1.0)
    };
    AugParams { x0: x0 as f32, y0: y0 as f32, w: w as f32, h: h as f32, flip, brightness: brightness as f32, contrast: contrast as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed;

    #[test]
    fn draws_are_seeded_and_inside_the_frame() {
        let a = AugmentConfig::default();
        let d = |s| (0..200).map(|_| ()).scan(seed::stream(s, "aug", &[]), |r, _| Some(draw(r, &a))).collect::<Vec<_>>();
        assert_eq!(d(1), d(1));
        assert_ne!(d(1), d(2));
        for p in d(3) {
            let area = (p.w * p.h) as f64;
            assert!(p.x0 >= 0.0 && p.y0 >= 0.0 && p.x0 + p.w <= 1.0 + 1e-6 && p.y0 + p.h <= 1.0 + 1e-6, "{p:?}");
            assert!((0.8 - 1e-6..=1.0 + 1e-6).contains(&area), "{p:?}");
            assert!((0.8 - 1e-4..=1.25 + 1e-4).contains(&(p.w / p.h)), "{p:?}");
            assert!((0.2..=1.8).contains(&p.brightness) && (0.2..=1.8).contains(&p.contrast));
        }
        let none = AugmentConfig { jitter_prob: 0.0, flip: 0.0, ..a };
        let p = draw(&mut seed::stream(4, "aug", &[]), &none);
        assert_eq!((p.flip, p.brightness, p.contrast), (false, 1.0, 1.0));
    }
}
