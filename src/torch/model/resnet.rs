//! ResNet-18 (He et al. 2016) as torchvision builds it: the same module names, shapes and
//! initialisation (conv: Kaiming normal, fan-out; batch norm: weight 1, bias 0), without `fc`.
//! The forward pass returns the 512-d pooled features, flattened (never squeezed, so a batch of
//! one keeps its batch dimension).

use tch::nn::{self, ModuleT};
use tch::Tensor;

pub const FEATURES: i64 = 512;

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let ws_init = nn::Init::Kaiming { dist: nn::init::NormalOrUniform::Normal, fan: nn::init::FanInOut::FanOut, non_linearity: nn::init::NonLinearity::ReLU };
    nn::conv2d(p, i, o, k, nn::ConvConfig { stride, padding, bias: false, ws_init, ..Default::default() })
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, nn::BatchNormConfig { ws_init: nn::Init::Const(1.0), bs_init: nn::Init::Const(0.0), ..Default::default() })
}

#[derive(Debug)]
struct Block {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    fn new(p: nn::Path, i: i64, o: i64, stride: i64) -> Block {
        let downsample = (stride != 1 || i != o).then(|| (conv(&p / "downsample" / 0, i, o, 1, stride, 0), bn(&p / "downsample" / 1, o)));
        Block {
            conv1: conv(&p / "conv1", i, o, 3, stride, 1),
            bn1: bn(&p / "bn1", o),
            conv2: conv(&p / "conv2", o, o, 3, 1, 1),
            bn2: bn(&p / "bn2", o),
            downsample,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu().apply(&self.conv2).apply_t(&self.bn2, train);
        let shortcut = match &self.downsample {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu()
    }
}

#[derive(Debug)]
pub struct ResNet18 {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<Vec<Block>>,
}

impl ResNet18 {
    /// Builds the backbone under `p` (use a VarStore's root so names are torchvision's).
    pub fn new(p: &nn::Path) -> ResNet18 {
        let mut layers = Vec::new();
        let mut c_in = 64;
        for (l, (c, stride)) in [(64, 1), (128, 2), (256, 2), (512, 2)].into_iter().enumerate() {
            let lp = p / format!("layer{}", l + 1);
            layers.push(vec![Block::new(&lp / 0, c_in, c, stride), Block::new(&lp / 1, c, c, 1)]);
            c_in = c;
        }
        ResNet18 { conv1: conv(p / "conv1", 3, 64, 7, 2, 3), bn1: bn(p / "bn1", 64), layers }
    }

    /// [N, 3, H, W] or [N, 1, H, W] → [N, 512].
    pub fn features(&self, x: &Tensor, train: bool) -> Tensor {
        pool(&self.stages(x, 0..STAGES, train))
    }

    /// Runs stages `range` of the network (see `STAGES`); fine-tuning runs the frozen stages
    /// without gradients and in eval mode, the trainable ones in train mode.
    pub fn stages(&self, x: &Tensor, range: std::ops::Range<usize>, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        for s in range {
            y = match s {
                0 => self.stem(&y, train),
                b => self.layers[(b - 1) / 2][(b - 1) % 2].forward_t(&y, train),
            };
        }
        y
    }

    /// conv1, bn1, ReLU, max pool. A one-channel (gray) input means three identical channels:
    /// convolving it with conv1's weights summed over their input channels gives the same result
    /// (and gradient) at a third of the first layer's cost.
    fn stem(&self, x: &Tensor, train: bool) -> Tensor {
        let y = if x.size()[1] == 1 {
            let w = self.conv1.ws.sum_dim_intlist([1i64].as_slice(), true, self.conv1.ws.kind());
            x.conv2d(&w, None::<Tensor>, [2, 2], [3, 3], [1, 1], 1)
        } else {
            x.apply(&self.conv1)
        };
        y.apply_t(&self.bn1, train).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
    }
}

/// Stage 0 is the stem (conv1, bn1, ReLU, max pool); stages 1–8 are the residual blocks
/// layer1.0, layer1.1, …, layer4.1.
pub const STAGES: usize = 9;

/// Global average pooling: [N, 512, h, w] → [N, 512].
pub fn pool(y: &Tensor) -> Tensor {
    y.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
}

impl ModuleT for ResNet18 {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.features(x, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn torchvision_names_and_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = ResNet18::new(&vs.root());
        let vars = vs.variables();
        // 20 conv weights + 20 batch norms × (weight, bias, running mean, running var); torchvision
        // adds one num_batches_tracked per batch norm, and fc.
        assert_eq!(vars.len(), 100, "{:?}", {
            let mut k: Vec<_> = vars.keys().collect();
            k.sort();
            k
        });
        assert_eq!(vars["conv1.weight"].size(), vec![64, 3, 7, 7]);
        assert_eq!(vars["layer2.0.downsample.0.weight"].size(), vec![128, 64, 1, 1]);
        assert_eq!(vars["layer4.1.bn2.running_var"].size(), vec![512]);
        assert!(!vars.contains_key("layer1.0.downsample.0.weight"));
        let trainable: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(trainable, 11_176_512, "torchvision resnet18 has 11,689,512 parameters, 513,000 of them in fc");
    }

    #[test]
    fn gray_input_equals_three_identical_channels() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet18::new(&vs.root());
        let gray = Tensor::randn([2, 1, 40, 40], (Kind::Float, Device::Cpu));
        let (a, b) = (net.features(&gray, false), net.features(&gray.expand([2, 3, 40, 40], false), false));
        assert!((&a - &b).abs().max().double_value(&[]) < 1e-4 * b.abs().max().double_value(&[]).max(1.0));
    }

    #[test]
    fn stages_compose_to_the_whole_network() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet18::new(&vs.root());
        let x = Tensor::randn([2, 1, 32, 32], (Kind::Float, Device::Cpu));
        let split = pool(&net.stages(&net.stages(&x, 0..8, false), 8..STAGES, false));
        assert!(split.equal(&net.features(&x, false)));
    }

    #[test]
    fn batch_of_one_keeps_its_dimension() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet18::new(&vs.root());
        let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(net.features(&x, false).size(), vec![1, 512]);
    }
}
