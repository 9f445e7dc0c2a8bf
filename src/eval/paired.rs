//! Paired comparison of two initialisations evaluated on identical folds and seeds: the mean
//! difference over fold × seed pairs with a bootstrap 95 % interval, the count of pairs each side
//! wins, and the sentence a reader needs ("ahead by … [… , …]" or "no difference detected").
//!
//! The interval is the percentile bootstrap: `RESAMPLES` resamples of the n differences with
//! replacement (seeded, so a report is reproducible), the 2.5th and 97.5th percentiles of their
//! means (linear interpolation between order statistics, as numpy's default). A difference is
//! reported as one only when the interval excludes zero.

use crate::seed;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

pub const RESAMPLES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paired {
    /// Pairs compared.
    pub n: usize,
    /// Mean of (b − a).
    pub mean: f64,
    /// Bootstrap 95 % interval of the mean.
    pub low: f64,
    pub high: f64,
    /// Pairs where b is above, below, equal to a.
    pub wins: usize,
    pub losses: usize,
    pub ties: usize,
}

/// Quantile `q` of sorted values, linear between order statistics.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// b − a over pairs (a[i], b[i]); None without a pair.
pub fn compare(a: &[f64], b: &[f64], seed: u64) -> Option<Paired> {
    assert_eq!(a.len(), b.len(), "paired values come in pairs");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let n = d.len();
    if n == 0 {
        return None;
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let mut rng = seed::stream(seed, "paired-bootstrap", &[]);
    let mut means: Vec<f64> = (0..RESAMPLES).map(|_| (0..n).map(|_| d[rng.gen_range(0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    Some(Paired {
        n,
        mean,
        low: quantile(&means, 0.025),
        high: quantile(&means, 0.975),
        wins: d.iter().filter(|&&x| x > 0.0).count(),
        losses: d.iter().filter(|&&x| x < 0.0).count(),
        ties: d.iter().filter(|&&x| x == 0.0).count(),
    })
}

/// Pairs values by key (a run's fold and seed): b − a over the keys both sides have.
pub fn by_key<K: PartialEq>(a: &[(K, f64)], b: &[(K, f64)], seed: u64) -> Option<Paired> {
    let (xa, xb): (Vec<f64>, Vec<f64>) = a.iter().filter_map(|(k, va)| b.iter().find(|(kb, _)| kb == k).map(|(_, vb)| (*va, *vb))).unzip();
    compare(&xa, &xb, seed)
}

/// Each later item paired with the first earlier one in the same `group` (e.g. protocol): the
/// baseline goes first. `pair` gives the outputs (sentences, rows) of b against a, or why they
/// cannot be paired, which `unpaired(b, a, why)` turns into an output.
pub fn against_baselines<T, G: PartialEq, O>(
    items: &[T],
    group: impl Fn(&T) -> G,
    pair: impl Fn(&T, &T) -> Result<Vec<O>, String>,
    unpaired: impl Fn(&T, &T, String) -> O,
) -> Vec<O> {
    let mut out = Vec::new();
    for (i, b) in items.iter().enumerate() {
        let Some(a) = items[..i].iter().find(|a| group(a) == group(b)) else { continue };
        match pair(a, b) {
            Ok(rows) => out.extend(rows),
            Err(why) => out.push(unpaired(b, a, why)),
        }
    }
    out
}

impl Paired {
    /// Whether the interval excludes zero.
    pub fn is_difference(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }

    /// "b is ahead of a in Dice by +0.060 [+0.020, +0.100], higher in 12 of 15 runs", or "no
    /// difference detected …" when the interval holds zero.
    pub fn sentence(&self, b: &str, a: &str, metric: &str) -> String {
        let numbers = format!("{:+.3} [{:+.3}, {:+.3}], higher in {} of {} runs", self.mean, self.low, self.high, self.wins, self.n);
        if !self.is_difference() {
            format!("{b} vs {a}, {metric}: no difference detected ({numbers})")
        } else if self.mean > 0.0 {
            format!("{b} is ahead of {a} in {metric} by {numbers}")
        } else {
            format!("{b} is behind {a} in {metric} by {numbers}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn known_answers() {
        // A constant gain: every resample's mean is that gain.
        let a = [0.5, 0.6, 0.7, 0.4];
        let p = compare(&a, &a.map(|x| x + 0.1), 1).unwrap();
        assert!((p.mean - 0.1).abs() < 1e-12 && (p.low - 0.1).abs() < 1e-12 && (p.high - 0.1).abs() < 1e-12, "{p:?}");
        assert_eq!((p.wins, p.losses, p.ties), (4, 0, 0));
        assert!(p.sentence("spg", "random", "Dice").starts_with("spg is ahead of random in Dice by +0.100 [+0.100, +0.100], higher in 4 of 4 runs"));
        // Gains and losses that cancel: the interval holds zero.
        let b = [0.6, 0.5, 0.8, 0.3];
        let p = compare(&a, &b, 1).unwrap();
        assert!(p.mean.abs() < 1e-12 && p.low < 0.0 && p.high > 0.0, "{p:?}");
        assert_eq!((p.wins, p.losses), (2, 2));
        assert!(
            p.sentence("spg", "random", "Dice").starts_with("spg vs random, Dice: no difference detected (+0.000"),
            "{}",
            p.sentence("spg", "random", "Dice")
        );
        let p = compare(&a.map(|x| x + 0.2), &a, 1).unwrap();
        assert!(p.sentence("spg", "random", "Dice").starts_with("spg is behind random in Dice by -0.200"));
        assert_eq!(compare(&[], &[], 0), None);
        // The same seed, the same interval.
        assert_eq!(compare(&a, &b, 7), compare(&a, &b, 7));
    }

    #[test]
    fn the_interval_matches_the_normal_approximation_on_a_large_sample() {
        // 400 differences from N(0.05, 0.1²): the bootstrap interval of the mean is close to
        // mean ± 1.96 · sd / √n.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let normal = Normal::new(0.05, 0.1).unwrap();
        let a: Vec<f64> = (0..400).map(|_| 0.5).collect();
        let b: Vec<f64> = a.iter().map(|x| x + normal.sample(&mut rng)).collect();
        let p = compare(&a, &b, 0).unwrap();
        let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
        let sd = (d.iter().map(|x| (x - p.mean).powi(2)).sum::<f64>() / 399.0).sqrt();
        let half = 1.96 * sd / 20.0;
        assert!((p.low - (p.mean - half)).abs() < 0.002 && (p.high - (p.mean + half)).abs() < 0.002, "{p:?} vs ±{half}");
        assert!(p.is_difference());
    }

    #[test]
    fn pairs_by_key_and_against_the_first_of_each_group() {
        let a = [((0, 0), 0.5), ((1, 0), 0.6), ((2, 0), 0.9)];
        let b = [((1, 0), 0.7), ((0, 0), 0.6)];
        let p = by_key(&a, &b, 0).unwrap();
        assert_eq!(p.n, 2);
        assert!((p.mean - 0.1).abs() < 1e-12);
        let items = [("random", 1), ("spg", 1), ("x", 2), ("rs", 1)];
        let lines = against_baselines(
            &items,
            |t| t.1,
            |a, b| if b.0 == "rs" { Err("other folds".into()) } else { Ok(vec![format!("{} vs {}", b.0, a.0)]) },
            |b, a, why| format!("{} vs {}: not paired: {why}", b.0, a.0),
        );
        assert_eq!(lines, vec!["spg vs random", "rs vs random: not paired: other folds"]);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        // numpy.quantile([1, 2, 4, 8], [0, 0.025, 0.5, 0.975, 1]) = 1, 1.075, 3, 7.7, 8.
        for (q, want) in [(0.0, 1.0), (0.025, 1.075), (0.5, 3.0), (0.975, 7.7), (1.0, 8.0)] {
            assert!((quantile(&v, q) - want).abs() < 1e-12, "{q}");
        }
    }
}
