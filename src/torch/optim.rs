//! Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient, exactly as PyTorch's
//! `torch.optim.Adam(weight_decay=…)` (the paper's optimiser), written out so that its whole state
//! can be saved in a checkpoint and a resumed run continues bit for bit. Plus dynamic loss scaling
//! for fp16 mixed precision.
//!
//! A parameter joins the updates at its first gradient (the classifier at the first batch with a
//! kept label). From then on it is updated every step, a step without a gradient for it counting as
//! a zero gradient (weight decay and momentum still apply), as with PyTorch's `zero_grad()` that
//! zeroes gradients instead of dropping them. Which parameters have joined is part of the saved
//! state: without it a resumed run would skip the classifier until its next labelled batch.

use std::collections::HashMap;
use tch::Tensor;

pub struct Adam {
    /// (name, parameter), sorted by name; the names key the saved moments.
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Per parameter: has it had a gradient yet?
    joined: Vec<bool>,
    pub step: u64,
    pub weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Adam {
    pub fn new(mut params: Vec<(String, Tensor)>, weight_decay: f64) -> Adam {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &Vec<(String, Tensor)>| p.iter().map(|(_, t)| t.zeros_like()).collect::<Vec<_>>();
        Adam { m: zeros(&params), v: zeros(&params), joined: vec![false; params.len()], params, step: 0, weight_decay, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    /// Whether every gradient is finite (one device sync); used with loss scaling only.
    pub fn grads_finite(&self) -> bool {
        let flags: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).map(|g| g.isfinite().all()).collect();
        flags.is_empty() || Tensor::stack(&flags, 0).all().int64_value(&[]) == 1
    }

    pub fn scale_grads(&mut self, factor: f64) {
        tch::no_grad(|| {
            for (_, p) in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.f_mul_scalar_(factor);
                }
            }
        });
    }

    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        tch::no_grad(|| {
            for (((_, p), joined), (m, v)) in self.params.iter_mut().zip(self.joined.iter_mut()).zip(self.m.iter_mut().zip(self.v.iter_mut())) {
                let mut g = p.grad();
                if g.defined() {
                    *joined = true;
                } else if *joined {
                    g = p.zeros_like();
                } else {
                    continue;
                }
                let g = if self.weight_decay != 0.0 { g + &*p * self.weight_decay } else { g };
                *m = &*m * self.beta1 + &g * (1.0 - self.beta1);
                *v = &*v * self.beta2 + &g * &g * (1.0 - self.beta2);
                let denom = v.sqrt() / bc2.sqrt() + self.eps;
                let _ = p.f_sub_(&(&*m / denom * (lr / bc1)));
            }
        });
    }

    /// The moments as named tensors, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            out.push((format!("adam.m.{name}"), m.shallow_clone()));
            out.push((format!("adam.v.{name}"), v.shallow_clone()));
        }
        out
    }

    /// Parameters that have not had a gradient yet (they are skipped until their first).
    pub fn waiting(&self) -> Vec<String> {
        self.params.iter().zip(&self.joined).filter(|(_, j)| !**j).map(|((n, _), _)| n.clone()).collect()
    }

    /// Restores moments saved by `state` (every parameter must have both) and which parameters
    /// were still `waiting`. Without that list (checkpoints of format 1) a parameter counts as
    /// joined when its second moment is non-zero: the same updates except in the float coincidence
    /// that every gradient it had was exactly zero.
    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>, step: u64, waiting: Option<&[String]>) -> Result<(), String> {
        for ((name, p), (m, v)) in self.params.iter().zip(self.m.iter_mut().zip(self.v.iter_mut())) {
            for (slot, key) in [(&mut *m, format!("adam.m.{name}")), (&mut *v, format!("adam.v.{name}"))] {
                let t = saved.get(&key).ok_or_else(|| format!("optimiser state lacks {key}"))?;
                if t.size() != p.size() {
                    return Err(format!("{key} has shape {:?}, the parameter {:?}", t.size(), p.size()));
                }
                *slot = t.to_device(p.device()).to_kind(p.kind());
            }
        }
        for (((name, _), joined), v) in self.params.iter().zip(self.joined.iter_mut()).zip(&self.v) {
            *joined = match waiting {
                Some(w) => !w.contains(name),
                None => v.ne(0.0).any().int64_value(&[]) == 1,
            };
        }
        if let Some(unknown) = waiting.and_then(|w| w.iter().find(|n| !self.params.iter().any(|(p, _)| p == *n))) {
            return Err(format!("optimiser state names {unknown}, which the model does not have"));
        }
        self.step = step;
        Ok(())
    }
}

/// Dynamic loss scaling (fp16): multiply the loss by `scale` before backward; if any gradient
/// overflowed, skip the step and halve the scale; after `interval` good steps, double it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScale {
    pub scale: f64,
    pub good_steps: u32,
}

impl LossScale {
    pub const INTERVAL: u32 = 2000;

    pub fn new() -> LossScale {
        LossScale { scale: 65536.0, good_steps: 0 }
    }

    /// Records whether the gradients were finite; returns whether to take the step.
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= Self::INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
        }
        finite
    }
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module, OptimizerConfig};
    use tch::{Device, Kind};

    fn problem(vs: &nn::VarStore) -> (nn::Linear, Tensor, Tensor) {
        let lin = nn::linear(vs.root() / "lin", 5, 3, Default::default());
        let x = Tensor::randn([8, 5], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        (lin, x, y)
    }

    #[test]
    fn matches_libtorch_adam_with_weight_decay() {
        tch::manual_seed(3);
        let vs_ref = nn::VarStore::new(Device::Cpu);
        let (lin_ref, x, y) = problem(&vs_ref);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let (lin, _, _) = problem(&vs);
        vs.copy(&vs_ref).unwrap();
        let mut reference = nn::Adam { wd: 1e-2, ..Default::default() }.build(&vs_ref, 0.05).unwrap();
        let mut ours = Adam::new(vs.variables().into_iter().collect(), 1e-2);
        for _ in 0..20 {
            reference.backward_step(&(lin_ref.forward(&x) - &y).square().mean(Kind::Float));
            ours.zero_grad();
            (lin.forward(&x) - &y).square().mean(Kind::Float).backward();
            ours.step(0.05);
        }
        for (name, t) in vs.variables() {
            let diff = (&t - &vs_ref.variables()[&name]).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{name} differs by {diff}");
        }
        assert_eq!(ours.step, 20);
    }

    #[test]
    fn state_round_trips() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let (lin, x, y) = problem(&vs);
        let mut a = Adam::new(vs.variables().into_iter().collect(), 0.0);
        a.zero_grad();
        (lin.forward(&x) - &y).square().mean(Kind::Float).backward();
        a.step(0.1);
        let saved: HashMap<String, Tensor> = a.state().into_iter().collect();
        assert_eq!(saved.len(), 4);
        let mut b = Adam::new(vs.variables().into_iter().collect(), 0.0);
        b.load_state(&saved, a.step, Some(&a.waiting())).unwrap();
        for ((k1, t1), (k2, t2)) in a.state().iter().zip(b.state().iter()) {
            assert!(k1 == k2 && t1.equal(t2));
        }
        let mut partial: HashMap<String, Tensor> = saved.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        partial.remove("adam.v.lin.bias");
        assert!(b.load_state(&partial, 1, None).unwrap_err().contains("adam.v.lin.bias"));
    }

    #[test]
    fn a_parameter_joins_at_its_first_gradient_and_resumes_joined() {
        // `b` gets a gradient at step 2 only, like the classifier at the first labelled batch. A
        // resumed process starts with fresh variables that have no gradient at all: with the saved
        // state it must take the remaining steps exactly as the uninterrupted optimiser.
        let make = |a0: &Tensor, b0: &Tensor| {
            let vs = nn::VarStore::new(Device::Cpu);
            let a = vs.root().var_copy("a", a0);
            let b = vs.root().var_copy("b", b0);
            (vs, a, b)
        };
        let run = |resume_at: Option<usize>| {
            let (mut vs, mut a, mut b) = make(&Tensor::from_slice(&[1.0f32, -1.0, 0.5]), &Tensor::from_slice(&[2.0f32, 0.25, -3.0]));
            let mut opt = Adam::new(vs.variables().into_iter().collect(), 0.1);
            for step in 0..5 {
                if resume_at == Some(step) {
                    let saved: HashMap<String, Tensor> = opt.state().into_iter().collect();
                    let (vs2, a2, b2) = make(&a.detach(), &b.detach());
                    let mut fresh = Adam::new(vs2.variables().into_iter().collect(), 0.1);
                    fresh.load_state(&saved, opt.step, Some(&opt.waiting())).unwrap();
                    (vs, a, b, opt) = (vs2, a2, b2, fresh);
                }
                opt.zero_grad();
                let loss = if step == 2 { (&a * &b).sum(Kind::Float) } else { a.sum(Kind::Float) };
                loss.backward();
                opt.step(0.1);
            }
            drop(vs);
            (a, b, opt.waiting())
        };
        let (a1, b1, w1) = run(None);
        assert!(w1.is_empty());
        let (a2, b2, _) = run(Some(4));
        assert!(a1.equal(&a2) && b1.equal(&b2), "resumed: a {a2:?} b {b2:?}, uninterrupted: a {a1:?} b {b1:?}");
        let (_, b3, w3) = run(Some(1));
        assert!(b1.equal(&b3) && w3.is_empty(), "resumed before b joined");
        let (_, b4, _) = run(Some(3));
        assert!(b1.equal(&b4));
    }

    #[test]
    fn loss_scale_halves_on_overflow_and_grows_after_good_steps() {
        let mut s = LossScale::new();
        assert!(!s.update(false));
        assert_eq!(s.scale, 32768.0);
        for _ in 0..LossScale::INTERVAL {
            assert!(s.update(true));
        }
        assert_eq!(s.scale, 65536.0);
    }
}
