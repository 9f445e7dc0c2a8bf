//! Pair strategies (SPG, RSTFV, RSOFV, RS, IVPP), the mixing rule and in-video hard negatives as
//! pure functions of a seeded generator: they name frame rows of the store, mixing weights and
//! pair weights, never pixels. The loader turns them into tensors; this file alone decides which
//! frames a batch pairs, how they are mixed and which frames are extra negatives.

use crate::config::{HardNegativeSchedule, IvppConfig, Mix, Pairs, SpgConfig, TrainConfig};
use crate::seed::{self, Rng};
use rand::seq::SliceRandom;
use rand::Rng as _;
use rand_distr::{Beta, Distribution};
use serde::Serialize;

/// One video's frames: rows first_row .. first_row + frames of the store, in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clip {
    pub first_row: usize,
    pub frames: usize,
}

/// One view before augmentation: xi · anchor + (1 − xi) · other (other = anchor, xi = 1: no mixing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub anchor: usize,
    pub other: usize,
    pub xi: f32,
}

impl View {
    pub fn single(row: usize) -> View {
        View { anchor: row, other: row, xi: 1.0 }
    }
}

/// A positive pair; `clip` is the index of the clip it came from (for its label). `weight` scales
/// its term of the contrastive loss (1 except for weighted IVPP).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub clip: usize,
    pub views: [View; 2],
    pub weight: f32,
}

impl Pair {
    pub fn new(clip: usize, views: [View; 2]) -> Pair {
        Pair { clip, views, weight: 1.0 }
    }
}

/// How often a video had too few frames for the strategy (reported per epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Fallbacks {
    /// SPG on a two-frame video: the two frames, no mixing.
    pub two_frames: u64,
    /// SPG or RSTFV on a one-frame video: that frame, augmented twice.
    pub one_frame: u64,
    /// Hard negatives asked of a one-frame video (it has none to give; see `hard_negatives`).
    pub no_hard_negative: u64,
    /// Hard negatives taken nearest to the band because no frame of the video lay inside it.
    pub hard_outside_band: u64,
}

impl Fallbacks {
    pub fn add(&mut self, o: Fallbacks) {
        self.two_frames += o.two_frames;
        self.one_frame += o.one_frame;
        self.no_hard_negative += o.no_hard_negative;
        self.hard_outside_band += o.hard_outside_band;
    }
}

/// The pair strategy with its parameters, ready to draw from.
pub struct Sampler {
    pairs: Pairs,
    shared_xi: bool,
    mix: Mix,
    beta: Beta<f64>,
    ivpp: IvppConfig,
    /// Per store row: seconds since its video's first frame (IVPP and hard negatives need them).
    times: Vec<f64>,
    hard: u32,
    schedule: HardNegativeSchedule,
    epochs: u32,
}

impl Sampler {
    pub fn new(pairs: Pairs, spg: &SpgConfig) -> Result<Sampler, String> {
        let beta = Beta::new(spg.alpha, spg.beta).map_err(|e| format!("spg.alpha/spg.beta: {e}"))?;
        let (ivpp, schedule) = (IvppConfig::default(), HardNegativeSchedule::default());
        Ok(Sampler { pairs, shared_xi: spg.shared_xi, mix: spg.mix, beta, ivpp, times: Vec::new(), hard: 0, schedule, epochs: 1 })
    }

    /// The sampler of a training config; `times` holds every store row's `time_s`.
    pub fn from_config(c: &TrainConfig, times: Vec<f64>) -> Result<Sampler, String> {
        let s = Sampler::new(c.pairs, &c.spg)?;
        Ok(Sampler { ivpp: c.ivpp.clone(), times, hard: c.hard_negatives, schedule: c.hard_negative_schedule.clone(), epochs: c.epochs, ..s })
    }

    /// In-video hard negatives per pair (0: none).
    pub fn hard_per_pair(&self) -> usize {
        self.hard as usize
    }

    /// Whether a view's two frames are augmented one by one and mixed afterwards (SPG with
    /// `mix = "after"`); otherwise the mixed image is augmented. Only SPG mixes.
    pub fn mixes_after(&self) -> bool {
        self.pairs == Pairs::Spg && self.mix == Mix::After
    }

    /// The positive pairs of one training batch over the clips `batch` (indices into `clips`).
    /// RS ignores videos: its pairs come from every frame of the clips `train`.
    pub fn batch(&self, rng: &mut Rng, clips: &[Clip], batch: &[usize], train: &[usize], fallbacks: &mut Fallbacks) -> Vec<Pair> {
        if self.pairs == Pairs::Rs {
            let pool: Vec<Clip> = train.iter().map(|&c| clips[c]).collect();
            return rs_pairs(rng, &pool, batch.len()).into_iter().map(|p| Pair { clip: train[p.clip], ..p }).collect();
        }
        batch.iter().map(|&c| self.pair(rng, clips, c, fallbacks)).collect()
    }

    pub fn xi(&self, rng: &mut Rng) -> f32 {
        self.beta.sample(rng) as f32
    }

    /// One positive pair from clip `c` (the video-aware strategies; `batch` handles RS).
    pub fn pair(&self, rng: &mut Rng, clips: &[Clip], c: usize, fallbacks: &mut Fallbacks) -> Pair {
        let clip = clips[c];
        let row = |i: usize| clip.first_row + i;
        let n = clip.frames;
        let views = match self.pairs {
            Pairs::Spg if n >= 3 => {
                let mut idx = rand::seq::index::sample(rng, n, 3).into_vec();
                idx.sort_unstable();
                let xi1 = self.xi(rng);
                let xi2 = if self.shared_xi { xi1 } else { self.xi(rng) };
                [View { anchor: row(idx[1]), other: row(idx[0]), xi: xi1 }, View { anchor: row(idx[1]), other: row(idx[2]), xi: xi2 }]
            }
            Pairs::Spg | Pairs::Rstfv if n >= 2 => {
                if self.pairs == Pairs::Spg {
                    fallbacks.two_frames += 1;
                }
                let idx = rand::seq::index::sample(rng, n, 2).into_vec();
                [View::single(row(idx[0])), View::single(row(idx[1]))]
            }
            Pairs::Spg | Pairs::Rstfv => {
                fallbacks.one_frame += 1;
                [View::single(row(0)), View::single(row(0))]
            }
            Pairs::Rsofv | Pairs::Rs => {
                // RSOFV; RS never comes here (see `batch`).
                let r = row(rng.gen_range(0..n));
                [View::single(r), View::single(r)]
            }
            Pairs::Ivpp => return self.ivpp_pair(rng, clip, c),
        };
        Pair::new(c, views)
    }

    /// IVPP: a first frame drawn uniformly, a second uniformly among the frames at most
    /// `window_s` from it in time (itself included), weighted 1 − d / (window_s + δ) with d their
    /// distance in seconds and δ the clip's mean frame interval. With frames every δ seconds and
    /// window_s = Dδ this is VanBerlo et al.'s (D − |i − j| + 1) / (D + 1).
    fn ivpp_pair(&self, rng: &mut Rng, clip: Clip, c: usize) -> Pair {
        let t = &self.times[clip.first_row..clip.first_row + clip.frames];
        let i = rng.gen_range(0..clip.frames);
        let near: Vec<usize> = (0..clip.frames).filter(|&j| (t[j] - t[i]).abs() <= self.ivpp.window_s + 1e-9).collect();
        let j = near[rng.gen_range(0..near.len())];
        let delta = if clip.frames > 1 { (t[clip.frames - 1] - t[0]) / (clip.frames - 1) as f64 } else { 0.0 };
        let weight = if self.ivpp.weighted && self.ivpp.window_s + delta > 0.0 { 1.0 - (t[j] - t[i]).abs() / (self.ivpp.window_s + delta) } else { 1.0 };
        let row = |k: usize| clip.first_row + k;
        Pair { clip: c, views: [View::single(row(i)), View::single(row(j))], weight: weight as f32 }
    }

    /// In-video hard negatives (UCL): per pair, `hard_per_pair` frames of its own video drawn
    /// uniformly (with replacement) among those whose distance in time from the pair's anchor
    /// frame (`views[0].anchor`), as a fraction of the video's duration, lies in the schedule's
    /// band at `epoch`; when none does, among the frames nearest the band. Pair-major: entry
    /// p · hard_per_pair + m. None for a video of one frame (or of zero duration).
    pub fn hard_negatives(&self, rng: &mut Rng, clips: &[Clip], pairs: &[Pair], epoch: u32, fallbacks: &mut Fallbacks) -> Vec<Option<usize>> {
        if self.hard == 0 {
            return Vec::new();
        }
        let [lo, hi] = self.schedule.band(epoch, self.epochs);
        let mut out = Vec::with_capacity(pairs.len() * self.hard as usize);
        for p in pairs {
            let clip = clips[p.clip];
            let t = &self.times[clip.first_row..clip.first_row + clip.frames];
            let duration = t[clip.frames - 1] - t[0];
            if clip.frames < 2 || duration <= 0.0 {
                fallbacks.no_hard_negative += self.hard as u64;
                out.extend(std::iter::repeat_n(None, self.hard as usize));
                continue;
            }
            let a = p.views[0].anchor - clip.first_row;
            // Distance of each other frame from the band, 0 inside it.
            let off: Vec<(usize, f64)> = (0..clip.frames)
                .filter(|&j| j != a)
                .map(|j| {
                    let f = (t[j] - t[a]).abs() / duration;
                    (j, (lo - f).max(f - hi).max(0.0))
                })
                .collect();
            let best = off.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            let pool: Vec<usize> = off.iter().filter(|x| x.1 <= best + 1e-12).map(|x| x.0).collect();
            if best > 0.0 {
                fallbacks.hard_outside_band += self.hard as u64;
            }
            for _ in 0..self.hard {
                out.push(Some(clip.first_row + pool[rng.gen_range(0..pool.len())]));
            }
        }
        out
    }
}

/// The clips of one epoch's batches: a seeded shuffle cut into batches of `batch_size`. A last
/// batch of a single video is dropped when batches are larger than one, because it has no negatives.
pub fn epoch_batches(seed: u64, epoch: u32, n_clips: usize, batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n_clips).collect();
    order.shuffle(&mut seed::stream(seed, "epoch-order", &[epoch as u64]));
    let mut batches: Vec<Vec<usize>> = order.chunks(batch_size).map(|c| c.to_vec()).collect();
    if batch_size > 1 && batches.last().is_some_and(|b| b.len() == 1) {
        batches.pop();
    }
    batches
}

/// RS: `count` pairs of frames drawn uniformly from all frames of all clips, ignoring videos.
fn rs_pairs(rng: &mut Rng, clips: &[Clip], count: usize) -> Vec<Pair> {
    let total: usize = clips.iter().map(|c| c.frames).sum();
    (0..count)
        .map(|_| {
            let mut k = rng.gen_range(0..total);
            let mut c = 0;
            while k >= clips[c].frames {
                k -= clips[c].frames;
                c += 1;
            }
            let r = clips[c].first_row + k;
            Pair::new(c, [View::single(r), View::single(r)])
        })
        .collect()
}

/// The fixed, un-augmented validation pair of a clip: frames at a quarter and three quarters.
pub fn validation_pair(clips: &[Clip], c: usize) -> Pair {
    let clip = clips[c];
    let (a, b) = (clip.frames / 4, (3 * clip.frames) / 4);
    Pair::new(c, [View::single(clip.first_row + a), View::single(clip.first_row + b.min(clip.frames - 1))])
}

/// Splits videos into (train, validation) index lists: whole groups (patients, where known) go to
/// one side, so a patient's videos never score the validation loss of a model trained on them.
pub fn split(seed: u64, groups: &[Option<String>], val_fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let mut keys: Vec<(String, Vec<usize>)> = Vec::new();
    let mut by: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, g) in groups.iter().enumerate() {
        match g {
            Some(g) => by.entry(g.clone()).or_default().push(i),
            None => keys.push((format!("\0video-{i}"), vec![i])),
        }
    }
    keys.extend(by);
    keys.sort();
    keys.shuffle(&mut seed::stream(seed, "split", &[]));
    let target = (val_fraction * groups.len() as f64).round() as usize;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (_, members) in keys {
        if val.len() < target && val.len() + members.len() < groups.len() {
            val.extend(members);
        } else {
            train.extend(members);
        }
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Which of the labelled videos keep their label: a seeded fraction `rate` of them, at least one
/// when rate > 0 (the paper's 1 % of a small corpus would otherwise round to none).
pub fn labelled_subset(seed: u64, labelled: &[usize], rate: f64) -> Vec<usize> {
    if rate <= 0.0 || labelled.is_empty() {
        return Vec::new();
    }
    let k = ((rate * labelled.len() as f64).round() as usize).clamp(1, labelled.len());
    let mut v = labelled.to_vec();
    v.shuffle(&mut seed::stream(seed, "labels", &[]));
    v.truncate(k);
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clips() -> Vec<Clip> {
        vec![Clip { first_row: 0, frames: 10 }, Clip { first_row: 10, frames: 2 }, Clip { first_row: 12, frames: 1 }, Clip { first_row: 13, frames: 5 }]
    }

    #[test]
    fn spg_three_distinct_frames_in_time_order_of_one_video() {
        let s = Sampler::new(Pairs::Spg, &SpgConfig::default()).unwrap();
        let clips = clips();
        let mut rng = seed::stream(1, "t", &[]);
        let mut fb = Fallbacks::default();
        for _ in 0..500 {
            for c in [0, 3] {
                let p = s.pair(&mut rng, &clips, c, &mut fb);
                let [v1, v2] = p.views;
                assert_eq!(v1.anchor, v2.anchor);
                assert!(v1.other < v1.anchor && v1.anchor < v2.other, "{p:?}");
                let range = clips[c].first_row..clips[c].first_row + clips[c].frames;
                assert!(range.contains(&v1.other) && range.contains(&v2.other));
                assert!((0.0..=1.0).contains(&v1.xi) && (0.0..=1.0).contains(&v2.xi));
            }
        }
        assert_eq!(fb, Fallbacks::default());
        let two = s.pair(&mut rng, &clips, 1, &mut fb);
        assert_eq!((two.views[0].xi, two.views[1].xi), (1.0, 1.0));
        assert_ne!(two.views[0].anchor, two.views[1].anchor);
        let one = s.pair(&mut rng, &clips, 2, &mut fb);
        assert_eq!(one.views, [View::single(12), View::single(12)]);
        assert_eq!(fb, Fallbacks { two_frames: 1, one_frame: 1, ..Fallbacks::default() });
    }

    #[test]
    fn shared_xi_and_other_strategies() {
        let clips = clips();
        let mut rng = seed::stream(2, "t", &[]);
        let mut fb = Fallbacks::default();
        let shared = Sampler::new(Pairs::Spg, &SpgConfig { shared_xi: true, ..Default::default() }).unwrap();
        let p = shared.pair(&mut rng, &clips, 0, &mut fb);
        assert_eq!(p.views[0].xi, p.views[1].xi);
        let rsofv = Sampler::new(Pairs::Rsofv, &SpgConfig::default()).unwrap();
        let p = rsofv.pair(&mut rng, &clips, 3, &mut fb);
        assert_eq!(p.views[0], p.views[1]);
        let rstfv = Sampler::new(Pairs::Rstfv, &SpgConfig::default()).unwrap();
        for _ in 0..100 {
            let p = rstfv.pair(&mut rng, &clips, 0, &mut fb);
            assert_ne!(p.views[0].anchor, p.views[1].anchor);
            assert!(p.views[0].anchor < 10 && p.views[1].anchor < 10);
        }
        assert_eq!(fb, Fallbacks::default());
        let rs = rs_pairs(&mut rng, &clips, 2000);
        let mut seen = [0usize; 18];
        for p in &rs {
            let c = clips[p.clip];
            assert!((c.first_row..c.first_row + c.frames).contains(&p.views[0].anchor));
            seen[p.views[0].anchor] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "every frame drawn about equally often: {seen:?}");
    }

    #[test]
    fn batches_pair_each_clip_and_rs_draws_from_the_training_clips_only() {
        let clips = clips();
        let mut fb = Fallbacks::default();
        let spg = Sampler::new(Pairs::Spg, &SpgConfig::default()).unwrap();
        let pairs = spg.batch(&mut seed::stream(4, "t", &[]), &clips, &[3, 0], &[0, 3], &mut fb);
        assert_eq!(pairs.iter().map(|p| p.clip).collect::<Vec<_>>(), vec![3, 0]);
        let rs = Sampler::new(Pairs::Rs, &SpgConfig::default()).unwrap();
        // Training clips 1 and 3 (rows 10–11 and 13–17): every RS frame comes from them.
        let pairs = rs.batch(&mut seed::stream(4, "t", &[]), &clips, &[1, 3, 3, 1, 3], &[1, 3], &mut fb);
        assert_eq!(pairs.len(), 5);
        for p in &pairs {
            let c = clips[p.clip];
            assert!([1, 3].contains(&p.clip) && (c.first_row..c.first_row + c.frames).contains(&p.views[0].anchor), "{p:?}");
        }
        let after = SpgConfig { mix: Mix::After, ..SpgConfig::default() };
        assert!(Sampler::new(Pairs::Spg, &after).unwrap().mixes_after());
        assert!(!Sampler::new(Pairs::Rstfv, &after).unwrap().mixes_after());
        assert!(!spg.mixes_after());
    }

    #[test]
    fn xi_follows_beta_half_half() {
        // Beta(0.5, 0.5) is the arcsine law: mean 1/2, variance 1/8, P(ξ < 0.1) = (2/π)·asin(√0.1).
        let s = Sampler::new(Pairs::Spg, &SpgConfig::default()).unwrap();
        let mut rng = seed::stream(3, "xi", &[]);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| s.xi(&mut rng) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let below = xs.iter().filter(|&&x| x < 0.1).count() as f64 / n as f64;
        let expected = 2.0 / std::f64::consts::PI * 0.1f64.sqrt().asin();
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((var - 0.125).abs() < 0.002, "variance {var}");
        assert!((below - expected).abs() < 0.005, "P(ξ<0.1) {below} vs {expected}");
    }

    #[test]
    fn batches_hold_each_video_once() {
        let b = epoch_batches(5, 3, 70, 32);
        assert_eq!(b.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![32, 32, 6]);
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, (0..70).collect::<Vec<_>>());
        assert_eq!(b, epoch_batches(5, 3, 70, 32));
        assert_ne!(b, epoch_batches(5, 4, 70, 32));
        assert_eq!(epoch_batches(5, 0, 65, 32).len(), 2, "a lone last video has no negatives");
        assert_eq!(epoch_batches(5, 0, 3, 1).len(), 3, "batch size 1 keeps every video");
    }

    #[test]
    fn split_keeps_patients_together_and_labels_subset() {
        let groups: Vec<Option<String>> = (0..50).map(|i| if i < 30 { Some(format!("p{}", i / 3)) } else { None }).collect();
        let (train, val) = split(9, &groups, 0.2);
        assert_eq!(train.len() + val.len(), 50);
        assert!((10..=12).contains(&val.len()), "{}", val.len());
        for v in &val {
            for t in &train {
                assert!(groups[*v].is_none() || groups[*v] != groups[*t], "patient on both sides");
            }
        }
        assert_eq!(split(9, &groups, 0.2), (train.clone(), val));
        assert_eq!(split(9, &groups, 0.0).1, Vec::<usize>::new());
        let labelled: Vec<usize> = (0..200).collect();
        assert_eq!(labelled_subset(1, &labelled, 0.01).len(), 2);
        assert_eq!(labelled_subset(1, &labelled[..10], 0.01).len(), 1);
        assert!(labelled_subset(1, &labelled, 0.0).is_empty());
        assert_eq!(labelled_subset(1, &labelled, 1.0), labelled);
    }

    #[test]
    fn validation_pair_is_fixed() {
        let clips = clips();
        assert_eq!(validation_pair(&clips, 0).views, [View::single(2), View::single(7)]);
        assert_eq!(validation_pair(&clips, 1).views, [View::single(10), View::single(11)]);
        assert_eq!(validation_pair(&clips, 2).views, [View::single(12), View::single(12)]);
    }

    /// Row times of `clips()`: clip 0 every 1/3 s, clip 1 two frames, clip 2 one, clip 3 uneven.
    fn times() -> Vec<f64> {
        let mut t: Vec<f64> = (0..10).map(|k| k as f64 / 3.0).collect();
        t.extend([0.0, 1.0 / 3.0, 0.0, 0.0, 0.5, 0.6, 2.0, 4.0]);
        t
    }

    fn sampler(c: TrainConfig) -> Sampler {
        Sampler::from_config(&c, times()).unwrap()
    }

    #[test]
    fn ivpp_pairs_stay_in_the_window_with_the_papers_weights() {
        let clips = clips();
        let s = sampler(TrainConfig { pairs: Pairs::Ivpp, ..Default::default() });
        let mut rng = seed::stream(6, "t", &[]);
        let mut fb = Fallbacks::default();
        let mut seen = [[0usize; 10]; 10];
        for _ in 0..20_000 {
            let p = s.pair(&mut rng, &clips, 0, &mut fb);
            let (i, j) = (p.views[0].anchor, p.views[1].anchor);
            let d = i.abs_diff(j);
            // 1 s at 3 frames per second: D = 3 frames, weight (D − d + 1) / (D + 1).
            assert!(d <= 3, "{p:?}");
            assert!((p.weight as f64 - (4 - d) as f64 / 4.0).abs() < 1e-6, "{p:?}");
            assert_eq!((p.views[0].xi, p.views[1].xi), (1.0, 1.0));
            seen[i][j] += 1;
        }
        // First frame uniform; second uniform among the (clipped) window: frame 0 has 4 partners.
        for (i, row) in seen.iter().enumerate() {
            let partners: Vec<usize> = (0..10).filter(|&j| i.abs_diff(j) <= 3).collect();
            for &j in &partners {
                let expected = 20_000.0 / 10.0 / partners.len() as f64;
                assert!((row[j] as f64 - expected).abs() < 0.25 * expected, "({i}, {j}): {} vs {expected}", row[j]);
            }
            assert_eq!(row.iter().sum::<usize>(), partners.iter().map(|&j| row[j]).sum::<usize>());
        }
        // Uneven times: the window is in seconds; δ is the clip's mean interval (4 s / 4).
        for _ in 0..2000 {
            let p = s.pair(&mut rng, &clips, 3, &mut fb);
            let t = times();
            let d = (t[p.views[0].anchor] - t[p.views[1].anchor]).abs();
            assert!(d <= 1.0 + 1e-9 && (p.weight as f64 - (1.0 - d / 2.0)).abs() < 1e-6, "{p:?}");
        }
        let one = s.pair(&mut rng, &clips, 2, &mut fb);
        assert_eq!((one.views, one.weight), ([View::single(12), View::single(12)], 1.0));
        let unweighted = sampler(TrainConfig { pairs: Pairs::Ivpp, ivpp: IvppConfig { weighted: false, window_s: 1.0 }, ..Default::default() });
        assert!((0..200).all(|_| unweighted.pair(&mut rng, &clips, 0, &mut fb).weight == 1.0));
    }

    #[test]
    fn hard_negative_band_follows_the_documented_schedule() {
        let h = HardNegativeSchedule::default();
        // 10 epochs, half held: 0–4 at the start band, then a half cosine over epochs 5–9.
        for e in 0..5 {
            assert_eq!(h.band(e, 10), [0.2, 0.4]);
        }
        for e in 5..10 {
            let w = 0.5 * (1.0 - (std::f64::consts::PI * (e - 5) as f64 / 4.0).cos());
            let want = [0.2 + w * (0.03 - 0.2), 0.4 + w * (0.07 - 0.4)];
            let got = h.band(e, 10);
            assert!((got[0] - want[0]).abs() < 1e-12 && (got[1] - want[1]).abs() < 1e-12, "epoch {e}: {got:?} vs {want:?}");
        }
        let end = h.band(9, 10);
        assert!((end[0] - 0.03).abs() < 1e-12 && (end[1] - 0.07).abs() < 1e-12);
        let none_held = HardNegativeSchedule { hold: 0.0, ..h.clone() };
        assert_eq!(none_held.band(0, 10), [0.2, 0.4]);
        assert_eq!(HardNegativeSchedule { hold: 1.0, ..h }.band(9, 10), [0.2, 0.4]);
    }

    #[test]
    fn hard_negatives_come_from_the_band_of_the_pairs_own_video() {
        let clips = clips();
        let c = TrainConfig { pairs: Pairs::Rsofv, hard_negatives: 3, epochs: 10, ..Default::default() };
        let s = sampler(c.clone());
        let t = times();
        let mut rng = seed::stream(7, "t", &[]);
        let mut fb = Fallbacks::default();
        let mut drawn = std::collections::BTreeSet::new();
        for epoch in [0, 9] {
            let [lo, hi] = c.hard_negative_schedule.band(epoch, 10);
            for _ in 0..300 {
                let pairs = s.batch(&mut rng, &clips, &[0, 2], &[0, 2], &mut fb);
                let hard = s.hard_negatives(&mut rng, &clips, &pairs, epoch, &mut fb);
                assert_eq!(hard.len(), 6);
                assert_eq!(&hard[3..], &[None, None, None], "a one-frame video has none");
                let a = pairs[0].views[0].anchor;
                // Naively: every frame of clip 0 but the anchor whose distance / 3 s lies in [lo, hi].
                let inside: Vec<usize> =
                    (0..10).filter(|&j| j != a && ((t[j] - t[a]).abs() / 3.0 - lo) >= -1e-12 && (t[j] - t[a]).abs() / 3.0 <= hi + 1e-12).collect();
                for h in &hard[..3] {
                    let h = h.unwrap();
                    if !inside.is_empty() {
                        assert!(inside.contains(&h), "epoch {epoch}, anchor {a}: {h} not in {inside:?}");
                    }
                    drawn.insert((epoch, a, h));
                }
            }
        }
        assert_eq!(fb.no_hard_negative, 600 * 3);
        // Epoch 0: band [0.2, 0.4] of 3 s = 0.6–1.2 s = 2–3 frames away; epoch 9: 0.09–0.21 s, no
        // frame inside, so the nearest (1 frame away) with the fallback counted.
        assert!(drawn.iter().filter(|d| d.0 == 0).all(|d| (2..=3).contains(&d.1.abs_diff(d.2))));
        assert!(drawn.iter().filter(|d| d.0 == 9).all(|d| d.1.abs_diff(d.2) == 1));
        assert_eq!(fb.hard_outside_band, 300 * 3);
        assert!(sampler(TrainConfig::default()).hard_negatives(&mut rng, &clips, &[], 0, &mut fb).is_empty());
    }
}
