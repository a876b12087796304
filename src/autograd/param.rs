//! `Param`: a trainable tensor that outlives graphs and carries its gradient across steps.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug)]
struct ParamState {
    value: Tensor,
    grad: Option<Tensor>,
    requires_grad: bool,
    // Bumped by every change of the value: caches derived from it (packed weights) compare it.
    version: u64,
}

/// A shared handle to a trainable tensor and its accumulated gradient.
///
/// Clones are handles to the same parameter. [`crate::autograd::Graph::param`] puts the current
/// value on a tape; each [`crate::autograd::Graph::backward`] adds (`+=`) the gradient it finds
/// into [`Param::grad`], so gradients accumulate over graphs (micro-batches) until
/// [`Param::zero_grad`]. Optimizers read the gradient and write the value through
/// [`Param::update`]. A value already on a tape is not changed by a later update (the tensor
/// buffer is copied on write).
#[derive(Clone, Debug)]
pub struct Param {
    state: Arc<Mutex<ParamState>>,
}

impl Param {
    /// A parameter that requires a gradient.
    pub fn new(value: Tensor) -> Self {
        Param {
            state: Arc::new(Mutex::new(ParamState {
                value,
                grad: None,
                requires_grad: true,
                version: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ParamState> {
        // A poisoned lock only means another thread panicked mid-update; the data is still a
        // valid tensor, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current value (shares the buffer; cheap).
    pub fn value(&self) -> Tensor {
        self.lock().value.clone()
    }

    /// The shape of the value.
    pub fn shape(&self) -> Vec<usize> {
        self.lock().value.shape().to_vec()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.lock().value.numel()
    }

    /// Replaces the value; [`Error::Shape`] if the shape changes.
    pub fn set_value(&self, value: Tensor) -> Result<()> {
        let mut s = self.lock();
        if value.shape() != s.value.shape() {
            return Err(Error::shape(
                "Param::set_value",
                format!("{:?} cannot replace {:?}", value.shape(), s.value.shape()),
            ));
        }
        s.value = value;
        s.version += 1;
        Ok(())
    }

    /// A counter that changes whenever the value may have changed ([`Param::set_value`],
    /// [`Param::update`]): what caches derived from the value (e.g. a packed weight) compare.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// The gradient accumulated since the last [`Param::zero_grad`], if any backward pass
    /// reached this parameter.
    pub fn grad(&self) -> Option<Tensor> {
        self.lock().grad.clone()
    }

    /// Forgets the accumulated gradient (sets it to `None`).
    pub fn zero_grad(&self) {
        self.lock().grad = None;
    }

    /// Whether graphs compute a gradient for this parameter.
    pub fn requires_grad(&self) -> bool {
        self.lock().requires_grad
    }

    /// Freezes (`false`) or unfreezes (`true`) the parameter for later graphs.
    pub fn set_requires_grad(&self, requires_grad: bool) {
        self.lock().requires_grad = requires_grad;
    }

    /// Runs `f(value, grad)` under the lock: how an optimizer updates a parameter in place.
    /// `f` must not change the shape of the value.
    pub fn update<R>(&self, f: impl FnOnce(&mut Tensor, Option<&Tensor>) -> R) -> R {
        let mut s = self.lock();
        let s = &mut *s;
        s.version += 1;
        f(&mut s.value, s.grad.as_ref())
    }

    /// `grad += g` (the first contribution sets it).
    pub(crate) fn accumulate_grad(&self, g: Tensor) -> Result<()> {
        let mut s = self.lock();
        match &mut s.grad {
            Some(acc) => acc.add_assign(&g),
            None => {
                g.expect_shape("Param::accumulate_grad", s.value.shape())?;
                s.grad = Some(g);
                Ok(())
            }
        }
    }

    /// Whether two handles refer to the same parameter.
    pub fn same_as(&self, other: &Param) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}
