//! SGD with momentum, exactly as `torch.optim.SGD`.

use super::Optimizer;
use super::group::{ParamGroup, Slot, check_non_negative, check_state_len, slots};
use crate::autograd::Param;
use crate::error::{Error, Result};

/// SGD's hyper-parameters, with PyTorch's defaults apart from the learning rate, which has
/// none worth defaulting to: `SgdConfig { lr: 0.1, ..Default::default() }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (settable each step with [`Optimizer::set_lr`]). Default 1e-3.
    pub lr: f64,
    /// Momentum factor `mu` (0: plain SGD, no buffer kept).
    pub momentum: f64,
    /// Dampening of the gradient in the momentum buffer (0 in the usual heavy-ball form).
    pub dampening: f64,
    /// Default L2 penalty, added to the gradient (coupled), for groups without their own.
    pub weight_decay: f64,
    /// Nesterov momentum (needs `momentum > 0` and `dampening == 0`).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

impl SgdConfig {
    fn validate(&self) -> Result<()> {
        const OP: &str = "Sgd::new";
        check_non_negative(OP, "lr", self.lr)?;
        check_non_negative(OP, "momentum", self.momentum)?;
        check_non_negative(OP, "dampening", self.dampening)?;
        check_non_negative(OP, "weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(
                OP,
                "Nesterov momentum requires a momentum and zero dampening",
            ));
        }
        Ok(())
    }
}

/// `torch.optim.SGD` (`maximize=False`).
///
/// For each parameter with a gradient `g`:
///
/// ```text
/// g   = g + wd * w                                       // coupled L2 weight decay
/// buf = g                  at the parameter's first step  // (momentum > 0 only)
/// buf = mu * buf + (1 - dampening) * g   afterwards
/// g   = g + mu * buf  if nesterov, else  buf
/// w   = w - lr * g
/// ```
#[derive(Debug)]
pub struct Sgd {
    cfg: SgdConfig,
    slots: Vec<Slot<Vec<f32>>>,
}

impl Sgd {
    /// One group holding `params`, all with `cfg.weight_decay`.
    pub fn new(params: Vec<Param>, cfg: SgdConfig) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new(params)], cfg)
    }

    /// Several groups with their own weight decay / learning-rate scale.
    /// [`Error::InvalidArgument`] for a hyper-parameter out of range or a parameter in two
    /// groups.
    pub fn with_groups(groups: Vec<ParamGroup>, cfg: SgdConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Sgd {
            slots: slots("Sgd::new", groups, cfg.weight_decay)?,
            cfg,
        })
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }

    /// The momentum buffer of `param` (`None` before its first step, with no momentum, or if
    /// this optimizer does not hold it).
    pub fn momentum_buffer(&self, param: &Param) -> Option<&[f32]> {
        self.slots
            .iter()
            .find(|s| s.param.same_as(param))
            .and_then(|s| s.state.as_deref())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        const OP: &str = "Sgd::step";
        let SgdConfig {
            lr: base_lr,
            momentum,
            dampening,
            nesterov,
            ..
        } = self.cfg;
        for slot in &mut self.slots {
            let lr = (base_lr * slot.lr_scale) as f32;
            let weight_decay = slot.weight_decay as f32;
            let state = &mut slot.state;
            slot.param.update(|value, grad| -> Result<()> {
                let Some(grad) = grad else {
                    return Ok(());
                };
                grad.expect_shape(OP, value.shape())?;
                let n = value.numel();
                let (mu, one_minus_dampening) = (momentum as f32, (1.0 - dampening) as f32);
                let first = state.is_none();
                let buf: Option<&mut Vec<f32>> = if momentum != 0.0 {
                    let b = state.get_or_insert_with(|| vec![0.0; n]);
                    check_state_len(OP, b.len(), n)?;
                    Some(b)
                } else {
                    None
                };
                // grad.add(param, alpha=weight_decay), skipped when 0 as in PyTorch (so an
                // infinite weight does not turn its gradient into NaN).
                let decayed = |g: f32, w: f32| {
                    if weight_decay != 0.0 {
                        g + weight_decay * w
                    } else {
                        g
                    }
                };
                let w = value.data_mut();
                match buf {
                    None => {
                        for (w, &g) in w.iter_mut().zip(grad.data()) {
                            *w -= lr * decayed(g, *w);
                        }
                    }
                    Some(buf) => {
                        for ((w, &g), b) in w.iter_mut().zip(grad.data()).zip(buf.iter_mut()) {
                            let d = decayed(g, *w);
                            *b = if first {
                                d
                            } else {
                                *b * mu + one_minus_dampening * d
                            };
                            let d = if nesterov { d + mu * *b } else { *b };
                            *w -= lr * d;
                        }
                    }
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
        check_non_negative("Sgd::set_lr", "lr", lr)?;
        self.cfg.lr = lr;
        Ok(())
    }
}
