//! Applying augmentation parameters (drawn by `usctl::augment::draw`) to whole batches as tensor
//! ops, on whichever device the batch is on.

use usctl::augment::AugParams;
use usctl::config::AugmentConfig;
use tch::{Device, Kind, Tensor};

/// xi · a + (1 − xi) · b per image; a, b: [n, 1, H, W] float, xi: n weights.
pub fn mix(a: &Tensor, b: &Tensor, xi: &[f32]) -> Tensor {
    let w = Tensor::from_slice(xi).to_device(a.device()).view([-1, 1, 1, 1]);
    a * &w + b * (1.0 - &w)
}

/// Crop, resize to size × size and flip, all images at once: one affine sampling grid per
/// image (bilinear). Frames larger than twice the output are first area-averaged to twice
/// the output, so that bilinear sampling never skips pixels (no aliasing at small sizes).
pub fn crop_resize_flip(x: &Tensor, params: &[AugParams], size: i64) -> Tensor {
    let n = params.len() as i64;
    let side = x.size()[2];
    let x = if side > 2 * size { x.adaptive_avg_pool2d([2 * size, 2 * size]) } else { x.shallow_clone() };
    let theta: Vec<f32> = params
        .iter()
        .flat_map(|p| {
            let sx = if p.flip { -p.w } else { p.w };
            let cx = 2.0 * p.x0 + p.w - 1.0;
            let cy = 2.0 * p.y0 + p.h - 1.0;
            [sx, 0.0, cx, 0.0, p.h, cy]
        })
        .collect();
    let theta = Tensor::from_slice(&theta).to_device(x.device()).view([n, 2, 3]).to_kind(x.kind());
    let grid = Tensor::affine_grid_generator(&theta, [n, 1, size, size], false);
    x.grid_sampler(&grid, 0, 0, false)
}

/// Brightness (scale) then contrast (blend with the image's mean), clamped to [0, 1] after
/// each, as torchvision's ColorJitter does on a gray image. Saturation and hue are the identity
/// on gray pixels and are not applied.
pub fn jitter(x: &Tensor, params: &[AugParams]) -> Tensor {
    let col = |f: fn(&AugParams) -> f32| Tensor::from_slice(&params.iter().map(f).collect::<Vec<_>>()).to_device(x.device()).view([-1, 1, 1, 1]);
    let x = (x * col(|p| p.brightness)).clamp(0.0, 1.0);
    let mean = x.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
    ((&x - &mean) * col(|p| p.contrast) + &mean).clamp(0.0, 1.0)
}

/// Everything a batch of views needs besides pixels.
pub struct ViewsSpec<'a> {
    pub xi: &'a [f32],
    /// One per view (mix before), or two per view: anchors' then others' (mix after).
    pub params: &'a [AugParams],
    pub mix_after: bool,
}

/// frames: [v, 2, H, W] u8 (each view's anchor and other frame) → [v, 3, size, size] float,
/// normalised, on `device`.
pub fn views(frames: &Tensor, spec: &ViewsSpec, a: &AugmentConfig, size: i64, device: Device) -> Tensor {
    let x = frames.to_device(device).to_kind(Kind::Float) / 255.0;
    let (anchor, other) = (x.narrow(1, 0, 1), x.narrow(1, 1, 1));
    let v = spec.xi.len();
    let out = if spec.mix_after {
        let aug = |t: &Tensor, p: &[AugParams]| jitter(&crop_resize_flip(t, p, size), p);
        mix(&aug(&anchor, &spec.params[..v]), &aug(&other, &spec.params[v..]), spec.xi)
    } else {
        let m = mix(&anchor, &other, spec.xi);
        jitter(&crop_resize_flip(&m, spec.params, size), spec.params)
    };
    ((out - a.mean) / a.std).expand([v as i64, 3, size, size], false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use usctl::augment::draw;
    use usctl::seed;
    use tch::{Device, Kind, Tensor};

    fn frames(v: i64, side: i64) -> Tensor {
        Tensor::arange(v * 2 * side * side, (Kind::Int64, Device::Cpu)).remainder(251).to_kind(Kind::Uint8).view([v, 2, side, side])
    }

    #[test]
    fn mix_is_exact() {
        let a = Tensor::from_slice(&[1.0f32, 0.5, 0.0, 0.25]).view([4, 1, 1, 1]);
        let b = Tensor::from_slice(&[0.0f32, 0.5, 1.0, 0.75]).view([4, 1, 1, 1]);
        let m = mix(&a, &b, &[0.25, 0.5, 0.75, 1.0]);
        assert_eq!(Vec::<f32>::try_from(m.flatten(0, -1)).unwrap(), vec![0.25, 0.5, 0.25, 0.25]);
    }

    #[test]
    fn identity_and_flip_reproduce_the_frame() {
        let f = frames(2, 16);
        let x = f.narrow(1, 0, 1).to_kind(Kind::Float) / 255.0;
        let id = crop_resize_flip(&x, &[AugParams::IDENTITY; 2], 16);
        assert!((&id - &x).abs().max().double_value(&[]) < 1e-5);
        let flipped = AugParams { flip: true, ..AugParams::IDENTITY };
        let fl = crop_resize_flip(&x, &[flipped; 2], 16);
        assert!((&fl - x.flip([3])).abs().max().double_value(&[]) < 1e-5);
        let half = AugParams { x0: 0.5, w: 0.5, y0: 0.0, h: 0.5, ..AugParams::IDENTITY };
        let q = crop_resize_flip(&x, &[half; 2], 8);
        assert!((&q - x.narrow(2, 0, 8).narrow(3, 8, 8)).abs().max().double_value(&[]) < 1e-5, "a quadrant crop at its own size is that quadrant");
    }

    #[test]
    fn jitter_scales_and_blends() {
        let x = Tensor::from_slice(&[0.2f32, 0.4, 0.6, 0.8]).view([1, 1, 2, 2]);
        let p = AugParams { brightness: 0.5, contrast: 2.0, ..AugParams::IDENTITY };
        // brightness 0.5 → 0.1 0.2 0.3 0.4 (mean 0.25); contrast 2 → 2(x − 0.25) + 0.25.
        let y = Vec::<f32>::try_from(jitter(&x, &[p]).flatten(0, -1)).unwrap();
        for (got, want) in y.iter().zip([0.0f32, 0.15, 0.35, 0.55]) {
            assert!((got - want).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn views_are_deterministic_for_a_seed() {
        let a = AugmentConfig::default();
        let f = frames(4, 32);
        let make = |s| {
            let mut r = seed::stream(s, "aug", &[]);
            let params: Vec<AugParams> = (0..8).map(|_| draw(&mut r, &a)).collect();
            let xi = [0.3f32, 0.9, 0.5, 0.1];
            let before = views(&f, &ViewsSpec { xi: &xi, params: &params[..4], mix_after: false }, &a, 16, Device::Cpu);
            let after = views(&f, &ViewsSpec { xi: &xi, params: &params, mix_after: true }, &a, 16, Device::Cpu);
            (before, after)
        };
        let (b1, a1) = make(7);
        let (b2, a2) = make(7);
        let (b3, _) = make(8);
        assert_eq!(b1.size(), vec![4, 3, 16, 16]);
        assert!(b1.equal(&b2) && a1.equal(&a2));
        assert!(!b1.equal(&b3));
        assert!(!b1.equal(&a1));
    }
}
