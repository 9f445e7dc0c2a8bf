//! Learning-rate schedule: linear warm-up from 0, then a half cosine down to 0, per optimiser step.

/// Learning rate for step `step` (0-based) of `total`, warming up over the first `warmup` steps.
pub fn lr_at(base: f64, step: u64, total: u64, warmup: u64) -> f64 {
    let warmup = warmup.min(total);
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = (total - warmup).max(1) as f64;
    let t = ((step - warmup) as f64 / span).min(1.0);
    base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        assert_eq!(lr_at(1.0, 0, 100, 10), 0.1);
        assert_eq!(lr_at(1.0, 9, 100, 10), 1.0);
        assert_eq!(lr_at(1.0, 10, 100, 10), 1.0);
        assert!((lr_at(1.0, 55, 100, 10) - 0.5).abs() < 1e-12);
        assert!(lr_at(1.0, 99, 100, 10) < 0.001);
        assert_eq!(lr_at(2.0, 0, 5, 0), 2.0);
        assert_eq!(lr_at(1.0, 4, 5, 50), 1.0, "warm-up longer than the run ends at the base rate");
        let lrs: Vec<f64> = (10..100).map(|s| lr_at(1.0, s, 100, 10)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }
}
