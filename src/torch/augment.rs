//! Applying augmentation parameters (drawn by `usctl::augment::draw`) to whole batches as tensor
//! ops, on whichever device the batch is on. The hot path (mix before augmentation, the default)
//! touches each stored pixel once (u8 → float) and otherwise works at the output size, in place.

use tch::{Device, Kind, Tensor};
use usctl::augment::AugParams;
use usctl::config::AugmentConfig;

/// One value per image, shaped to broadcast over [n, c, h, w].
fn column(values: impl Iterator<Item = f32>, device: Device) -> Tensor {
    Tensor::from_slice(&values.collect::<Vec<_>>()).to_device(device).view([-1, 1, 1, 1])
}

/// a · wa + b · wb per image.
fn blend(a: &Tensor, b: &Tensor, wa: impl Iterator<Item = f32>, wb: impl Iterator<Item = f32>) -> Tensor {
    let mut out = a * column(wa, a.device());
    let _ = out.addcmul_(b, &column(wb, a.device()));
    out
}

/// xi · a + (1 − xi) · b per image; a, b: [n, c, H, W] float, xi: n weights.
pub fn mix(a: &Tensor, b: &Tensor, xi: &[f32]) -> Tensor {
    blend(a, b, xi.iter().copied(), xi.iter().map(|x| 1.0 - x))
}

/// The sampling grid of each image's crop (and flip), for an output of size × size. The crop is
/// axis-aligned, so x depends on the column only and y on the row only: the grid is two small
/// vectors broadcast, not a per-pixel matrix product (affine_grid was the loader's largest cost).
fn grid(params: &[AugParams], size: i64, device: Device) -> Tensor {
    let n = params.len() as i64;
    // Output pixel centres in [-1, 1] (align_corners = false).
    let t: Vec<f32> = (0..size).map(|j| (2 * j + 1) as f32 / size as f32 - 1.0).collect();
    let (mut gx, mut gy) = (Vec::with_capacity(t.len() * params.len()), Vec::with_capacity(t.len() * params.len()));
    for p in params {
        let sx = if p.flip { -p.w } else { p.w };
        let (cx, cy) = (2.0 * p.x0 + p.w - 1.0, 2.0 * p.y0 + p.h - 1.0);
        gx.extend(t.iter().map(|u| sx * u + cx));
        gy.extend(t.iter().map(|v| p.h * v + cy));
    }
    let gx = Tensor::from_slice(&gx).to_device(device).view([n, 1, size, 1]).expand([n, size, size, 1], false);
    let gy = Tensor::from_slice(&gy).to_device(device).view([n, size, 1, 1]).expand([n, size, size, 1], false);
    Tensor::cat(&[gx, gy], 3)
}

/// Crop, resize to size × size and flip, all images (and all their channels) at once, bilinear.
/// Frames larger than twice the output are first area-averaged to twice the output, so that
/// bilinear sampling never skips pixels (no aliasing at small sizes).
pub fn crop_resize_flip(x: &Tensor, params: &[AugParams], size: i64) -> Tensor {
    let side = x.size()[2];
    let x = if side > 2 * size { x.adaptive_avg_pool2d([2 * size, 2 * size]) } else { x.shallow_clone() };
    x.grid_sampler(&grid(params, size, x.device()), 0, 0, false)
}

fn is_identity(params: &[AugParams]) -> bool {
    params.iter().all(|p| p.brightness == 1.0 && p.contrast == 1.0)
}

/// Contrast: blend with the image's mean, clamped to [0, 1], in place.
fn contrast_(x: &mut Tensor, params: &[AugParams]) {
    let mean = x.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
    *x -= &mean;
    *x *= column(params.iter().map(|p| p.contrast), x.device());
    *x += &mean;
    let _ = x.clamp_(0.0, 1.0);
}

/// Brightness (scale) then contrast (blend with the image's mean), clamped to [0, 1] after
/// each, as torchvision's ColorJitter does on a gray image. Saturation and hue are the identity
/// on gray pixels and are not applied.
pub fn jitter(mut x: Tensor, params: &[AugParams]) -> Tensor {
    if is_identity(params) {
        return x;
    }
    x *= column(params.iter().map(|p| p.brightness), x.device());
    let _ = x.clamp_(0.0, 1.0);
    contrast_(&mut x, params);
    x
}

/// Single frames (fine-tuning): [n, 1, H, W] u8 → [n, 1, size, size] float, cropped, flipped,
/// jittered and normalised on `device`. Identity parameters give the whole frame resized.
pub fn images(frames: &Tensor, params: &[AugParams], a: &AugmentConfig, size: i64, device: Device) -> Tensor {
    let x = frames.to_device(device).to_kind(Kind::Float) / 255.0;
    normalised(jitter(crop_resize_flip(&x, params, size), params), a)
}

fn normalised(mut x: Tensor, a: &AugmentConfig) -> Tensor {
    x -= a.mean;
    x /= a.std;
    x
}

/// Frames and their lesion masks (segmentation): [n, 1, H, W] u8 each → images as `images` gives
/// them and 0/1 float masks [n, 1, size, size] under the same crop and flip (a mask is resampled
/// like the image, then thresholded at one half).
pub fn images_and_masks(frames: &Tensor, masks: &Tensor, params: &[AugParams], a: &AugmentConfig, size: i64, device: Device) -> (Tensor, Tensor) {
    let both = Tensor::cat(&[frames.to_device(device).to_kind(Kind::Float) / 255.0, masks.to_device(device).to_kind(Kind::Float)], 1);
    let out = crop_resize_flip(&both, params, size);
    let image = normalised(jitter(out.narrow(1, 0, 1).contiguous(), params), a);
    (image, out.narrow(1, 1, 1).gt(0.5).to_kind(Kind::Float))
}

/// Everything a batch of views needs besides pixels.
pub struct ViewsSpec<'a> {
    pub xi: &'a [f32],
    /// One per view (mix before), or two per view: anchors' then others' (mix after).
    pub params: &'a [AugParams],
    pub mix_after: bool,
}

/// frames: [v, 2, H, W] u8 (each view's anchor and other frame) → [v, 1, size, size] float,
/// normalised, on `device`. One channel: the backbone folds torchvision's three identical
/// channels into its first convolution (model/resnet.rs).
pub fn views(frames: &Tensor, spec: &ViewsSpec, a: &AugmentConfig, size: i64, device: Device) -> Tensor {
    let x = frames.to_device(device).to_kind(Kind::Float);
    let v = spec.xi.len();
    let mut out = if spec.mix_after {
        let aug = |t: &Tensor, p: &[AugParams]| jitter(crop_resize_flip(t, p, size) / 255.0, p);
        mix(&aug(&x.narrow(1, 0, 1), &spec.params[..v]), &aug(&x.narrow(1, 1, 1), &spec.params[v..]), spec.xi)
    } else {
        // Bilinear sampling is linear: cropping both frames with one grid and mixing the crops
        // equals cropping the mixed frame, on far fewer pixels. Brightness and the 1/255 scale
        // fold into the mixing weights.
        let both = crop_resize_flip(&x, spec.params, size);
        let p = spec.params;
        let wa = spec.xi.iter().zip(p).map(|(w, p)| w * p.brightness / 255.0);
        let wb = spec.xi.iter().zip(p).map(|(w, p)| (1.0 - w) * p.brightness / 255.0);
        let mut m = blend(&both.narrow(1, 0, 1), &both.narrow(1, 1, 1), wa, wb);
        if !is_identity(p) {
            let _ = m.clamp_(0.0, 1.0);
            contrast_(&mut m, p);
        }
        m
    };
    out -= a.mean;
    out /= a.std;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};
    use usctl::augment::draw;
    use usctl::seed;

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
    fn a_mask_follows_its_frame_through_crop_and_flip() {
        // Frame = 255 × mask: after any crop and flip, the image (un-normalised) and the mask agree
        // wherever the mask is clearly in or out; the mask stays 0/1.
        let side = 32;
        let mask = Tensor::zeros([3, 1, side, side], (Kind::Uint8, Device::Cpu));
        let _ = mask.narrow(2, 4, 10).narrow(3, 18, 9).fill_(1);
        let frames = &mask * 255;
        let a = usctl::config::AugmentConfig { mean: 0.0, std: 1.0, jitter_prob: 0.0, ..Default::default() };
        let mut rng = seed::stream(3, "t", &[]);
        let params: Vec<AugParams> = (0..3).map(|i| if i == 0 { AugParams::IDENTITY } else { draw(&mut rng, &a) }).collect();
        let (image, m) = images_and_masks(&frames, &mask, &params, &a, 16, Device::Cpu);
        assert_eq!((image.size(), m.size()), (vec![3, 1, 16, 16], vec![3, 1, 16, 16]));
        let m_values: Vec<f32> = Vec::try_from(m.flatten(0, -1)).unwrap();
        assert!(m_values.iter().all(|v| *v == 0.0 || *v == 1.0));
        let clear = image.gt(0.9).logical_or(&image.lt(0.1));
        let disagree = image.gt(0.5).to_kind(Kind::Float).ne_tensor(&m).logical_and(&clear).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(disagree, 0);
        // Identity at half size: the 10 × 9 rectangle becomes 5 × 4.5 → 5 rows of 4 or 5 pixels.
        let first = m.get(0).sum(Kind::Float).double_value(&[]);
        assert!((20.0..=25.0).contains(&first), "{first}");
        assert!(params[1..].iter().any(|p| p.flip) || params[1..].iter().any(|p| p.w < 1.0), "the draw changed something");
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
        let y = Vec::<f32>::try_from(jitter(x, &[p]).flatten(0, -1)).unwrap();
        for (got, want) in y.iter().zip([0.0f32, 0.15, 0.35, 0.55]) {
            assert!((got - want).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn the_fast_path_equals_mixing_then_augmenting() {
        // Written the slow, obvious way: mix the full frames, crop, jitter, normalise.
        let a = AugmentConfig { jitter_prob: 1.0, ..Default::default() };
        let f = frames(6, 48);
        let mut r = seed::stream(1, "aug", &[]);
        let params: Vec<AugParams> = (0..6).map(|_| draw(&mut r, &a)).collect();
        let xi = [0.0f32, 0.2, 0.5, 0.7, 0.9, 1.0];
        let fast = views(&f, &ViewsSpec { xi: &xi, params: &params, mix_after: false }, &a, 20, Device::Cpu);
        let x = f.to_kind(Kind::Float) / 255.0;
        let m = mix(&x.narrow(1, 0, 1), &x.narrow(1, 1, 1), &xi);
        let slow = (jitter(crop_resize_flip(&m, &params, 20), &params) - 0.5) / 0.25;
        let diff = (&fast - &slow).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "fast and slow paths differ by {diff}");
    }

    #[test]
    fn single_images_equal_views_without_a_partner() {
        let a = AugmentConfig::default();
        let f = frames(3, 32);
        let mut r = seed::stream(2, "aug", &[]);
        let params: Vec<AugParams> = (0..3).map(|_| draw(&mut r, &a)).collect();
        let one = images(&f.narrow(1, 0, 1), &params, &a, 16, Device::Cpu);
        let pair = views(&f, &ViewsSpec { xi: &[1.0; 3], params: &params, mix_after: false }, &a, 16, Device::Cpu);
        assert!((&one - &pair).abs().max().double_value(&[]) < 1e-4);
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
        assert_eq!(b1.size(), vec![4, 1, 16, 16]);
        assert!(b1.equal(&b2) && a1.equal(&a2));
        assert!(!b1.equal(&b3));
        assert!(!b1.equal(&a1));
    }
}
