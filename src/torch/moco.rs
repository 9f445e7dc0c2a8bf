//! MoCo v2's bookkeeping (He et al. 2020; Chen et al. 2020, "Improved baselines"): the key
//! encoder, a moving average of the query encoder's backbone and projection head, and the queue of
//! its last K keys with the video each came from. The loss is `loss::moco`; the training loop
//! (train.rs) calls `momentum_update`, `keys` and, after the backward pass, `enqueue`.
//!
//! Checkpointed with the run (docs/checkpoint-format.md, format 3): the key encoder as
//! `moco.key.backbone.*` / `moco.key.heads.*`, the queue as `moco.queue` [K, 256] and
//! `moco.queue_videos` [K], the write position as `moco_ptr` in the state.

use crate::checkpoint;
use crate::train::Nets;
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};
use usctl::config::{MocoConfig, TrainConfig};
use usctl::error::TrainError;

pub(crate) struct Moco {
    pub(crate) key: Nets,
    /// [K, d] unit rows, oldest at `ptr` once the queue has wrapped.
    pub(crate) queue: Tensor,
    /// [K] the clip each entry came from; −1 for the initial random entries.
    pub(crate) queue_videos: Tensor,
    pub(crate) ptr: usize,
    /// (key variable, query variable) of the backbone and projection head, sharing storage.
    pairs: Vec<(Tensor, Tensor)>,
    config: MocoConfig,
}

impl Moco {
    /// A key encoder equal to `query` and a queue of K random unit vectors (seeded), as MoCo
    /// starts; refuses a queue longer than the run's `train_videos` (docs/training.md says why).
    pub(crate) fn new(query: &Nets, device: Device, classes: i64, c: &TrainConfig, train_videos: usize) -> Result<Moco, TrainError> {
        if c.moco.queue > train_videos {
            let message = format!(
                "is {}, more than the {train_videos} training videos of this store: the queue would hold older keys of the same videos; set moco.queue to at most {train_videos} (docs/training.md)",
                c.moco.queue
            );
            return Err(usctl::error::ConfigError::Invalid { key: "moco.queue".into(), message }.into());
        }
        let seed = c.seed;
        let mut key = Nets::new(device, seed, classes, c);
        key.copy_from(query)?;
        key.freeze();
        let query_vars: HashMap<String, Tensor> = query.named(false).into_iter().collect();
        let pairs = key
            .named(false)
            .into_iter()
            .filter(|(name, _)| name.starts_with("backbone.") || name.starts_with("heads.projection."))
            .filter_map(|(name, k)| query_vars.get(&name).filter(|q| q.requires_grad()).map(|q| (k, q.shallow_clone())))
            .collect();
        let k = c.moco.queue;
        let d = crate::model::heads::PROJECTION;
        let mut rng = usctl::seed::stream(seed, "moco-queue", &[]);
        let values: Vec<f32> = (0..k * d as usize).map(|_| StandardNormal.sample(&mut rng)).collect();
        let queue = Tensor::from_slice(&values).view([k as i64, d]);
        let queue = (&queue / queue.norm_scalaropt_dim(2, [1i64].as_slice(), true)).to_device(device);
        let queue_videos = Tensor::full([k as i64], -1, (Kind::Int64, device));
        Ok(Moco { key, queue, queue_videos, ptr: 0, pairs, config: c.moco.clone() })
    }

    /// θ_k ← m·θ_k + (1 − m)·θ_q for every trainable tensor of the backbone and projection head
    /// (batch-norm running statistics are the key encoder's own, as in MoCo).
    pub(crate) fn momentum_update(&self) {
        let m = self.config.momentum;
        tch::no_grad(|| {
            for (k, q) in &self.pairs {
                let mut k = k.shallow_clone();
                let _ = k.g_mul_scalar_(m);
                let _ = k.g_add_(&(q * (1.0 - m)));
            }
        });
    }

    /// The key encoder's unit projections of `x` (no gradient; batch norm in train mode).
    pub(crate) fn keys(&self, x: &Tensor, autocast: bool) -> Tensor {
        tch::no_grad(|| {
            let z = tch::autocast(autocast, || self.key.heads.project(&self.key.backbone.features(x, true)));
            let z = z.to_kind(Kind::Float);
            &z / z.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-8)
        })
    }

    /// Writes `keys` [N, d] (unit rows) of clips `videos` at the write position, wrapping.
    pub(crate) fn enqueue(&mut self, keys: &Tensor, videos: &[usize]) {
        let k = self.config.queue;
        let slots: Vec<i64> = (0..videos.len()).map(|i| ((self.ptr + i) % k) as i64).collect();
        let device = self.queue.device();
        let slots = Tensor::from_slice(&slots).to_device(device);
        let owners = Tensor::from_slice(&videos.iter().map(|&v| v as i64).collect::<Vec<_>>()).to_device(device);
        tch::no_grad(|| {
            let _ = self.queue.index_copy_(0, &slots, &keys.detach().to_kind(Kind::Float));
            let _ = self.queue_videos.index_copy_(0, &slots, &owners);
        });
        self.ptr = (self.ptr + videos.len()) % k;
    }

    /// The tensors a checkpoint holds for MoCo (names in the module docs).
    pub(crate) fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.key.named(false).into_iter().map(|(n, t)| (format!("moco.key.{n}"), t)).collect();
        v.push(("moco.queue".into(), self.queue.shallow_clone()));
        v.push(("moco.queue_videos".into(), self.queue_videos.shallow_clone()));
        v
    }

    /// Restores the key encoder and queue from a checkpoint's tensors and the state's `ptr`.
    pub(crate) fn load(&mut self, saved: &HashMap<String, Tensor>, ptr: Option<u64>, path: &Path) -> Result<(), TrainError> {
        let fail = |message: String| TrainError::Checkpoint { path: path.to_path_buf(), message };
        self.key.load(&checkpoint::strip(saved, "moco.key"), path)?;
        for (name, dst) in [("moco.queue", &mut self.queue), ("moco.queue_videos", &mut self.queue_videos)] {
            let t = saved.get(name).ok_or_else(|| fail(format!("{name} is missing: this checkpoint is not of a MoCo run")))?;
            if t.size() != dst.size() {
                return Err(fail(format!("{name} is {:?}, the run's config wants {:?} (moco.queue)", t.size(), dst.size())));
            }
            tch::no_grad(|| dst.copy_(t));
        }
        let ptr = ptr.ok_or_else(|| fail("the state has no moco_ptr: this checkpoint is not of a MoCo run".into()))?;
        if ptr as usize >= self.config.queue {
            return Err(fail(format!("moco_ptr {ptr} is outside the queue of {}", self.config.queue)));
        }
        self.ptr = ptr as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn setup(queue: usize, momentum: f64) -> (Nets, Moco) {
        let c = TrainConfig { moco: MocoConfig { queue, momentum, temperature: 0.2 }, ..Default::default() };
        let c = TrainConfig { seed: 3, ..c };
        let query = Nets::new(Device::Cpu, 3, 2, &c);
        let moco = Moco::new(&query, Device::Cpu, 2, &c, 100).unwrap();
        (query, moco)
    }

    fn snapshot(n: &Nets) -> HashMap<String, Tensor> {
        n.named(false).into_iter().map(|(k, t)| (k, t.detach().copy())).collect()
    }

    #[test]
    fn the_key_encoder_is_the_documented_moving_average() {
        let (query, moco) = setup(8, 0.9);
        let (q0, k0) = (snapshot(&query), snapshot(&moco.key));
        for (name, t) in &q0 {
            assert!(t.equal(&k0[name]), "{name}: the key encoder starts as the query encoder");
        }
        // Move the query encoder as an optimiser would, then update: k = 0.9·k + 0.1·q, twice.
        let mut expected = snapshot(&moco.key);
        for round in 0..2 {
            tch::no_grad(|| {
                for (i, (_, mut t)) in query.named(true).into_iter().enumerate() {
                    let _ = t.g_add_(&(t.ones_like() * (0.01 * (i % 7 + round + 1) as f64)));
                }
            });
            let q = snapshot(&query);
            moco.momentum_update();
            for (name, e) in expected.iter_mut() {
                if (name.starts_with("backbone.") || name.starts_with("heads.projection."))
                    && q[name].is_floating_point()
                    && !name.contains("running")
                    && !name.contains("num_batches")
                {
                    *e = &*e * 0.9 + &q[name] * 0.1;
                }
            }
        }
        let after = snapshot(&moco.key);
        let mut averaged = 0;
        for (name, e) in &expected {
            let diff = (&after[name] - e).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{name}: differs from the moving average by {diff}");
            averaged += usize::from(!e.equal(&k0[name]));
        }
        assert!(averaged > 60, "backbone and projection weights moved: {averaged}");
        assert!(after["heads.classifier.weight"].equal(&k0["heads.classifier.weight"]), "the classifier is not part of the key encoder");
        assert!(moco.key.named(false).iter().all(|(_, t)| !t.requires_grad()), "no gradient reaches the key encoder");
    }

    #[test]
    fn the_queue_holds_the_last_k_keys_in_order() {
        let (_, mut moco) = setup(10, 0.99);
        let d = crate::model::heads::PROJECTION;
        let mut naive: VecDeque<(i64, i64)> = (0..10).map(|_| (-1, -1)).collect();
        let mut next = 0i64;
        // Batches of varying size, one larger than the queue's remainder, so the queue wraps.
        for size in [3usize, 4, 6, 2, 9, 1, 5] {
            let ids: Vec<i64> = (next..next + size as i64).collect();
            let keys =
                Tensor::from_slice(&ids.iter().map(|&i| i as f32).collect::<Vec<_>>()).view([size as i64, 1]).expand([size as i64, d], false).contiguous();
            let videos: Vec<usize> = ids.iter().map(|&i| (i % 4) as usize).collect();
            moco.enqueue(&keys, &videos);
            for &i in &ids {
                naive.pop_front();
                naive.push_back((i, i % 4));
            }
            next += size as i64;
            // Read oldest to newest from the write position.
            let got: Vec<(i64, i64)> = (0..10)
                .map(|j| {
                    let slot = ((moco.ptr + j) % 10) as i64;
                    let v = moco.queue_videos.int64_value(&[slot]);
                    let key = if v < 0 { -1 } else { moco.queue.double_value(&[slot, 0]) as i64 };
                    (key, v)
                })
                .collect();
            assert_eq!(got, naive.iter().copied().collect::<Vec<_>>(), "after a batch of {size}");
        }
    }

    #[test]
    fn the_initial_queue_is_seeded_unit_vectors() {
        let (_, a) = setup(16, 0.99);
        let (_, b) = setup(16, 0.99);
        assert!(a.queue.equal(&b.queue));
        let norms = a.queue.norm_scalaropt_dim(2, [1i64].as_slice(), false);
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
        assert_eq!(Vec::<i64>::try_from(&a.queue_videos).unwrap(), vec![-1; 16]);
    }
}
