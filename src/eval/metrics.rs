//! Classification metrics from confusion matrices, written plainly: rows are the true class,
//! columns the predicted one. Conventions follow scikit-learn's defaults: precision of a class
//! never predicted is 0, balanced accuracy averages the recall of the classes that occur in the
//! truth, and macro averages run over the classes that occur in the truth or the predictions.

use serde::{Deserialize, Serialize};

pub type Confusion = Vec<Vec<u64>>;

pub fn confusion(truth: &[usize], pred: &[usize], classes: usize) -> Confusion {
    let mut m = vec![vec![0u64; classes]; classes];
    for (&t, &p) in truth.iter().zip(pred) {
        m[t][p] += 1;
    }
    m
}

pub fn add(a: &mut Confusion, b: &Confusion) {
    for (ra, rb) in a.iter_mut().zip(b) {
        for (x, y) in ra.iter_mut().zip(rb) {
            *x += y;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f1: Vec<f64>,
    pub macro_f1: f64,
    pub support: Vec<u64>,
}

pub fn scores(m: &Confusion) -> Scores {
    let k = m.len();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let support: Vec<u64> = m.iter().map(|r| r.iter().sum()).collect();
    let predicted: Vec<u64> = (0..k).map(|c| m.iter().map(|r| r[c]).sum()).collect();
    let total: u64 = support.iter().sum();
    let correct: u64 = (0..k).map(|c| m[c][c]).sum();
    let precision: Vec<f64> = (0..k).map(|c| ratio(m[c][c], predicted[c])).collect();
    let recall: Vec<f64> = (0..k).map(|c| ratio(m[c][c], support[c])).collect();
    let f1: Vec<f64> =
        (0..k).map(|c| if precision[c] + recall[c] == 0.0 { 0.0 } else { 2.0 * precision[c] * recall[c] / (precision[c] + recall[c]) }).collect();
    let in_truth: Vec<usize> = (0..k).filter(|&c| support[c] > 0).collect();
    let seen: Vec<usize> = (0..k).filter(|&c| support[c] > 0 || predicted[c] > 0).collect();
    let mean_over = |v: &[f64], idx: &[usize]| if idx.is_empty() { 0.0 } else { idx.iter().map(|&c| v[c]).sum::<f64>() / idx.len() as f64 };
    Scores {
        accuracy: ratio(correct, total),
        balanced_accuracy: mean_over(&recall, &in_truth),
        macro_f1: mean_over(&f1, &seen),
        precision,
        recall,
        f1,
        support,
    }
}

/// scikit-learn's `compute_class_weight("balanced")`: n / (k · n_c) for each of the k classes
/// that occur (n_c > 0); a class that does not occur gets 1 (it is never a target).
pub fn balanced_weights(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    let k = counts.iter().filter(|&&c| c > 0).count();
    counts.iter().map(|&c| if c == 0 { 1.0 } else { n as f64 / (k * c) as f64 }).collect()
}

/// Mean and sample standard deviation (n − 1; 0 for a single value).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// Video-level probabilities: the mean of each video's frames' class probabilities (a video's
/// prediction is their `argmax`). `video[i]`
/// names frame i's video; the result is (video, probabilities) in order of first appearance.
pub fn video_probabilities(probs: &[Vec<f64>], video: &[usize]) -> Vec<(usize, Vec<f64>)> {
    let mut order: Vec<usize> = Vec::new();
    let mut sums: std::collections::HashMap<usize, (Vec<f64>, usize)> = Default::default();
    for (p, &v) in probs.iter().zip(video) {
        let s = sums.entry(v).or_insert_with(|| {
            order.push(v);
            (vec![0.0; p.len()], 0)
        });
        for (a, b) in s.0.iter_mut().zip(p) {
            *a += b;
        }
        s.1 += 1;
    }
    order.into_iter().map(|v| (v, sums[&v].0.iter().map(|x| x / sums[&v].1 as f64).collect())).collect()
}

/// The class with the largest probability (ties go to the lower class).
pub fn argmax(p: &[f64]) -> usize {
    (0..p.len()).fold(0, |b, c| if p[c] > p[b] { c } else { b })
}

/// ROC AUC of scores for a binary truth: the probability that a random positive scores above a
/// random negative, ties counting one half (Mann–Whitney U from average ranks). None without both
/// a positive and a negative.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let mean_rank = (i + j + 2) as f64 / 2.0;
        rank_sum += mean_rank * order[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0) / (n_pos * n_neg) as f64)
}

/// Macro one-vs-rest ROC AUC: each class's probability against "this class or not", averaged
/// over the classes that have both positives and negatives in `truth` (scikit-learn's
/// `roc_auc_score(multi_class="ovr", average="macro")` on the classes present). None when no class
/// qualifies.
pub fn macro_auc(probs: &[Vec<f64>], truth: &[usize], classes: usize) -> Option<f64> {
    let per: Vec<f64> = (0..classes)
        .filter_map(|c| {
            let scores: Vec<f64> = probs.iter().map(|p| p[c]).collect();
            auc(&scores, &truth.iter().map(|&t| t == c).collect::<Vec<_>>())
        })
        .collect();
    (!per.is_empty()).then(|| per.iter().sum::<f64>() / per.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_three_classes() {
        // truth 0 0 0 1 1 2, predicted 0 0 1 1 2 2.
        let m = confusion(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], 3);
        assert_eq!(m, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        let s = scores(&m);
        assert!(close(s.accuracy, 4.0 / 6.0));
        assert_eq!(s.recall, vec![2.0 / 3.0, 0.5, 1.0]);
        assert_eq!(s.precision, vec![1.0, 0.5, 0.5]);
        assert!(close(s.balanced_accuracy, (2.0 / 3.0 + 0.5 + 1.0) / 3.0));
        // F1: 2·1·⅔/(1 + ⅔) = 0.8; 2·½·½/1 = 0.5; 2·½·1/1.5 = ⅔.
        assert!(close(s.f1[0], 0.8) && close(s.f1[1], 0.5) && close(s.f1[2], 2.0 / 3.0));
        assert!(close(s.macro_f1, (0.8 + 0.5 + 2.0 / 3.0) / 3.0));
        assert_eq!(s.support, vec![3, 2, 1]);
    }

    #[test]
    fn absent_classes_follow_the_conventions() {
        // Class 2 never occurs and is never predicted; class 1 is never predicted.
        let m = confusion(&[0, 0, 1, 1], &[0, 0, 0, 0], 3);
        let s = scores(&m);
        assert_eq!(s.precision, vec![0.5, 0.0, 0.0]);
        assert!(close(s.balanced_accuracy, 0.5), "mean recall over classes 0 and 1");
        assert!(close(s.macro_f1, (2.0 / 3.0 + 0.0) / 2.0), "class 2 is not in the average");
        let mut sum = confusion(&[0], &[1], 3);
        add(&mut sum, &m);
        assert_eq!(sum[0], vec![2, 1, 0]);
    }

    #[test]
    fn mean_sd_and_video_votes() {
        let (m, s) = mean_sd(&[0.8, 0.9, 1.0]);
        assert!(close(m, 0.9) && close(s, 0.1));
        assert_eq!(mean_sd(&[0.5]), (0.5, 0.0));
        let probs = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.3, 0.7], vec![0.5, 0.5]];
        // Video 7: frames (0.9, 0.1) and (0.2, 0.8) → mean (0.55, 0.45) → class 0.
        let vp = video_probabilities(&probs, &[7, 7, 3, 3]);
        assert_eq!(vp.iter().map(|(v, p)| (*v, argmax(p))).collect::<Vec<_>>(), vec![(7, 0), (3, 1)]);
        assert_eq!(argmax(&[0.5, 0.5]), 0, "a tie goes to the lower class");
        assert_eq!(vp[0].0, 7);
        assert!(close(vp[0].1[0], 0.55) && close(vp[1].1[1], 0.6));
    }

    /// AUC by counting every positive–negative pair.
    fn naive_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &pi) in positive.iter().enumerate() {
            for (j, &pj) in positive.iter().enumerate() {
                if pi && !pj {
                    pairs += 1.0;
                    wins += if scores[i] > scores[j] {
                        1.0
                    } else if scores[i] == scores[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        (pairs > 0.0).then(|| wins / pairs)
    }

    #[test]
    fn auc_equals_pair_counting_with_ties() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for case in 0..300 {
            let n = rng.gen_range(1..40);
            // Scores on a coarse grid, so that ties are common.
            let scores: Vec<f64> = (0..n).map(|_| rng.gen_range(0..8) as f64 / 8.0).collect();
            let positive: Vec<bool> = (0..n).map(|_| rng.gen_bool(0.4)).collect();
            match (auc(&scores, &positive), naive_auc(&scores, &positive)) {
                (Some(a), Some(b)) => assert!(close(a, b), "case {case}: {a} vs {b}"),
                (a, b) => assert_eq!(a, b, "case {case}"),
            }
        }
        assert_eq!(auc(&[0.1, 0.9], &[false, true]), Some(1.0));
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(auc(&[0.5, 0.7], &[true, true]), None);
    }

    #[test]
    fn balanced_weights_are_sklearns() {
        // sklearn: compute_class_weight("balanced", classes=[0, 1, 2], y=[0]*6 + [1]*2 + [2]*4)
        // = 12 / (3 · [6, 2, 4]) = [0.667, 2, 1].
        let w = balanced_weights(&[6, 2, 4]);
        assert!(close(w[0], 2.0 / 3.0) && close(w[1], 2.0) && close(w[2], 1.0));
        assert_eq!(balanced_weights(&[3, 0, 1]), vec![4.0 / 6.0, 1.0, 2.0]);
    }

    #[test]
    fn macro_auc_averages_the_classes_present() {
        // Three classes; class 2 never occurs, so it is left out of the average.
        let probs = vec![vec![0.8, 0.1, 0.1], vec![0.6, 0.3, 0.1], vec![0.3, 0.6, 0.1], vec![0.7, 0.2, 0.1]];
        let truth = [0, 0, 1, 1];
        // Class 0: positives 0.8, 0.6 vs negatives 0.3, 0.7 → (1 + 1 + 1 + 0) / 4 = 0.75.
        // Class 1: positives 0.6, 0.2 vs negatives 0.1, 0.3 → (1 + 1 + 1 + 0) / 4 = 0.75.
        assert!(close(macro_auc(&probs, &truth, 3).unwrap(), 0.75));
        assert_eq!(macro_auc(&probs[..1], &[0], 3), None);
    }
}
