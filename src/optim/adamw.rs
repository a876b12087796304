//! AdamW (Loshchilov & Hutter), exactly as `torch.optim.AdamW` with `amsgrad=False`.

use super::Optimizer;
use super::group::{ParamGroup, Slot, check_non_negative, check_state_len, slots};
use crate::autograd::Param;
use crate::error::{Error, Result};

/// AdamW's hyper-parameters; [`Default`] gives PyTorch's defaults (`lr` 1e-3, betas (0.9,
/// 0.999), `eps` 1e-8, `weight_decay` 1e-2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (settable each step with [`Optimizer::set_lr`]).
    pub lr: f64,
    /// Decay of the first-moment average, in `[0, 1)`.
    pub beta1: f64,
    /// Decay of the second-moment average, in `[0, 1)`.
    pub beta2: f64,
    /// Added to `sqrt(v_hat)` in the denominator.
    pub eps: f64,
    /// Default decoupled weight decay, for groups that do not set their own.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

impl AdamWConfig {
    fn validate(&self) -> Result<()> {
        const OP: &str = "AdamW::new";
        check_non_negative(OP, "lr", self.lr)?;
        check_non_negative(OP, "eps", self.eps)?;
        check_non_negative(OP, "weight_decay", self.weight_decay)?;
        for (what, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::invalid(
                    OP,
                    format!("{what} must be in [0, 1), got {beta}"),
                ));
            }
        }
        Ok(())
    }
}

/// Per-parameter AdamW state, created at the parameter's first step with a gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamState {
    /// Steps taken on this parameter (PyTorch's `state["step"]`): the bias corrections use it.
    pub step: u64,
    /// First-moment average `m`, one per element.
    pub exp_avg: Vec<f32>,
    /// Second-moment average `v`, one per element.
    pub exp_avg_sq: Vec<f32>,
}

/// `torch.optim.AdamW` (`amsgrad=False`, `maximize=False`).
///
/// For each parameter with a gradient `g`, with `t` its own step count:
///
/// ```text
/// w  = w * (1 - lr * wd)                      // decoupled weight decay, before the Adam update
/// m  = beta1 * m + (1 - beta1) * g
/// v  = beta2 * v + (1 - beta2) * g^2
/// w  = w - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// ```
///
/// `lr` is the optimizer's learning rate times the group's `lr_scale`, and `wd` the group's
/// weight decay.
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot<AdamState>>,
}

impl AdamW {
    /// One group holding `params`, all with `cfg.weight_decay`.
    pub fn new(params: Vec<Param>, cfg: AdamWConfig) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new(params)], cfg)
    }

    /// Several groups (e.g. [`ParamGroup::split_decay`] for no decay on biases and LayerNorm
    /// weights). [`Error::InvalidArgument`] for a hyper-parameter out of range or a parameter
    /// in two groups.
    pub fn with_groups(groups: Vec<ParamGroup>, cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(AdamW {
            slots: slots("AdamW::new", groups, cfg.weight_decay)?,
            cfg,
        })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// The state of `param`: `None` before its first step (or if this optimizer does not hold
    /// it).
    pub fn state(&self, param: &Param) -> Option<&AdamState> {
        self.slots
            .iter()
            .find(|s| s.param.same_as(param))
            .and_then(|s| s.state.as_ref())
    }

    /// Every parameter held, in group order.
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.slots.iter().map(|s| &s.param)
    }
}

impl Optimizer for AdamW {
    fn step(&mut self) -> Result<()> {
        const OP: &str = "AdamW::step";
        let AdamWConfig {
            lr: base_lr,
            beta1,
            beta2,
            eps,
            ..
        } = self.cfg;
        for slot in &mut self.slots {
            let lr = base_lr * slot.lr_scale;
            let weight_decay = slot.weight_decay;
            let state = &mut slot.state;
            slot.param.update(|value, grad| -> Result<()> {
                let Some(grad) = grad else {
                    return Ok(());
                };
                grad.expect_shape(OP, value.shape())?;
                let n = value.numel();
                let st = state.get_or_insert_with(|| AdamState {
                    step: 0,
                    exp_avg: vec![0.0; n],
                    exp_avg_sq: vec![0.0; n],
                });
                check_state_len(OP, st.exp_avg.len(), n)?;
                st.step += 1;
                // Per-step scalars in f64, as PyTorch computes them from Python floats.
                let t = st.step as f64;
                let bias_correction1 = 1.0 - beta1.powf(t);
                let bias_correction2_sqrt = (1.0 - beta2.powf(t)).sqrt();
                let step_size = (lr / bias_correction1) as f32;
                let bias_correction2_sqrt = bias_correction2_sqrt as f32;
                let decay = (1.0 - lr * weight_decay) as f32;
                let (one_minus_beta1, beta2, one_minus_beta2, eps) = (
                    (1.0 - beta1) as f32,
                    beta2 as f32,
                    (1.0 - beta2) as f32,
                    eps as f32,
                );
                let (m, v) = (&mut st.exp_avg, &mut st.exp_avg_sq);
                for (((w, &g), m), v) in value
                    .data_mut()
                    .iter_mut()
                    .zip(grad.data())
                    .zip(m.iter_mut())
                    .zip(v.iter_mut())
                {
                    *w *= decay;
                    *m += one_minus_beta1 * (g - *m); // exp_avg.lerp_(grad, 1 - beta1)
                    *v = *v * beta2 + one_minus_beta2 * g * g;
                    let denom = v.sqrt() / bias_correction2_sqrt + eps;
                    *w -= step_size * (*m / denom);
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn zero_grad(&self) {
        for s in &self.slots {
            s.param.zero_grad();
        }
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_non_negative("AdamW::set_lr", "lr", lr)?;
        self.cfg.lr = lr;
        Ok(())
    }
}
