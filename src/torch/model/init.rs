//! Weight initialisation drawn from a named seed stream instead of libtorch's global generator,
//! so that a model's initial weights depend on its seed alone, not on what else in the process
//! (another thread, another test) drew from libtorch before it. The distributions are
//! torchvision's: convolutions Kaiming normal (fan-out, ReLU), linear layers PyTorch's default
//! (uniform in ±1/√fan_in for weight and bias); batch norms keep their constant 1 and 0.

use rand_distr::{Distribution, Normal, Uniform};
use tch::{nn, Tensor};
use usctl::seed::Rng;

fn fill(t: &Tensor, values: Vec<f32>) {
    let mut t = t.shallow_clone();
    tch::no_grad(|| t.copy_(&Tensor::from_slice(&values).view(t.size().as_slice()).to_device(t.device())));
}

fn sorted(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Every 4-d (convolution) weight of `vs`: N(0, 2 / fan_out), fan_out = out · kh · kw.
pub fn convolutions(vs: &nn::VarStore, rng: &mut Rng) {
    for (_, t) in sorted(vs).into_iter().filter(|(_, t)| t.dim() == 4) {
        let s = t.size();
        let std = (2.0 / (s[0] * s[2] * s[3]) as f64).sqrt();
        let normal = Normal::new(0.0, std).unwrap_or_else(|_| unreachable!("a positive standard deviation"));
        fill(&t, (0..t.numel()).map(|_| normal.sample(rng) as f32).collect());
    }
}

/// Fills weight `w` (linear [out, in] or convolution [out, in, kh, kw]) with PyTorch's default
/// U(±1/√fan_in), fan_in = in · kh · kw, and returns that distribution (for the bias).
pub fn fan_in_uniform(w: &Tensor, rng: &mut Rng) -> Uniform<f64> {
    let fan_in = w.size()[1..].iter().product::<i64>().max(1);
    let bound = 1.0 / (fan_in as f64).sqrt();
    let uniform = Uniform::new_inclusive(-bound, bound);
    fill(w, (0..w.numel()).map(|_| uniform.sample(rng) as f32).collect());
    uniform
}

/// Every linear layer of `vs` (`X.weight` [out, in] with `X.bias` [out]): U(±1/√in).
pub fn linears(vs: &nn::VarStore, rng: &mut Rng) {
    let vars = sorted(vs);
    for (name, w) in vars.iter().filter(|(_, t)| t.dim() == 2) {
        let uniform = fan_in_uniform(w, rng);
        if let Some((_, b)) = name.strip_suffix("weight").and_then(|p| vars.iter().find(|(k, _)| *k == format!("{p}bias"))) {
            fill(b, (0..b.numel()).map(|_| uniform.sample(rng) as f32).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResNet18;
    use tch::Device;
    use usctl::seed;

    #[test]
    fn same_seed_same_weights_with_torchvision_scales() {
        let make = |s: u64| {
            let vs = nn::VarStore::new(Device::Cpu);
            let _net = ResNet18::new(&vs.root());
            let _fc = nn::linear(vs.root() / "fc", 512, 3, Default::default());
            convolutions(&vs, &mut seed::stream(s, "init", &[]));
            linears(&vs, &mut seed::stream(s, "init", &[1]));
            vs
        };
        let (a, b, c) = (make(1), make(1), make(2));
        let (va, vb, vc) = (a.variables(), b.variables(), c.variables());
        for (k, t) in &va {
            assert!(t.equal(&vb[k]), "{k} differs for one seed");
        }
        assert!(!va["layer1.0.conv1.weight"].equal(&vc["layer1.0.conv1.weight"]));
        // layer3.0.conv2: 256 · 3 · 3 fan-out → sd √(2/2304) ≈ 0.0295.
        let sd = va["layer3.0.conv2.weight"].std(true).double_value(&[]);
        assert!((sd - (2.0f64 / 2304.0).sqrt()).abs() < 0.002, "{sd}");
        let w = &va["fc.weight"];
        let bound = 1.0 / 512f64.sqrt();
        assert!(w.abs().max().double_value(&[]) <= bound && w.abs().max().double_value(&[]) > 0.8 * bound);
        assert!(va["fc.bias"].abs().max().double_value(&[]) > 0.0);
        assert_eq!(va["bn1.weight"].min().double_value(&[]), 1.0, "batch norms keep their constants");
    }
}
