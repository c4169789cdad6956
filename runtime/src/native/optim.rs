//! Optimizers and learning-rate schedules of the native trainer, behind a small interface:
//! the trainer hands each parameter tensor, its gradient and its state tensors to an
//! [`Optimizer`] and does not know which update rule runs. AdamW is the one lamina ships.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the learning rate decays after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule> {
        match s {
            "cosine" => Ok(Schedule::Cosine),
            "linear" => Ok(Schedule::Linear),
            "constant" => Ok(Schedule::Constant),
            other => Err(Error::invalid("schedule", format!("unknown schedule `{other}`: use cosine, linear or constant"))),
        }
    }
}

/// Warmup then decay: the learning rate of each optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub base: f32,
    /// Steps of linear warmup from base / warmup_steps up to base.
    pub warmup_steps: usize,
    /// Steps of the whole run; the decay ends there.
    pub total_steps: usize,
    pub kind: Schedule,
}

impl LrSchedule {
    /// The learning rate of step `step` (0-based).
    pub fn at(&self, step: usize) -> f32 {
        let base = self.base;
        if step < self.warmup_steps {
            return base * (step + 1) as f32 / self.warmup_steps as f32;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f32 / decay_steps as f32).min(1.0);
        match self.kind {
            Schedule::Constant => base,
            Schedule::Linear => base * (1.0 - progress),
            Schedule::Cosine => base * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()),
        }
    }
}

/// A first-order optimizer over f32 parameter tensors.
pub trait Optimizer {
    /// Names of the state tensors it keeps per parameter tensor, each of the parameter's
    /// shape, in the order [`update`](Self::update) takes them (checkpoints use the names).
    fn state_names(&self) -> &'static [&'static str];

    /// One update of `param` from `grad · grad_scale` (the caller's averaging and clipping),
    /// at 1-based step `t` with learning rate `lr`; `state` holds one tensor per state name.
    fn update(&self, t: u64, lr: f32, grad_scale: f32, param: &mut [f32], grad: &[f32], state: &mut [&mut [f32]]);
}

/// AdamW (Loshchilov & Hutter): Adam's bias-corrected moments, and weight decay applied to the
/// parameter directly, as PyTorch's `torch.optim.AdamW` does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Optimizer for AdamW {
    fn state_names(&self) -> &'static [&'static str] {
        &["adam_m", "adam_v"]
    }

    fn update(&self, t: u64, lr: f32, grad_scale: f32, param: &mut [f32], grad: &[f32], state: &mut [&mut [f32]]) {
        let [m, v] = state else { panic!("AdamW keeps two state tensors per parameter") };
        let t = t.min(i32::MAX as u64) as i32;
        let (bc1, bc2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * grad_scale;
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            let update = (*m / bc1) / ((*v / bc2).sqrt() + self.eps);
            *p -= lr * (update + self.weight_decay * *p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_warm_up_then_decay() {
        let s = |kind| LrSchedule { base: 1.0, warmup_steps: 2, total_steps: 12, kind };
        assert_eq!(s(Schedule::Cosine).at(0), 0.5);
        assert_eq!(s(Schedule::Cosine).at(1), 1.0);
        assert_eq!(s(Schedule::Cosine).at(2), 1.0);
        assert!((s(Schedule::Cosine).at(7) - 0.5).abs() < 1e-6);
        assert!((s(Schedule::Linear).at(7) - 0.5).abs() < 1e-6);
        assert_eq!(s(Schedule::Constant).at(11), 1.0);
        assert!(s(Schedule::Linear).at(12).abs() < 1e-6);
    }

    /// The first AdamW step moves every parameter by lr (the bias-corrected m/sqrt(v) is ±1),
    /// plus the decay term.
    #[test]
    fn adamw_first_step_is_a_signed_step_of_lr() {
        let opt = AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-12, weight_decay: 0.1 };
        let mut p = vec![1.0f32, -2.0];
        let (mut m, mut v) = (vec![0.0f32; 2], vec![0.0f32; 2]);
        opt.update(1, 0.01, 2.0, &mut p, &[3.0, -0.5], &mut [&mut m, &mut v]);
        assert!((p[0] - (1.0 - 0.01 * (1.0 + 0.1))).abs() < 1e-6, "{}", p[0]);
        assert!((p[1] - (-2.0 + 0.01 * (1.0 + 0.1 * 2.0))).abs() < 1e-6, "{}", p[1]);
        assert_eq!(opt.state_names(), ["adam_m", "adam_v"]);
    }
}
