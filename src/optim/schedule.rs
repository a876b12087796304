//! Learning-rate schedules as pure functions of the step: `lr_at(step)`.
//!
//! `step` counts optimizer steps from 0: call `opt.set_lr(schedule.lr_at(step))` before the
//! `step`-th `opt.step()`. The curves are Hugging Face's (`get_cosine_schedule_with_warmup`,
//! `get_linear_schedule_with_warmup`, `get_cosine_with_min_lr_schedule_with_warmup`): the
//! warm-up rises linearly from 0 at step 0 to the peak at step `warmup_steps`, and the decay
//! reaches the floor at step `total_steps` and stays there.

use crate::error::{Error, Result};

/// A learning rate for each optimizer step.
pub trait LrSchedule {
    /// The learning rate of step `step` (0-based).
    fn lr_at(&self, step: usize) -> f64;
}

/// The same learning rate at every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConstantLr(pub f64);

impl LrSchedule for ConstantLr {
    fn lr_at(&self, _step: usize) -> f64 {
        self.0
    }
}

fn validate(op: &'static str, peak: f64, floor: f64, warmup: usize, total: usize) -> Result<()> {
    if !(peak.is_finite() && floor.is_finite() && 0.0 <= floor && floor <= peak) {
        return Err(Error::invalid(
            op,
            format!("need 0 <= min_lr <= peak_lr (finite), got min_lr {floor}, peak_lr {peak}"),
        ));
    }
    if warmup > total {
        return Err(Error::invalid(
            op,
            format!("warmup_steps {warmup} exceeds total_steps {total}"),
        ));
    }
    Ok(())
}

/// Linear warm-up phase: `Some(lr)` while `step < warmup`.
fn warmup_lr(peak: f64, warmup: usize, step: usize) -> Option<f64> {
    (step < warmup).then(|| peak * step as f64 / warmup as f64)
}

/// Fraction of the decay phase done at `step`, clamped to `[0, 1]`.
fn progress(warmup: usize, total: usize, step: usize) -> f64 {
    let span = (total - warmup).max(1) as f64;
    ((step.saturating_sub(warmup)) as f64 / span).min(1.0)
}

/// Linear warm-up from 0 to `peak_lr` over `warmup_steps`, then a half-cosine from `peak_lr`
/// down to `min_lr` at `total_steps`, then `min_lr`.
///
/// ```text
/// lr(s) = peak * s / warmup                                   s < warmup
/// lr(s) = min + (peak - min) * (1 + cos(pi * p)) / 2          p = min(1, (s - warmup) / (total - warmup))
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    peak_lr: f64,
    min_lr: f64,
    warmup_steps: usize,
    total_steps: usize,
}

impl WarmupCosine {
    /// [`Error::InvalidArgument`] unless `0 <= min_lr <= peak_lr` and
    /// `warmup_steps <= total_steps`.
    pub fn new(peak_lr: f64, min_lr: f64, warmup_steps: usize, total_steps: usize) -> Result<Self> {
        validate(
            "WarmupCosine::new",
            peak_lr,
            min_lr,
            warmup_steps,
            total_steps,
        )?;
        Ok(WarmupCosine {
            peak_lr,
            min_lr,
            warmup_steps,
            total_steps,
        })
    }
}

impl LrSchedule for WarmupCosine {
    fn lr_at(&self, step: usize) -> f64 {
        warmup_lr(self.peak_lr, self.warmup_steps, step).unwrap_or_else(|| {
            let p = progress(self.warmup_steps, self.total_steps, step);
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
            self.min_lr + (self.peak_lr - self.min_lr) * cosine
        })
    }
}

/// Linear warm-up from 0 to `peak_lr` over `warmup_steps`, then a straight line from `peak_lr`
/// down to `min_lr` at `total_steps`, then `min_lr` (0 for Hugging Face's linear schedule).
///
/// ```text
/// lr(s) = peak * s / warmup                   s < warmup
/// lr(s) = min + (peak - min) * (1 - p)        p = min(1, (s - warmup) / (total - warmup))
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupLinear {
    peak_lr: f64,
    min_lr: f64,
    warmup_steps: usize,
    total_steps: usize,
}

impl WarmupLinear {
    /// [`Error::InvalidArgument`] unless `0 <= min_lr <= peak_lr` and
    /// `warmup_steps <= total_steps`.
    pub fn new(peak_lr: f64, min_lr: f64, warmup_steps: usize, total_steps: usize) -> Result<Self> {
        validate(
            "WarmupLinear::new",
            peak_lr,
            min_lr,
            warmup_steps,
            total_steps,
        )?;
        Ok(WarmupLinear {
            peak_lr,
            min_lr,
            warmup_steps,
            total_steps,
        })
    }
}

impl LrSchedule for WarmupLinear {
    fn lr_at(&self, step: usize) -> f64 {
        warmup_lr(self.peak_lr, self.warmup_steps, step).unwrap_or_else(|| {
            let p = progress(self.warmup_steps, self.total_steps, step);
            self.min_lr + (self.peak_lr - self.min_lr) * (1.0 - p)
        })
    }
}
