//! Optimizers, learning-rate schedules and gradient clipping, with PyTorch's semantics.
//!
//! - [`AdamW`]: `torch.optim.AdamW` (decoupled weight decay, bias correction), with
//!   per-group weight decay ([`ParamGroup`], [`ParamGroup::split_decay`]);
//! - [`Sgd`]: `torch.optim.SGD` (momentum, dampening, Nesterov, coupled L2 weight decay);
//! - [`WarmupCosine`], [`WarmupLinear`], [`ConstantLr`]: `lr_at(step)` as pure functions of the
//!   step ([`LrSchedule`]), the same curves as Hugging Face's `get_cosine_schedule_with_warmup`
//!   and `get_linear_schedule_with_warmup` plus an optional floor;
//! - [`clip_grad_norm`]: `torch.nn.utils.clip_grad_norm_` (global L2 norm, in-place scaling).
//!
//! An optimizer reads each [`crate::Param`]'s accumulated gradient ([`crate::Param::grad`]) and
//! writes the value through [`crate::Param::update`]; a parameter with no gradient (frozen, or not reached by the
//! backward pass) is skipped and its state is left as it was, as in PyTorch. A training step is:
//!
//! ```text
//! opt.zero_grad();                       // forget last step's gradients
//! graph.backward(loss)?;                 // accumulate new ones into the params
//! clip_grad_norm(&params, 1.0)?;         // optional
//! opt.set_lr(schedule.lr_at(step));      // optional
//! opt.step()?;
//! ```
//!
//! Hyper-parameters are `f64` (as PyTorch's Python floats); the element-wise updates run in
//! `f32` on the `f32` parameters and `f32` state, with the per-step scalars (bias corrections,
//! step sizes) computed in `f64` first, which is what PyTorch does for `f32` parameters on the
//! CPU.

mod adamw;
mod clip;
mod group;
mod schedule;
mod sgd;

pub use adamw::{AdamState, AdamW, AdamWConfig};
pub use clip::{clip_grad_norm, grad_norm};
pub use group::{ParamGroup, is_bias_or_norm};
pub use schedule::{ConstantLr, LrSchedule, WarmupCosine, WarmupLinear};
pub use sgd::{Sgd, SgdConfig};

use crate::error::Result;

/// What a training loop needs from any optimizer.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// Clears the gradient of every parameter the optimizer holds ([`crate::Param::zero_grad`]).
    fn zero_grad(&self);
    /// The base learning rate of the next [`Optimizer::step`].
    fn lr(&self) -> f64;
    /// Sets the base learning rate for the next steps (e.g. from an [`LrSchedule`]).
    fn set_lr(&mut self, lr: f64) -> Result<()>;
}
