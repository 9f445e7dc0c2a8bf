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

/// Video-level predictions: the class probabilities of a video's frames are averaged and the
/// largest wins (ties go to the lower class). `video[i]` names frame i's video; the result is
/// (video, predicted class) in order of first appearance.
pub fn video_predictions(probs: &[Vec<f64>], video: &[usize]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = Vec::new();
    let mut sums: std::collections::HashMap<usize, Vec<f64>> = Default::default();
    for (p, &v) in probs.iter().zip(video) {
        let s = sums.entry(v).or_insert_with(|| {
            order.push(v);
            vec![0.0; p.len()]
        });
        for (a, b) in s.iter_mut().zip(p) {
            *a += b;
        }
    }
    order
        .into_iter()
        .map(|v| {
            let s = &sums[&v];
            let best = (0..s.len()).fold(0, |b, c| if s[c] > s[b] { c } else { b });
            (v, best)
        })
        .collect()
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
        assert_eq!(video_predictions(&probs, &[7, 7, 3, 3]), vec![(7, 0), (3, 1)]);
        assert_eq!(video_predictions(&[vec![0.5, 0.5]], &[1]), vec![(1, 0)], "a tie goes to the lower class");
    }
}
