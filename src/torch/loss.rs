//! Training losses as plain functions with shape checks.
//!
//! NT-Xent (paper Eq. 3–5): for 2N projections where z1[k], z2[k] are the two views of video k,
//! ℓ(i, j) = −log( exp(sim(i, j)/τ) / Σ_{m≠i} exp(sim(i, m)/τ) ), sim the cosine similarity, and
//! L = (1/2N) Σ_k [ℓ(k, N+k) + ℓ(N+k, k)]. Every other view in the batch is a negative.
//!
//! `nt_xent_with` generalises it for IVPP and UCL: pair k's two terms are scaled by its weight
//! w_k, L = (1/2N) Σ_k w_k [ℓ(k, N+k) + ℓ(N+k, k)] (VanBerlo et al.: per-pair loss × sample
//! weight, then the batch mean), and E extra embeddings h_e (in-video hard negatives) join every
//! anchor's denominator: Σ_{m≠i} exp(sim(i, m)/τ) + Σ_e exp(sim(i, h_e)/τ).
//!
//! `moco` is MoCo v2's InfoNCE (He et al. 2020, Chen et al. 2020): for query q_n and its key k_n
//! (the key encoder's view of the same video), ℓ_n = −log( exp(q_n·k_n/τ) / (exp(q_n·k_n/τ) +
//! Σ_j exp(q_n·Q_j/τ)) ) over the queue Q of past keys, L = mean_n ℓ_n; vectors unit length. One
//! change from MoCo: queue entries of the query's own video are left out of its sum.

use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ShapeError(String);

/// Rows are scaled to unit length; a zero row stays zero (its similarities are 0) instead of NaN.
fn normalize(z: &Tensor) -> Tensor {
    z / z.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-8)
}

#[cfg(test)]
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Result<Tensor, ShapeError> {
    nt_xent_with(z1, z2, temperature, None, None)
}

/// Extra negatives for `nt_xent_with`: [E, d] embeddings and an [E] bool mask of the rows to use.
pub struct Extra<'a> {
    pub embeddings: &'a Tensor,
    pub valid: &'a Tensor,
}

/// NT-Xent with per-pair `weights` [N] (None: all 1) and `extra` negatives (module docs).
pub fn nt_xent_with(z1: &Tensor, z2: &Tensor, temperature: f64, weights: Option<&Tensor>, extra: Option<Extra>) -> Result<Tensor, ShapeError> {
    let (s1, s2) = (z1.size(), z2.size());
    if s1.len() != 2 || s1 != s2 || s1[0] < 1 {
        return Err(ShapeError(format!("nt_xent needs two [N, d] tensors of equal shape with N ≥ 1, got {s1:?} and {s2:?}")));
    }
    if temperature.is_nan() || temperature <= 0.0 {
        return Err(ShapeError(format!("nt_xent needs a temperature > 0, got {temperature}")));
    }
    let n = s1[0];
    if let Some(w) = weights.filter(|w| w.size() != [n]) {
        return Err(ShapeError(format!("nt_xent needs [N] = [{n}] pair weights, got {:?}", w.size())));
    }
    let z = normalize(&Tensor::cat(&[z1, z2], 0).to_kind(Kind::Float));
    let sim = z.mm(&z.tr()) / temperature;
    let eye = Tensor::eye(2 * n, (Kind::Bool, z.device()));
    let mut logits = sim.masked_fill(&eye, f64::NEG_INFINITY);
    if let Some(e) = extra {
        let (se, sv) = (e.embeddings.size(), e.valid.size());
        if se.len() != 2 || se[1] != s1[1] || sv != [se[0]] {
            return Err(ShapeError(format!("nt_xent needs [E, {}] extra negatives and an [E] mask, got {se:?} and {sv:?}", s1[1])));
        }
        let h = normalize(&e.embeddings.to_kind(Kind::Float));
        let to_extra = (z.mm(&h.tr()) / temperature).masked_fill(&e.valid.logical_not().unsqueeze(0), f64::NEG_INFINITY);
        logits = Tensor::cat(&[logits, to_extra], 1);
    }
    let idx = Tensor::arange(n, (Kind::Int64, z.device()));
    let targets = Tensor::cat(&[&idx + n, idx], 0);
    match weights {
        None => Ok(logits.cross_entropy_for_logits(&targets)),
        Some(w) => {
            let nll = logits.log_softmax(1, Kind::Float).gather(1, &targets.unsqueeze(1), false).squeeze_dim(1).neg();
            let w = w.to_kind(Kind::Float).to_device(z.device());
            Ok((Tensor::cat(&[&w, &w], 0) * nll).sum(Kind::Float) / (2 * n) as f64)
        }
    }
}

/// MoCo v2's InfoNCE (module docs): queries `q` and keys `k` [N, d], the `queue` [K, d] (unit
/// rows), the video of each queue entry `queue_videos` [K] and of each query `videos` [N] (an
/// entry of the query's own video is no negative; −1 marks an entry of no video).
pub fn moco(q: &Tensor, k: &Tensor, queue: &Tensor, queue_videos: &Tensor, videos: &Tensor, temperature: f64) -> Result<Tensor, ShapeError> {
    let (sq, sk, squeue) = (q.size(), k.size(), queue.size());
    if sq.len() != 2 || sq != sk || sq[0] < 1 || squeue.len() != 2 || squeue[1] != sq[1] || queue_videos.size() != [squeue[0]] || videos.size() != [sq[0]] {
        return Err(ShapeError(format!(
            "moco needs [N, d] queries and keys, a [K, d] queue, [K] queue videos and [N] videos, got {sq:?}, {sk:?}, {squeue:?}, {:?}, {:?}",
            queue_videos.size(),
            videos.size()
        )));
    }
    if temperature.is_nan() || temperature <= 0.0 {
        return Err(ShapeError(format!("moco needs a temperature > 0, got {temperature}")));
    }
    let (q, k) = (normalize(&q.to_kind(Kind::Float)), normalize(&k.to_kind(Kind::Float)));
    let pos = (&q * &k).sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    let own = videos.unsqueeze(1).eq_tensor(&queue_videos.unsqueeze(0));
    let neg = q.mm(&queue.to_kind(Kind::Float).tr()).masked_fill(&own, f64::NEG_INFINITY);
    let logits = Tensor::cat(&[pos, neg], 1) / temperature;
    let targets = Tensor::zeros([sq[0]], (Kind::Int64, q.device()));
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

    fn cos(a: &[f64], b: &[f64]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-8);
        let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-8);
        dot / (na * nb)
    }

    /// IVPP's weighted NT-Xent with UCL's extra negatives, as loops: pair k's two terms times w_k,
    /// every valid extra row in every anchor's denominator.
    fn naive_with(z1: &[Vec<f64>], z2: &[Vec<f64>], w: &[f64], extra: &[Vec<f64>], valid: &[bool], tau: f64) -> f64 {
        let z: Vec<&Vec<f64>> = z1.iter().chain(z2.iter()).collect();
        let n = z1.len();
        let l = |i: usize, j: usize| {
            let mut den: f64 = (0..2 * n).filter(|&m| m != i).map(|m| (cos(z[i], z[m]) / tau).exp()).sum();
            den += extra.iter().zip(valid).filter(|e| *e.1).map(|(h, _)| (cos(z[i], h) / tau).exp()).sum::<f64>();
            -((cos(z[i], z[j]) / tau).exp() / den).ln()
        };
        (0..n).map(|k| w[k] * (l(k, n + k) + l(n + k, k))).sum::<f64>() / (2 * n) as f64
    }

    /// MoCo v2's InfoNCE as loops, leaving out queue entries of the query's own video.
    fn naive_moco(q: &[Vec<f64>], k: &[Vec<f64>], queue: &[Vec<f64>], queue_videos: &[i64], videos: &[i64], tau: f64) -> f64 {
        let n = q.len();
        (0..n)
            .map(|i| {
                let pos = (cos(&q[i], &k[i]) / tau).exp();
                let neg: f64 = queue.iter().zip(queue_videos).filter(|e| *e.1 != videos[i]).map(|(e, _)| (cos(&q[i], e) / tau).exp()).sum();
                -(pos / (pos + neg)).ln()
            })
            .sum::<f64>()
            / n as f64
    }

    #[test]
    fn weighted_nt_xent_with_extra_negatives_matches_the_naive_loop() {
        tch::manual_seed(12);
        for (n, e, d, tau) in [(1, 0, 4, 0.5), (3, 2, 5, 0.5), (6, 12, 16, 0.1), (4, 8, 8, 2.0)] {
            let (z1, z2) = (Tensor::randn([n, d], (Kind::Double, Device::Cpu)), Tensor::randn([n, d], (Kind::Double, Device::Cpu)));
            let h = Tensor::randn([e, d], (Kind::Double, Device::Cpu));
            let w: Vec<f64> = (0..n).map(|k| 0.25 + 0.25 * (k % 4) as f64).collect();
            let valid: Vec<bool> = (0..e).map(|k| k % 3 != 1).collect();
            let extra = Extra { embeddings: &h, valid: &Tensor::from_slice(&valid) };
            let got = nt_xent_with(&z1, &z2, tau, Some(&Tensor::from_slice(&w)), Some(extra)).unwrap().double_value(&[]);
            let want = naive_with(&rows(&z1), &rows(&z2), &w, &rows(&h), &valid, tau);
            assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "N={n} E={e}: {got} vs {want}");
            // Unit weights and no extra rows: plain NT-Xent.
            let plain = nt_xent_with(&z1, &z2, tau, Some(&Tensor::ones([n], (Kind::Float, Device::Cpu))), None).unwrap().double_value(&[]);
            assert!((plain - naive(&rows(&z1), &rows(&z2), tau)).abs() < 1e-5, "N={n}");
        }
        let z = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        assert!(nt_xent_with(&z, &z, 0.5, Some(&Tensor::ones([2], (Kind::Float, Device::Cpu))), None).is_err());
        let bad = Extra { embeddings: &Tensor::ones([2, 3], (Kind::Float, Device::Cpu)), valid: &Tensor::from_slice(&[true, true]) };
        assert!(nt_xent_with(&z, &z, 0.5, None, Some(bad)).is_err());
    }

    #[test]
    fn moco_matches_the_naive_loop() {
        tch::manual_seed(13);
        for (n, k, d, tau) in [(1, 1, 4, 0.2), (4, 16, 8, 0.2), (8, 32, 16, 0.07), (3, 5, 6, 1.0)] {
            let (q, key) = (Tensor::randn([n, d], (Kind::Double, Device::Cpu)), Tensor::randn([n, d], (Kind::Double, Device::Cpu)));
            let queue = normalize(&Tensor::randn([k, d], (Kind::Double, Device::Cpu)));
            let queue_videos: Vec<i64> = (0..k).map(|j| j % 5 - 1).collect();
            let videos: Vec<i64> = (0..n).map(|i| i % 4).collect();
            let got = moco(&q, &key, &queue, &Tensor::from_slice(&queue_videos), &Tensor::from_slice(&videos), tau).unwrap().double_value(&[]);
            let want = naive_moco(&rows(&q), &rows(&key), &rows(&queue), &queue_videos, &videos, tau);
            assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "N={n} K={k}: {got} vs {want}");
        }
        // A queue wholly of the query's own video leaves only the positive: loss 0.
        let q = Tensor::randn([2, 4], (Kind::Float, Device::Cpu));
        let own = moco(&q, &q, &normalize(&q), &Tensor::from_slice(&[7i64, 7]), &Tensor::from_slice(&[7i64, 7]), 0.2).unwrap();
        assert!(own.double_value(&[]).abs() < 1e-6);
        assert!(moco(&q, &q, &q, &Tensor::from_slice(&[1i64]), &Tensor::from_slice(&[7i64, 7]), 0.2).is_err());
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
