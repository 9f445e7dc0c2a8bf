//! Batch assembly on background threads. Workers copy the frames a batch needs straight out of
//! the store's memory map (no decode, no file opens) into one host buffer per batch; on the CPU
//! they also apply the augmentation, so the training thread only trains. Worker w prepares
//! batches w, w + T, w + 2T, … into its own bounded queue and the consumer takes them round-robin,
//! so batches arrive in order and each is a function of (seed, epoch, index) alone: the same for
//! any number of threads.

use crate::augment::{self, ViewsSpec};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Device, Tensor};
use usctl::augment::{self as draw_aug, AugParams};
use usctl::config::AugmentConfig;
use usctl::sampler::{self, Clip, Fallbacks, Pair, Sampler};
use usctl::seed;
use usctl::store::reader::Store;

/// What a batch is made from.
#[derive(Debug, Clone)]
pub enum Job {
    /// Training batch `index` of `epoch`, over these clips (indices into `Context::clips`).
    Train { epoch: u32, index: u32, clips: Vec<usize> },
    /// Fixed, un-augmented validation pairs of these clips.
    Val { clips: Vec<usize> },
}

pub struct Context {
    pub store: Store,
    pub clips: Vec<Clip>,
    /// Per clip: the class index used for the classification loss, if its label is kept.
    pub labels: Vec<Option<i64>>,
    /// All training clips, for RS (which ignores videos).
    pub train_clips: Vec<usize>,
    /// The pair strategy and mixing rule.
    pub sampler: Sampler,
    pub augment: AugmentConfig,
    pub seed: u64,
    pub image_size: i64,
    /// Apply the augmentation in the worker (CPU training) instead of on the training device.
    pub augment_in_loader: bool,
}

pub struct Batch {
    /// [2N + N·M, 2, S, S] u8: anchor and other frame of view 1 of every pair, then of view 2,
    /// then the M hard negatives of each pair (pair-major; other = anchor).
    pub frames: Tensor,
    pub xi: Vec<f32>,
    pub params: Vec<AugParams>,
    pub mix_after: bool,
    /// Per pair: class index or −1.
    pub labels: Vec<i64>,
    /// Per pair: the clip it came from and the weight of its contrastive term.
    pub clips: Vec<usize>,
    pub weights: Vec<f32>,
    /// Per hard-negative row: whether it is a frame (false: a one-frame video had none; the row
    /// repeats the pair's anchor and the loss leaves it out).
    pub hard_valid: Vec<bool>,
    pub fallbacks: Fallbacks,
    /// [2N, 3, size, size] float, normalised, when the worker already augmented.
    pub views: Option<Tensor>,
}

impl Batch {
    pub fn pairs(&self) -> usize {
        self.labels.len()
    }

    /// Whether any pair weighs other than 1 (weighted IVPP).
    pub fn weighted(&self) -> bool {
        self.weights.iter().any(|&w| w != 1.0)
    }

    /// The augmented views on `device` (computing them now if the worker did not).
    pub fn views(&self, augment: &AugmentConfig, image_size: i64, device: Device) -> Tensor {
        match &self.views {
            Some(v) => v.to_device(device),
            None => augment::views(&self.frames, &self.spec(), augment, image_size, device),
        }
    }

    fn spec(&self) -> ViewsSpec<'_> {
        ViewsSpec { xi: &self.xi, params: &self.params, mix_after: self.mix_after }
    }
}

/// Draws a batch's pairs and augmentation parameters and copies its frames out of the map.
pub fn prepare(ctx: &Context, job: &Job) -> Batch {
    let mut fallbacks = Fallbacks::default();
    let (pairs, hard, params, mix_after) = match job {
        Job::Train { epoch, index, clips } => {
            let mut rng = seed::stream(ctx.seed, "batch", &[*epoch as u64, *index as u64]);
            let pairs = ctx.sampler.batch(&mut rng, &ctx.clips, clips, &ctx.train_clips, &mut fallbacks);
            // Draws nothing without hard negatives, so other runs' batches stay as they were.
            let hard = ctx.sampler.hard_negatives(&mut rng, &ctx.clips, &pairs, *epoch, &mut fallbacks);
            let mix_after = ctx.sampler.mixes_after();
            let per_view = if mix_after { 2 } else { 1 };
            let params: Vec<AugParams> = (0..(2 * pairs.len() + hard.len()) * per_view).map(|_| draw_aug::draw(&mut rng, &ctx.augment)).collect();
            (pairs, hard, params, mix_after)
        }
        Job::Val { clips } => {
            let pairs: Vec<Pair> = clips.iter().map(|&c| sampler::validation_pair(&ctx.clips, c)).collect();
            (pairs.clone(), Vec::new(), vec![AugParams::IDENTITY; 2 * pairs.len()], false)
        }
    };
    let n = pairs.len();
    let m = hard.len().checked_div(n).unwrap_or(0);
    let rows = 2 * n + hard.len();
    let fb = ctx.store.frame_bytes();
    let side = ctx.store.meta.params.size as i64;
    let mut buf = Vec::with_capacity(rows * 2 * fb);
    let mut xi = Vec::with_capacity(rows);
    let mut push = |anchor: usize, other: usize, x: f32| {
        buf.extend_from_slice(ctx.store.frame(anchor));
        buf.extend_from_slice(ctx.store.frame(other));
        xi.push(x);
    };
    for v in 0..2 {
        for p in &pairs {
            let view = p.views[v];
            push(view.anchor, view.other, view.xi);
        }
    }
    for (k, h) in hard.iter().enumerate() {
        let row = h.unwrap_or(pairs[k / m].views[0].anchor);
        push(row, row, 1.0);
    }
    let frames = Tensor::from_slice(&buf).view([rows as i64, 2, side, side]);
    let labels = pairs.iter().map(|p| ctx.labels[p.clip].unwrap_or(-1)).collect();
    let (clips, weights) = (pairs.iter().map(|p| p.clip).collect(), pairs.iter().map(|p| p.weight).collect());
    let hard_valid = hard.iter().map(Option::is_some).collect();
    let mut batch = Batch { frames, xi, params, mix_after, labels, clips, weights, hard_valid, fallbacks, views: None };
    if ctx.augment_in_loader {
        batch.views = Some(augment::views(&batch.frames, &batch.spec(), &ctx.augment, ctx.image_size, Device::Cpu));
    }
    batch
}

/// Batches in job order, prepared ahead by `threads` workers, at most `prefetch` waiting.
pub struct Loader {
    queues: Vec<Receiver<Batch>>,
    next: usize,
    len: usize,
    workers: Vec<JoinHandle<()>>,
}

impl Loader {
    pub fn start(ctx: Arc<Context>, jobs: Vec<Job>, threads: usize, prefetch: usize) -> Loader {
        let threads = threads.clamp(1, jobs.len().max(1));
        let depth = prefetch.div_ceil(threads).max(1);
        let jobs = Arc::new(jobs);
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for w in 0..threads {
            let (tx, rx) = sync_channel(depth);
            let (ctx, jobs) = (ctx.clone(), jobs.clone());
            workers.push(std::thread::spawn(move || {
                for job in jobs.iter().skip(w).step_by(threads) {
                    if tx.send(prepare(&ctx, job)).is_err() {
                        return; // the consumer stopped early
                    }
                }
            }));
            queues.push(rx);
        }
        Loader { len: jobs.len(), queues, next: 0, workers }
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.len {
            return None;
        }
        let q = &self.queues[self.next % self.queues.len()];
        self.next += 1;
        q.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.queues.clear(); // unblocks workers waiting to send
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use usctl::config::{Mix, Pairs, SpgConfig, TrainConfig};

    fn context(dir: &std::path::Path, pairs: Pairs, mix: Mix) -> Arc<Context> {
        let version = testkit::store(dir, &[6, 5, 1, 2, 7, 4, 3, 8], 24);
        let store = Store::open(&version).unwrap();
        let clips: Vec<Clip> = store.videos.iter().map(|v| Clip { first_row: v.first_frame_row as usize, frames: v.frames_kept as usize }).collect();
        let c = TrainConfig::default();
        Arc::new(Context {
            labels: (0..clips.len()).map(|i| (i % 3 == 0).then_some(1)).collect(),
            train_clips: (0..clips.len()).collect(),
            clips,
            store,
            sampler: Sampler::new(pairs, &SpgConfig { mix, ..SpgConfig::default() }).unwrap(),
            augment: c.augment,
            seed: 5,
            image_size: 16,
            augment_in_loader: true,
        })
    }

    fn jobs() -> Vec<Job> {
        let mut j: Vec<Job> =
            (0..5).map(|i| Job::Train { epoch: 1, index: i, clips: vec![(i as usize) % 8, (i as usize + 3) % 8, (i as usize + 5) % 8] }).collect();
        j.push(Job::Val { clips: vec![0, 1, 2] });
        j
    }

    #[test]
    fn same_batches_whatever_the_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        for (pairs, mix) in [(Pairs::Spg, Mix::Before), (Pairs::Spg, Mix::After), (Pairs::Rs, Mix::Before)] {
            let ctx = context(dir.path().join(format!("{pairs:?}{mix:?}")).as_path(), pairs, mix);
            let one: Vec<Batch> = Loader::start(ctx.clone(), jobs(), 1, 1).collect();
            let three: Vec<Batch> = Loader::start(ctx.clone(), jobs(), 3, 2).collect();
            assert_eq!(one.len(), 6);
            for (a, b) in one.iter().zip(&three) {
                assert!(a.frames.equal(&b.frames) && a.xi == b.xi && a.params == b.params && a.labels == b.labels);
                assert!(a.views.as_ref().unwrap().equal(b.views.as_ref().unwrap()));
                assert_eq!(a.views.as_ref().unwrap().size(), vec![6, 1, 16, 16]);
            }
            assert_eq!(one[0].params.len(), if mix == Mix::After && pairs == Pairs::Spg { 12 } else { 6 });
        }
    }

    #[test]
    fn frames_come_from_the_store_and_labels_from_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path(), Pairs::Rsofv, Mix::Before);
        let b = prepare(&ctx, &Job::Train { epoch: 0, index: 0, clips: vec![0, 2, 3] });
        assert_eq!(b.labels, vec![1, -1, 1]);
        // RSOFV: both views show the same frame of the clip; clip 2 has one frame (row 11).
        let rows: Vec<u8> = Vec::try_from(b.frames.get(1).get(0).flatten(0, -1)).unwrap();
        assert_eq!(rows, ctx.store.frame(11));
        assert!(b.frames.get(1).equal(&b.frames.get(4)));
        assert!(b.frames.get(1).get(0).equal(&b.frames.get(1).get(1)), "no mixing partner: other = anchor");
        let early: Vec<Batch> = Loader::start(ctx.clone(), jobs(), 2, 1).take(2).collect();
        assert_eq!(early.len(), 2, "dropping a loader early stops its workers");
    }
}
