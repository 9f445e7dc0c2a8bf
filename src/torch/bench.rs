//! Throughput probes behind `make bench` (docs/BENCHMARKS.md): the loader alone, and training
//! steps on synthetic tensors already in memory (libtorch's ceiling for the end-to-end run).

use crate::loader::{Batch, Loader};
use crate::optim::Adam;
use crate::train::{self, Nets};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use usctl::config::TrainConfig;
use usctl::error::TrainError;
use usctl::sampler::Fallbacks;
use usctl::schedule;
use usctl::store::reader::Store;

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub what: String,
    pub threads: usize,
    pub image_size: i64,
    pub batch_size: usize,
    pub items: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// Pairs per second of the loader alone (sampling, copy from the map, augmentation on the CPU),
/// with `threads` workers and libtorch limited to one thread per worker's ops.
pub fn loader(store_dir: &Path, c: &TrainConfig, threads: usize, batches: usize) -> Result<Throughput, TrainError> {
    tch::set_num_threads(1);
    let store = Store::open(store_dir)?;
    let sp = train::split(&store, c);
    let labels = vec![None; sp.clips.len()];
    let ctx = Arc::new(train::context(store, c, &sp, labels, sp.train.clone(), true)?);
    let mut jobs = Vec::new();
    for epoch in 0.. {
        jobs.extend(train::epoch_jobs(c, epoch, &sp.train));
        if jobs.len() >= batches {
            break;
        }
    }
    jobs.truncate(batches);
    let t0 = Instant::now();
    let pairs: u64 = Loader::start(ctx, jobs, threads, 2 * threads).map(|b| b.pairs() as u64).sum();
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Throughput {
        what: "loader pairs".into(),
        threads,
        image_size: c.image_size,
        batch_size: c.batch_size,
        items: pairs,
        seconds,
        per_second: pairs as f64 / seconds,
    })
}

/// Images per second of full training steps (forward, NT-Xent, backward, Adam) on random views
/// already in memory: no loader, no store.
pub fn step(c: &TrainConfig, steps: usize) -> Result<Throughput, TrainError> {
    let device = train::pick_device(c.device)?;
    let threads = usctl::files::threads(c.threads);
    tch::set_num_threads(threads as i32);
    let nets = Nets::new(device, c.seed, 3, c);
    let mut adam = Adam::new(nets.named(true), c.weight_decay);
    let n = c.batch_size as i64;
    // One channel, as the loader delivers (the backbone folds the three gray channels).
    let views = Tensor::randn([2 * n, 1, c.image_size, c.image_size], (Kind::Float, device));
    let batch = Batch {
        frames: Tensor::zeros([0], (Kind::Uint8, Device::Cpu)),
        xi: vec![],
        params: vec![],
        mix_after: false,
        labels: vec![-1; n as usize],
        clips: (0..n as usize).collect(),
        weights: vec![1.0; n as usize],
        hard_valid: vec![],
        fallbacks: Fallbacks::default(),
        views: Some(views),
    };
    let autocast = device.is_cuda() && c.mixed_precision;
    let mut run = |k: usize| -> Result<f64, TrainError> {
        let t0 = Instant::now();
        for s in 0..k {
            adam.zero_grad();
            let l = train::forward(&nets, &batch, c, device, true, autocast, None)?;
            l.total.backward();
            adam.step(schedule::lr_at(c.lr, s as u64, 1000, 0));
        }
        if device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
        Ok(t0.elapsed().as_secs_f64())
    };
    run(2)?; // warm-up: allocator and kernel selection
    let seconds = run(steps)?;
    let items = (steps as i64 * 2 * n) as u64;
    Ok(Throughput {
        what: "training images (synthetic, in memory)".into(),
        threads,
        image_size: c.image_size,
        batch_size: c.batch_size,
        items,
        seconds,
        per_second: items as f64 / seconds,
    })
}
