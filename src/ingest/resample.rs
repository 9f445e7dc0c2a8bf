//! Which decoded frames an ingest keeps: sampling by presentation time, not by frame index.
//!
//! Targets are τ_k = k / fps for k = 0, 1, 2, … measured from the first frame's timestamp.
//! For every target the first frame whose time t satisfies t ≥ τ_k is kept; a frame that is the
//! first at-or-after several targets (a source slower than `fps`) is kept once. Targets after the
//! last frame's start time select nothing. With frames arriving in presentation order this needs
//! no look-ahead, so a frame is either converted at once or never touched again.
//! All arithmetic is on integer timestamps, so a frame exactly on a target is always kept.

use std::fmt;
use std::str::FromStr;

/// A positive rational number num/den.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rational {
    pub num: i64,
    pub den: i64,
}

impl Rational {
    pub fn new(num: i64, den: i64) -> Option<Rational> {
        (num > 0 && den > 0).then_some(Rational { num, den })
    }

    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

impl FromStr for Rational {
    type Err = String;

    /// Accepts "3", "2.5" or "30000/1001".
    fn from_str(s: &str) -> Result<Rational, String> {
        let bad = || format!("'{s}' is not a positive rate; write e.g. 3, 2.5 or 30000/1001");
        let s = s.trim();
        let (num, den) = if let Some((n, d)) = s.split_once('/') {
            (n.trim().parse::<i64>().map_err(|_| bad())?, d.trim().parse::<i64>().map_err(|_| bad())?)
        } else if let Some((int, frac)) = s.split_once('.') {
            if frac.len() > 6 || !frac.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            let scale = 10i64.pow(frac.len() as u32);
            let int: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad())? };
            let frac: i64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| bad())? };
            (int * scale + frac, scale)
        } else {
            (s.parse::<i64>().map_err(|_| bad())?, 1)
        };
        let g = gcd(num.unsigned_abs(), den.unsigned_abs()).max(1) as i64;
        Rational::new(num / g, den / g).ok_or_else(bad)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Keep this frame; `time_s` is its time since the first frame.
    Keep {
        time_s: f64,
    },
    Drop,
    /// The timestamp is not after the previous one (broken stream); the frame is dropped.
    OutOfOrder,
}

/// Streaming keep/drop decisions for one video stream.
#[derive(Debug, Clone)]
pub struct Resampler {
    fps: Rational,
    time_base: Rational,
    origin: Option<i64>,
    last: Option<i64>,
    next_target: i128,
}

impl Resampler {
    pub fn new(fps: Rational, time_base: Rational) -> Resampler {
        Resampler { fps, time_base, origin: None, last: None, next_target: 0 }
    }

    pub fn offer(&mut self, pts: i64) -> Decision {
        if self.last.is_some_and(|last| pts <= last) {
            return Decision::OutOfOrder;
        }
        self.last = Some(pts);
        let origin = *self.origin.get_or_insert(pts);
        // t·fps in units of 1/(tb.den·fps.den): τ_k ≤ t ⇔ k·tb.den·fps.den ≤ Δpts·tb.num·fps.num.
        let scaled = (pts - origin) as i128 * self.time_base.num as i128 * self.fps.num as i128;
        let unit = self.time_base.den as i128 * self.fps.den as i128;
        if self.next_target * unit > scaled {
            return Decision::Drop;
        }
        self.next_target = scaled / unit + 1;
        let time_s = ((pts - origin) as i128 * self.time_base.num as i128) as f64 / self.time_base.den as f64;
        Decision::Keep { time_s }
    }
}

/// The frame indices kept from a whole list of timestamps (used by tests and tools that
/// predict an ingest's result).
pub fn kept_indices(pts: &[i64], fps: Rational, time_base: Rational) -> Vec<usize> {
    let mut r = Resampler::new(fps, time_base);
    pts.iter().enumerate().filter(|(_, &p)| matches!(r.offer(p), Decision::Keep { .. })).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i64, d: i64) -> Rational {
        Rational::new(n, d).unwrap()
    }

    /// Straight from the definition: for each target τ_k ≤ last time, the first frame with
    /// t ≥ τ_k, de-duplicated. Floating point is safe here because the test inputs avoid ties
    /// other than exact ones representable in binary.
    fn naive(times: &[f64], fps: f64) -> Vec<usize> {
        let mut kept = Vec::new();
        let last = *times.last().unwrap();
        let mut k = 0;
        loop {
            let tau = k as f64 / fps;
            if tau > last + 1e-12 {
                break;
            }
            let i = times.iter().position(|&t| t >= tau - 1e-12).unwrap();
            if kept.last() != Some(&i) {
                kept.push(i);
            }
            k += 1;
        }
        kept
    }

    #[test]
    fn constant_25fps_two_seconds() {
        let pts: Vec<i64> = (0..50).collect();
        // t_last = 1.96 s → targets 0, 1/3, …, 5/3 → first frames at or after them.
        assert_eq!(kept_indices(&pts, r(3, 1), r(1, 25)), vec![0, 9, 17, 25, 34, 42]);
    }

    #[test]
    fn exact_tie_is_kept() {
        // 30 fps: frame 10 is at exactly 1/3 s.
        let pts: Vec<i64> = (0..31).map(|i| i * 512).collect();
        assert_eq!(kept_indices(&pts, r(3, 1), r(1, 15360)), vec![0, 10, 20, 30]);
    }

    #[test]
    fn slower_source_keeps_each_frame_once() {
        // 2 fps source sampled at 3 fps: every frame is first after some target.
        let pts: Vec<i64> = (0..5).collect();
        assert_eq!(kept_indices(&pts, r(3, 1), r(1, 2)), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn variable_frame_rate_and_offset_origin() {
        // 10 frames at 0.1 s, then 40 at 0.02 s, starting at pts 5000 in a 1/1000 time base.
        let mut pts: Vec<i64> = (0..10).map(|i| 5000 + i * 100).collect();
        pts.extend((0..40).map(|i| 6000 + i * 20));
        assert_eq!(kept_indices(&pts, r(3, 1), r(1, 1000)), vec![0, 4, 7, 10, 27, 44]);
    }

    #[test]
    fn matches_naive_reference_on_irregular_streams() {
        // Deterministic pseudo-random gaps (an LCG, no RNG crate needed).
        let mut state = 12345u64;
        for case in 0..200 {
            let mut pts = vec![0i64];
            let n = 2 + case % 60;
            for _ in 0..n {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                pts.push(pts.last().unwrap() + 1 + (state >> 33) as i64 % 97);
            }
            let times: Vec<f64> = pts.iter().map(|&p| p as f64 / 1000.0).collect();
            for fps in [1i64, 3, 7] {
                assert_eq!(kept_indices(&pts, r(fps, 1), r(1, 1000)), naive(&times, fps as f64), "case {case} fps {fps}");
            }
        }
    }

    #[test]
    fn out_of_order_and_duplicate_timestamps_are_dropped() {
        let mut s = Resampler::new(r(3, 1), r(1, 10));
        assert_eq!(s.offer(0), Decision::Keep { time_s: 0.0 });
        assert_eq!(s.offer(0), Decision::OutOfOrder);
        assert_eq!(s.offer(4), Decision::Keep { time_s: 0.4 });
        assert_eq!(s.offer(3), Decision::OutOfOrder);
    }

    #[test]
    fn single_frame_is_kept() {
        assert_eq!(kept_indices(&[77], r(3, 1), r(1, 90000)), vec![0]);
    }

    #[test]
    fn parses_rates() {
        assert_eq!("3".parse::<Rational>().unwrap(), r(3, 1));
        assert_eq!("2.5".parse::<Rational>().unwrap(), r(5, 2));
        assert_eq!("30000/1001".parse::<Rational>().unwrap(), r(30000, 1001));
        for bad in ["0", "-3", "abc", "1/0", ""] {
            assert!(bad.parse::<Rational>().is_err(), "{bad}");
        }
    }
}
