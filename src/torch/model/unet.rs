//! Lesion segmentation head: a U-Net-style decoder on the ResNet-18's stages (Ronneberger et al.
//! 2015; the ResNet-encoder form of e.g. Iglovikov & Shvets 2018). Why U-Net rather than an FPN:
//! the lesions are single, mostly convex blobs whose outline matters (Dice and boundary F1 are
//! scored), so the decoder climbs back to full resolution through every skip; an FPN predicts at
//! 1/4 and upsamples, which blurs the outline at 128 px.
//!
//! Encoder features (input S×S): layer1 64 ch at S/4, layer2 128 at S/8, layer3 256 at S/16,
//! layer4 512 at S/32. Decoder: at each skip, bilinear ×2, concatenate, two 3×3 conv-BN-ReLU
//! (256, 128, 64 channels); then two more ×2 steps without skip (32, 16 channels) back to S; a
//! 1×1 conv gives one logit per pixel (lesion vs background).

use super::resnet::{ResNet18, STAGES};
use tch::nn;
use tch::Tensor;

/// Stage ranges (see `resnet::STAGES`) ending at layer1, layer2, layer3, layer4.
const LEVELS: [std::ops::Range<usize>; 4] = [0..3, 3..5, 5..7, 7..STAGES];
const SKIP_CHANNELS: [i64; 4] = [64, 128, 256, 512];

#[derive(Debug)]
struct ConvBnRelu {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBnRelu {
    fn new(p: nn::Path, i: i64, o: i64) -> ConvBnRelu {
        let cfg = nn::ConvConfig { padding: 1, bias: false, ..Default::default() };
        // Batch norm as torchvision initialises it (tch's default draws the weight at random).
        let bn = nn::BatchNormConfig { ws_init: nn::Init::Const(1.0), bs_init: nn::Init::Const(0.0), ..Default::default() };
        ConvBnRelu { conv: nn::conv2d(&p / "conv", i, o, 3, cfg), bn: nn::batch_norm2d(&p / "bn", o, bn) }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.bn, train).relu()
    }
}

/// One decoder step: ×2 (bilinear), optional skip concatenated, two conv-BN-ReLU.
#[derive(Debug)]
struct Up {
    a: ConvBnRelu,
    b: ConvBnRelu,
}

impl Up {
    fn new(p: nn::Path, i: i64, o: i64) -> Up {
        Up { a: ConvBnRelu::new(&p / "a", i, o), b: ConvBnRelu::new(&p / "b", o, o) }
    }

    fn forward_t(&self, x: &Tensor, skip: Option<&Tensor>, train: bool) -> Tensor {
        let (h, w) = match skip {
            Some(s) => (s.size()[2], s.size()[3]),
            None => (x.size()[2] * 2, x.size()[3] * 2),
        };
        let up = x.upsample_bilinear2d([h, w], false, None, None);
        let y = match skip {
            Some(s) => Tensor::cat(&[&up, s], 1),
            None => up,
        };
        self.b.forward_t(&self.a.forward_t(&y, train), train)
    }
}

/// The decoder alone; the encoder (a `ResNet18`) lives in its own VarStore, so its weights keep
/// torchvision's names and can stay frozen.
#[derive(Debug)]
pub struct UNetDecoder {
    ups: Vec<Up>,
    head: nn::Conv2D,
}

impl UNetDecoder {
    pub fn new(p: &nn::Path) -> UNetDecoder {
        let [c1, c2, c3, c4] = SKIP_CHANNELS;
        let ups = vec![
            Up::new(p / "up3", c4 + c3, 256),
            Up::new(p / "up2", 256 + c2, 128),
            Up::new(p / "up1", 128 + c1, 64),
            Up::new(p / "up0", 64, 32),
            Up::new(p / "full", 32, 16),
        ];
        // The head's bias starts at 0; every convolution weight is drawn by `init::convolutions`
        // from the run's seed stream.
        let head = nn::conv2d(p / "head", 16, 1, 1, nn::ConvConfig { bs_init: nn::Init::Const(0.0), ..Default::default() });
        UNetDecoder { ups, head }
    }

    /// Per-pixel lesion logits [N, 1, H, W] from the encoder's four levels (`pyramid`), for an
    /// input of H × W (both multiples of 32).
    pub fn forward_t(&self, levels: &[Tensor; 4], train: bool) -> Tensor {
        let [l1, l2, l3, l4] = levels;
        let mut y = self.ups[0].forward_t(l4, Some(l3), train);
        y = self.ups[1].forward_t(&y, Some(l2), train);
        y = self.ups[2].forward_t(&y, Some(l1), train);
        y = self.ups[3].forward_t(&y, None, train);
        y = self.ups[4].forward_t(&y, None, train);
        y.apply(&self.head)
    }
}

/// Draws the decoder's initial weights from `rng`: its 3×3 convolutions as torchvision's ResNet
/// (`init::convolutions`), batch norms 1 and 0, and the 1×1 head as PyTorch's default,
/// U(±1/√16) with bias 0 (Kaiming on a one-channel output starts with logits of several units).
pub fn init(vs: &nn::VarStore, rng: &mut usctl::seed::Rng) {
    super::init::convolutions(vs, rng);
    if let Some(head) = vs.variables().get("head.weight") {
        super::init::fan_in_uniform(head, rng);
    }
}

/// The encoder's features at layer1…layer4 for `x` [N, C, H, W]. Stages before `frozen` (see
/// `resnet::STAGES`) run without gradients and in eval mode, so their batch-norm statistics stay
/// as loaded; the others run in `train` mode.
pub fn pyramid(encoder: &ResNet18, x: &Tensor, frozen: usize, train: bool) -> [Tensor; 4] {
    let mut y = x.shallow_clone();
    LEVELS.map(|range| {
        let split = frozen.clamp(range.start, range.end);
        if split > range.start {
            y = tch::no_grad(|| encoder.stages(&y, range.start..split, false));
        }
        if split < range.end {
            y = encoder.stages(&y, split..range.end, train);
        }
        y.shallow_clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::dice_bce;
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind};

    /// A batch of gray images with a bright rectangle each, and the rectangle as the target. The
    /// noise is a fixed pattern: tests run in parallel and share libtorch's global generator.
    fn rectangles(n: i64, s: i64) -> (Tensor, Tensor) {
        let target = Tensor::zeros([n, 1, s, s], (Kind::Float, Device::Cpu));
        for i in 0..n {
            let (x0, y0) = (4 + 6 * i, 8 + 3 * i);
            let _ = target.narrow(0, i, 1).narrow(2, y0, 20).narrow(3, x0, 16).fill_(1.0);
        }
        let noise: Vec<f32> = (0..n * s * s).map(|k| ((k * 7919) % 101) as f32 / 101.0).collect();
        let image = &target * 0.8 + Tensor::from_slice(&noise).view([n, 1, s, s]) * 0.2;
        (image, target)
    }

    /// Decoder training steps (measured: the loss 1.57 → 0.79 after 30 steps, too close to half;
    /// → 0.09 after 60).
    const STEPS: usize = 60;

    #[test]
    fn logits_have_the_input_size_and_training_lowers_the_loss() {
        let (enc_vs, dec_vs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let encoder = ResNet18::new(&enc_vs.root());
        let decoder = UNetDecoder::new(&dec_vs.root());
        crate::model::init::convolutions(&enc_vs, &mut usctl::seed::stream(0, "t", &[0]));
        init(&dec_vs, &mut usctl::seed::stream(0, "t", &[1]));
        let (x, t) = rectangles(3, 64);
        let levels = pyramid(&encoder, &x, STAGES, false);
        let sizes: Vec<Vec<i64>> = levels.iter().map(|l| l.size()).collect();
        assert_eq!(sizes, vec![vec![3, 64, 16, 16], vec![3, 128, 8, 8], vec![3, 256, 4, 4], vec![3, 512, 2, 2]]);
        // Where the encoder is split into frozen and trained stages changes no value in eval mode.
        for frozen in [0, 2, 4, STAGES - 1] {
            let split = pyramid(&encoder, &x, frozen, false);
            for (a, b) in split.iter().zip(&levels) {
                assert!(a.equal(b), "frozen before stage {frozen}");
            }
        }
        let segment = |train: bool| decoder.forward_t(&pyramid(&encoder, &x, STAGES, false), train);
        assert_eq!(segment(false).size(), vec![3, 1, 64, 64]);

        // Frozen encoder: only the decoder learns, and it learns the rectangles.
        let mut opt = nn::Adam::default().build(&dec_vs, 1e-2).unwrap();
        let first = dice_bce(&segment(true), &t).unwrap().double_value(&[]);
        for _ in 0..STEPS {
            let loss = dice_bce(&segment(true), &t).unwrap();
            opt.backward_step(&loss);
        }
        let last = dice_bce(&segment(false), &t).unwrap().double_value(&[]);
        assert!(last < 0.5 * first, "loss {first} → {last}");
        assert!(
            enc_vs.trainable_variables().iter().all(|v| !v.grad().defined() || v.grad().abs().sum(Kind::Float).double_value(&[]) == 0.0),
            "the frozen encoder got gradients"
        );
    }
}
