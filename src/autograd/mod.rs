//! A minimal tape-based reverse-mode autograd.
//!
//! A [`Graph`] is a tape: every op appends a node holding its output value and, when a gradient
//! is needed, the indices of its inputs and a backward closure defined next to the forward (see
//! [`ops`]). Because nodes are appended in execution order, the tape is already topologically
//! sorted, and [`Graph::backward`] just walks it in reverse.
//!
//! ```
//! use lithe::autograd::{Graph, Param};
//! use lithe::tensor::{Rng, Tensor};
//! # fn main() -> lithe::Result<()> {
//! let mut rng = Rng::new(0);
//! let w = Param::new(Tensor::randn(&[3, 4], 0.0, 0.1, &mut rng)); // W[out, in]
//! let g = Graph::new();
//! let x = g.constant(Tensor::randn(&[2, 5, 4], 0.0, 1.0, &mut rng)); // x[B, T, in]
//! let w_var = g.param(&w);
//! let y = g.matmul_t(x, w_var)?; // y[B, T, out] = x @ W^T
//! let loss = g.mean_all(g.mul(y, y)?)?;
//! g.backward(loss)?;
//! assert_eq!(w.grad().unwrap().shape(), &[3, 4]);
//! # Ok(()) }
//! ```
//!
//! Parameters ([`Param`]) live outside graphs; a graph is built per step and dropped after the
//! backward pass, which is when its activations are freed. In no-grad mode
//! ([`Graph::inference`], [`Graph::set_grad_enabled`], [`Graph::no_grad`]) ops compute values but
//! record no inputs and no backward closures, and dropout is the identity.
//!
//! Gradient contract of every backward closure (llm.c's rule): it receives one slot per input,
//! `Some(accumulator)` when that input needs a gradient, and ADDS (`+=`) its contribution.

mod grad_slot;
pub mod ops;
mod param;

pub use grad_slot::GradSlot;
pub use ops::loss::CrossEntropyOptions;
pub use ops::transform_attention::HeadMix;
pub use param::Param;

use crate::error::{Error, Result};
use crate::tensor::{Rng, Tensor};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// A backward closure: `(dinputs, dout, inputs, out)`, adding into each wanted `dinputs[i]`. `inputs` and `out` are the forward's values. `Send`, so a whole graph can move to
/// another thread (e.g. one graph per data-parallel worker).
pub(crate) type BackwardFn =
    Box<dyn Fn(&mut [GradSlot], &Tensor, &[&Tensor], &Tensor) -> Result<()> + Send>;

/// A handle to a value on a [`Graph`]'s tape. Cheap to copy; only valid with its own graph
/// (using it with another graph is an [`Error::Graph`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var {
    graph: u64,
    index: usize,
}

impl Var {
    /// Position of this value on its tape.
    pub fn index(&self) -> usize {
        self.index
    }
}

struct Node {
    op: &'static str,
    value: Tensor,
    requires_grad: bool,
    // Empty and None unless the node requires a gradient and has inputs.
    inputs: Vec<usize>,
    backward: Option<BackwardFn>,
    param: Option<Param>,
}

struct Inner {
    nodes: Vec<Node>,
    // Gradients of leaves after backward, indexed like `nodes` (may be shorter).
    grads: Vec<Option<Tensor>>,
    grad_enabled: bool,
    training: bool,
    rng: Rng,
}

/// The tape. Ops are methods (`g.matmul(a, b)?`, `g.layernorm(x, w, b, eps)?`, ...) defined in
/// [`ops`]; they take `&self`, so a graph can be threaded through model code by shared reference.
/// A graph is `Send` but not `Sync`: one thread builds and differentiates it.
pub struct Graph {
    id: u64,
    inner: RefCell<Inner>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("Graph")
            .field("id", &self.id)
            .field("nodes", &inner.nodes.len())
            .field("grad_enabled", &inner.grad_enabled)
            .field("training", &inner.training)
            .finish()
    }
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

static NEXT_GRAPH_ID: AtomicU64 = AtomicU64::new(1);

impl Graph {
    /// A training graph: gradients recorded, dropout active, dropout seed 0.
    pub fn new() -> Self {
        Self::with_seed(0)
    }

    /// A training graph whose dropout masks are drawn from an RNG seeded with `seed`.
    ///
    /// The first graph of a process also calls [`crate::alloc::tune_allocator`].
    pub fn with_seed(seed: u64) -> Self {
        crate::alloc::tune_allocator();
        Graph {
            id: NEXT_GRAPH_ID.fetch_add(1, Ordering::Relaxed),
            inner: RefCell::new(Inner {
                nodes: Vec::new(),
                grads: Vec::new(),
                grad_enabled: true,
                training: true,
                rng: Rng::new(seed),
            }),
        }
    }

    /// An inference graph: no gradients recorded, eval mode (dropout is the identity).
    pub fn inference() -> Self {
        let g = Self::new();
        g.set_grad_enabled(false);
        g.set_training(false);
        g
    }

    /// Turns gradient recording on or off for the ops that follow.
    pub fn set_grad_enabled(&self, enabled: bool) {
        self.inner.borrow_mut().grad_enabled = enabled;
    }

    /// Whether ops record gradients.
    pub fn grad_enabled(&self) -> bool {
        self.inner.borrow().grad_enabled
    }

    /// Training mode (dropout active when gradients are recorded too) or eval mode.
    pub fn set_training(&self, training: bool) {
        self.inner.borrow_mut().training = training;
    }

    /// Whether the graph is in training mode.
    pub fn is_training(&self) -> bool {
        self.inner.borrow().training
    }

    /// Runs `f` with gradient recording off, then restores the previous setting.
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        let before = self.grad_enabled();
        self.set_grad_enabled(false);
        let r = f();
        self.set_grad_enabled(before);
        r
    }

    /// Number of nodes on the tape.
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    /// Whether the tape is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(
        &self,
        op: &'static str,
        value: Tensor,
        requires_grad: bool,
        param: Option<Param>,
    ) -> Var {
        let mut inner = self.inner.borrow_mut();
        let requires_grad = requires_grad && inner.grad_enabled;
        inner.nodes.push(Node {
            op,
            value,
            requires_grad,
            inputs: Vec::new(),
            backward: None,
            param,
        });
        Var {
            graph: self.id,
            index: inner.nodes.len() - 1,
        }
    }

    /// A leaf value; `requires_grad` asks for its gradient (ignored in no-grad mode).
    pub fn leaf(&self, value: Tensor, requires_grad: bool) -> Var {
        self.push("leaf", value, requires_grad, None)
    }

    /// A leaf whose gradient is wanted (read it with [`Graph::grad`] after backward).
    pub fn variable(&self, value: Tensor) -> Var {
        self.leaf(value, true)
    }

    /// A leaf without gradient (inputs, targets, masks).
    pub fn constant(&self, value: Tensor) -> Var {
        self.leaf(value, false)
    }

    /// The current value of `p` as a leaf; backward adds its gradient into [`Param::grad`]
    /// (unless `p` is frozen or gradients are off).
    pub fn param(&self, p: &Param) -> Var {
        self.push("param", p.value(), p.requires_grad(), Some(p.clone()))
    }

    fn check(&self, v: Var) -> Result<()> {
        if v.graph != self.id {
            return Err(Error::Graph(format!(
                "Var {} belongs to graph {}, not to graph {}",
                v.index, v.graph, self.id
            )));
        }
        Ok(())
    }

    /// The value of `v` (shares the buffer; cheap).
    pub fn value(&self, v: Var) -> Result<Tensor> {
        self.check(v)?;
        Ok(self.inner.borrow().nodes[v.index].value.clone())
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> Result<Vec<usize>> {
        self.check(v)?;
        Ok(self.inner.borrow().nodes[v.index].value.shape().to_vec())
    }

    /// Whether a gradient flows to `v`.
    pub fn requires_grad(&self, v: Var) -> Result<bool> {
        self.check(v)?;
        Ok(self.inner.borrow().nodes[v.index].requires_grad)
    }

    /// The gradient of a leaf (from [`Graph::variable`] or [`Graph::param`]) after
    /// [`Graph::backward`], accumulated over backward calls on this graph. `None` for a leaf the
    /// backward pass did not reach, and always for intermediate values (their gradients are freed
    /// during the pass).
    pub fn grad(&self, v: Var) -> Result<Option<Tensor>> {
        self.check(v)?;
        Ok(self.inner.borrow().grads.get(v.index).cloned().flatten())
    }

    /// A draw from the graph's RNG (for dropout masks).
    pub(crate) fn with_rng<R>(&self, f: impl FnOnce(&mut Rng) -> R) -> R {
        f(&mut self.inner.borrow_mut().rng)
    }

    /// Appends an op's output. When gradients are on and any input requires one, the node keeps
    /// its inputs and `backward`; otherwise both are dropped (no-grad records nothing).
    pub(crate) fn record(
        &self,
        op: &'static str,
        value: Tensor,
        inputs: &[Var],
        backward: impl Fn(&mut [GradSlot], &Tensor, &[&Tensor], &Tensor) -> Result<()> + Send + 'static,
    ) -> Result<Var> {
        for &v in inputs {
            self.check(v)?;
        }
        let mut inner = self.inner.borrow_mut();
        let requires_grad =
            inner.grad_enabled && inputs.iter().any(|v| inner.nodes[v.index].requires_grad);
        let (inputs, backward): (Vec<usize>, Option<BackwardFn>) = if requires_grad {
            (
                inputs.iter().map(|v| v.index).collect(),
                Some(Box::new(backward)),
            )
        } else {
            (Vec::new(), None)
        };
        inner.nodes.push(Node {
            op,
            value,
            requires_grad,
            inputs,
            backward,
            param: None,
        });
        Ok(Var {
            graph: self.id,
            index: inner.nodes.len() - 1,
        })
    }

    /// Reverse pass from a one-element `loss` (any rank): fills the gradients of the leaves and
    /// adds (`+=`) those of parameters into [`Param::grad`].
    ///
    /// Errors: [`Error::Shape`] if `loss` has more than one element, [`Error::NonFinite`] if it
    /// is NaN or infinite (nothing is accumulated then), [`Error::Graph`] if it does not depend
    /// on anything that requires a gradient.
    pub fn backward(&self, loss: Var) -> Result<()> {
        let value = self.value(loss)?;
        if value.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!("loss must hold one element, has shape {:?}", value.shape()),
            ));
        }
        value.check_finite("backward")?;
        self.backward_from(loss, Tensor::ones(value.shape()))
    }

    /// Reverse pass from any value `out` with a given output gradient `dout` (same shape): a
    /// vector-Jacobian product. [`Graph::backward`] is this with `dout = 1`.
    pub fn backward_from(&self, out: Var, dout: Tensor) -> Result<()> {
        self.check(out)?;
        let mut inner = self.inner.borrow_mut();
        let Inner {
            nodes,
            grads: leaf_grads,
            ..
        } = &mut *inner;
        let root = &nodes[out.index];
        dout.expect_shape("backward_from", root.value.shape())?;
        if !root.requires_grad {
            return Err(Error::Graph(format!(
                "{} (node {}) does not depend on anything that requires a gradient",
                root.op, out.index
            )));
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; out.index + 1];
        grads[out.index] = Some(dout);
        for i in (0..=out.index).rev() {
            let node = &nodes[i];
            let Some(bw) = &node.backward else { continue };
            let Some(dout) = grads[i].take() else {
                continue;
            };
            // One slot per input; a repeated input gets a fresh slot after its first one.
            let mut dins: Vec<GradSlot> = Vec::with_capacity(node.inputs.len());
            for (k, &j) in node.inputs.iter().enumerate() {
                let input = &nodes[j];
                dins.push(if !input.requires_grad {
                    GradSlot::Unused
                } else if node.inputs[..k].contains(&j) {
                    GradSlot::Zero(input.value.shape().to_vec())
                } else {
                    match grads[j].take() {
                        Some(g) => GradSlot::Sum(g),
                        None => GradSlot::Zero(input.value.shape().to_vec()),
                    }
                });
            }
            let ins: Vec<&Tensor> = node.inputs.iter().map(|&j| &nodes[j].value).collect();
            bw(&mut dins, &dout, &ins, &node.value)?;
            drop(dout); // its buffer may now be owned by a slot alone: adds then copy nothing
            assert_eq!(
                dins.len(),
                node.inputs.len(),
                "bug: {} backward changed its slot count",
                node.op
            );
            for (slot, &j) in dins.into_iter().zip(&node.inputs) {
                let Some(g) = slot.into_tensor() else {
                    continue;
                };
                assert_eq!(
                    g.shape(),
                    nodes[j].value.shape(),
                    "bug: {} backward gave a gradient of the wrong shape",
                    node.op
                );
                match &mut grads[j] {
                    Some(acc) => acc.add_assign(&g)?,
                    empty => *empty = Some(g),
                }
            }
        }
        // What is left in `grads` belongs to leaves.
        if leaf_grads.len() < grads.len() {
            leaf_grads.resize(grads.len(), None);
        }
        for (i, g) in grads.into_iter().enumerate() {
            let Some(g) = g else { continue };
            if let Some(p) = &nodes[i].param {
                p.accumulate_grad(g.clone())?;
            }
            match &mut leaf_grads[i] {
                Some(acc) => acc.add_assign(&g)?,
                empty => *empty = Some(g),
            }
        }
        Ok(())
    }
}
