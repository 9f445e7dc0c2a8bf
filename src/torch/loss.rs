//! Training losses as plain functions with shape checks.
//!
//! NT-Xent (paper Eq. 3–5): for 2N projections where z1[k], z2[k] are the two views of video k,
//! ℓ(i, j) = −log( exp(sim(i, j)/τ) / Σ_{m≠i} exp(sim(i, m)/τ) ), sim the cosine similarity, and
//! L = (1/2N) Σ_k [ℓ(k, N+k) + ℓ(N+k, k)]. Every other view in the batch is a negative.

use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ShapeError(String);

/// Rows are scaled to unit length; a zero row stays zero (its similarities are 0) instead of NaN.
fn normalize(z: &Tensor) -> Tensor {
    z / z.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-8)
}

pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Result<Tensor, ShapeError> {
    let (s1, s2) = (z1.size(), z2.size());
    if s1.len() != 2 || s1 != s2 || s1[0] < 1 {
        return Err(ShapeError(format!("nt_xent needs two [N, d] tensors of equal shape with N ≥ 1, got {s1:?} and {s2:?}")));
    }
    if temperature.is_nan() || temperature <= 0.0 {
        return Err(ShapeError(format!("nt_xent needs a temperature > 0, got {temperature}")));
    }
    let n = s1[0];
    let z = normalize(&Tensor::cat(&[z1, z2], 0).to_kind(Kind::Float));
    let sim = z.mm(&z.tr()) / temperature;
    let eye = Tensor::eye(2 * n, (Kind::Bool, z.device()));
    let logits = sim.masked_fill(&eye, f64::NEG_INFINITY);
    let idx = Tensor::arange(n, (Kind::Int64, z.device()));
    let targets = Tensor::cat(&[&idx + n, idx], 0);
    Ok(logits.cross_entropy_for_logits(&targets))
}

/// Mean cross-entropy of `logits` [M, C] against class indices `targets` [M].
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor, ShapeError> {
    let (l, t) = (logits.size(), targets.size());
    if l.len() != 2 || t.len() != 1 || l[0] != t[0] || l[0] < 1 {
        return Err(ShapeError(format!("cross_entropy needs [M, C] logits and [M] targets with M ≥ 1, got {l:?} and {t:?}")));
    }
    Ok(logits.to_kind(Kind::Float).cross_entropy_for_logits(targets))
}

/// Cross-entropy with a weight per class, as torch's `CrossEntropyLoss(weight=w)`: Σ w_y · (−log
/// softmax(logits)_y) / Σ w_y over the rows, `weights` [C].
pub fn weighted_cross_entropy(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor, ShapeError> {
    let (l, t, w) = (logits.size(), targets.size(), weights.size());
    if l.len() != 2 || t.len() != 1 || l[0] != t[0] || l[0] < 1 || w != [l[1]] {
        return Err(ShapeError(format!("weighted_cross_entropy needs [M, C] logits, [M] targets and [C] weights with M ≥ 1, got {l:?}, {t:?} and {w:?}")));
    }
    let nll = logits.to_kind(Kind::Float).log_softmax(1, Kind::Float).gather(1, &targets.unsqueeze(1), false).squeeze_dim(1).neg();
    let w = weights.to_kind(Kind::Float).index_select(0, targets);
    Ok((&w * nll).sum(Kind::Float) / w.sum(Kind::Float))
}

/// Segmentation loss: mean binary cross-entropy of per-pixel `logits` [N, 1, H, W] against a 0/1
/// `target` of the same shape, plus the soft Dice loss 1 − (2 Σ p t + 1) / (Σ p + Σ t + 1) per
/// image (p = sigmoid(logits); the +1 keeps an empty image with an empty prediction at 0),
/// averaged over the batch.
pub fn dice_bce(logits: &Tensor, target: &Tensor) -> Result<Tensor, ShapeError> {
    let (l, t) = (logits.size(), target.size());
    if l.len() != 4 || l != t || l[0] < 1 || l[1] != 1 {
        return Err(ShapeError(format!("dice_bce needs [N, 1, H, W] logits and a target of the same shape, got {l:?} and {t:?}")));
    }
    let (logits, target) = (logits.to_kind(Kind::Float), target.to_kind(Kind::Float));
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(&target, None, None, tch::Reduction::Mean);
    let p = logits.sigmoid().flatten(1, -1);
    let t = target.flatten(1, -1);
    let dims = [1i64].as_slice();
    let inter = (&p * &t).sum_dim_intlist(dims, false, Kind::Float);
    let dice: Tensor = (inter * 2.0 + 1.0) / (p.sum_dim_intlist(dims, false, Kind::Float) + t.sum_dim_intlist(dims, false, Kind::Float) + 1.0);
    Ok(bce + (dice.neg() + 1.0).mean(Kind::Float))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Eq. (3)–(5) written as loops in f64, straight from the paper.
    fn naive(z1: &[Vec<f64>], z2: &[Vec<f64>], tau: f64) -> f64 {
        let z: Vec<&Vec<f64>> = z1.iter().chain(z2.iter()).collect();
        let n = z1.len();
        let cos = |a: &Vec<f64>, b: &Vec<f64>| {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-8);
            let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-8);
            dot / (na * nb)
        };
        let l = |i: usize, j: usize| {
            let den: f64 = (0..2 * n).filter(|&m| m != i).map(|m| (cos(z[i], z[m]) / tau).exp()).sum();
            -((cos(z[i], z[j]) / tau).exp() / den).ln()
        };
        (0..n).map(|k| l(k, n + k) + l(n + k, k)).sum::<f64>() / (2 * n) as f64
    }

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        let t = t.to_kind(Kind::Double);
        (0..t.size()[0]).map(|i| Vec::<f64>::try_from(t.get(i)).unwrap()).collect()
    }

    #[test]
    fn matches_the_naive_loop_on_random_inputs() {
        tch::manual_seed(11);
        for (n, d, tau) in [(1, 4, 0.5), (2, 3, 0.5), (7, 16, 0.1), (32, 256, 0.5), (5, 8, 2.0)] {
            let z1 = Tensor::randn([n, d], (Kind::Double, Device::Cpu));
            let z2 = Tensor::randn([n, d], (Kind::Double, Device::Cpu));
            let got = nt_xent(&z1, &z2, tau).unwrap().double_value(&[]);
            let want = naive(&rows(&z1), &rows(&z2), tau);
            assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "N={n} d={d} τ={tau}: {got} vs {want}");
        }
    }

    #[test]
    fn hand_computed_values() {
        // Two videos, each with identical views, orthogonal to each other: each anchor sees its
        // positive at cosine 1 and two negatives at 0, so ℓ = −log(e²/(e² + 2)) = log(1 + 2e⁻²).
        let z1 = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let got = nt_xent(&z1, &z1, 0.5).unwrap().double_value(&[]);
        assert!((got - (1.0 + 2.0 * (-2.0f64).exp()).ln()).abs() < 1e-6, "{got}");
        // One video (batch size 1): the positive is the only candidate, the loss is exactly 0.
        let one = Tensor::from_slice(&[0.3f32, -1.0]).view([1, 2]);
        let z2 = Tensor::from_slice(&[2.0f32, 0.5]).view([1, 2]);
        assert_eq!(nt_xent(&one, &z2, 0.5).unwrap().double_value(&[]), 0.0);
        // Scaling a projection does not change a cosine loss.
        let a = nt_xent(&z1, &(&z1 * 3.0), 0.5).unwrap().double_value(&[]);
        assert!((a - got).abs() < 1e-6);
    }

    #[test]
    fn gradients_are_finite_even_for_zero_rows() {
        let z1 = Tensor::from_slice(&[0.0f32, 0.0, 1.0, 2.0, -1.0, 0.5]).view([3, 2]).set_requires_grad(true);
        let z2 = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0, 3.0, -2.0]).view([3, 2]).set_requires_grad(true);
        let l = nt_xent(&z1, &z2, 0.05).unwrap();
        l.backward();
        assert!(l.double_value(&[]).is_finite());
        for g in [z1.grad(), z2.grad()] {
            assert!(g.isfinite().all().int64_value(&[]) == 1, "{g}");
        }
    }

    #[test]
    fn rejects_bad_shapes_and_temperatures() {
        let a = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([3, 3], (Kind::Float, Device::Cpu));
        assert!(nt_xent(&a, &b, 0.5).is_err());
        assert!(nt_xent(&a, &a, 0.0).is_err());
        assert!(nt_xent(&a, &a, f64::NAN).is_err());
        assert!(nt_xent(&a.view([6]), &a.view([6]), 0.5).is_err());
        assert!(cross_entropy(&a, &Tensor::zeros([3], (Kind::Int64, Device::Cpu))).is_err());
    }

    #[test]
    fn weighted_cross_entropy_matches_the_formula_and_equal_weights_give_the_mean() {
        let rows = [[2.0, -1.0, 0.5], [0.0, 0.3, -0.2], [1.5, 1.5, 0.0], [-2.0, 0.0, 3.0]];
        let targets = [0i64, 2, 1, 2];
        let weights = [0.5, 2.0, 1.25];
        let (mut num, mut den) = (0.0, 0.0);
        for (r, &t) in rows.iter().zip(&targets) {
            let lse = r.iter().map(|x: &f64| x.exp()).sum::<f64>().ln();
            num += weights[t as usize] * (lse - r[t as usize]);
            den += weights[t as usize];
        }
        let logits = Tensor::from_slice(&rows.concat().iter().map(|x| *x as f32).collect::<Vec<_>>()).view([4, 3]);
        let t = Tensor::from_slice(&targets);
        let w = Tensor::from_slice(&weights.map(|x| x as f32));
        let got = weighted_cross_entropy(&logits, &t, &w).unwrap().double_value(&[]);
        assert!((got - num / den).abs() < 1e-5, "{got} vs {}", num / den);
        let ones = Tensor::from_slice(&[3.0f32; 3]);
        let plain = cross_entropy(&logits, &t).unwrap().double_value(&[]);
        assert!((weighted_cross_entropy(&logits, &t, &ones).unwrap().double_value(&[]) - plain).abs() < 1e-6);
        assert!(weighted_cross_entropy(&logits, &t, &Tensor::from_slice(&[1.0f32; 2])).is_err());
    }

    /// The segmentation loss written out per pixel in f64.
    fn naive_dice_bce(logits: &[Vec<f64>], target: &[Vec<f64>]) -> f64 {
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let pixels = (logits.len() * logits[0].len()) as f64;
        let mut bce = 0.0;
        let mut dice = 0.0;
        for (l, t) in logits.iter().zip(target) {
            let (mut inter, mut sp, mut st) = (0.0, 0.0, 0.0);
            for (&x, &y) in l.iter().zip(t) {
                let p = sig(x);
                bce -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
                inter += p * y;
                sp += p;
                st += y;
            }
            dice += 1.0 - (2.0 * inter + 1.0) / (sp + st + 1.0);
        }
        bce / pixels + dice / logits.len() as f64
    }

    #[test]
    fn dice_bce_matches_the_formula() {
        let logits = vec![vec![2.0, -1.0, 0.5, -3.0], vec![0.0, 0.0, 4.0, -0.5]];
        let target = vec![vec![1.0, 0.0, 1.0, 0.0], vec![0.0, 0.0, 0.0, 0.0]];
        let flat = |v: &[Vec<f64>]| Tensor::from_slice(&v.concat().iter().map(|x| *x as f32).collect::<Vec<_>>()).view([2, 1, 2, 2]);
        let got = dice_bce(&flat(&logits), &flat(&target)).unwrap().double_value(&[]);
        let want = naive_dice_bce(&logits, &target);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!(dice_bce(&flat(&logits), &Tensor::zeros([2, 1, 2, 3], (Kind::Float, Device::Cpu))).is_err());
    }
}
