//! Neural-network ops over the last axis on the kernels of `lithe-kernels`: softmax,
//! log-softmax, LayerNorm, GELU; and dropout.
//!
//! Shapes: `x` is `[..., C]`, seen as `rows x C` row-major; LayerNorm's weight and bias are
//! `[C]`, its saved mean and rstd `[rows]`.

use crate::autograd::{GradSlot, Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::parallel::for_row_runs;
use crate::tensor::{self, Tensor};
use lithe_kernels::gelu::{GeluKind, gelu_backward};
use lithe_kernels::layernorm::layernorm_backward;
use lithe_kernels::softmax::{log_softmax_backward, softmax_backward};

/// The running sum of `slot` (zero-filled on first use), or a zeroed `scratch` buffer of
/// `shape` when the input needs no gradient: for kernels that always write every output.
fn or_scratch<'a>(
    slot: &'a mut GradSlot,
    scratch: &'a mut Option<Tensor>,
    shape: &[usize],
) -> &'a mut Tensor {
    match slot.sum_mut() {
        Some(t) => t,
        None => scratch.insert(Tensor::zeros(shape)),
    }
}

impl Graph {
    /// Softmax over the last axis (an empty last axis is [`Error::Empty`]).
    pub fn softmax(&self, x: Var) -> Result<Var> {
        let out = tensor::softmax(&self.value(x)?)?;
        self.record("softmax", out, &[x], |d, dout, _ins, y| {
            // dx += y * (dout - sum(dout * y)) per row
            if let Some(dx) = d[0].sum_mut() {
                let cols = *y.shape().last().unwrap_or(&1);
                let (g, y) = (dout.data(), y.data());
                for_row_runs(dx.data_mut(), cols, |row, dx| {
                    let at = row * cols..row * cols + dx.len();
                    Ok(softmax_backward(dx, &g[at.clone()], &y[at], cols)?)
                })?;
            }
            Ok(())
        })
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(&self, x: Var) -> Result<Var> {
        let out = tensor::log_softmax(&self.value(x)?)?;
        self.record("log_softmax", out, &[x], |d, dout, _ins, y| {
            // dx += dout - exp(y) * sum(dout) per row
            if let Some(dx) = d[0].sum_mut() {
                let cols = *y.shape().last().unwrap_or(&1);
                log_softmax_backward(dx.data_mut(), dout.data(), y.data(), cols)?;
            }
            Ok(())
        })
    }

    /// LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * weight + bias` (biased
    /// variance, as PyTorch). `weight`, `bias`: `[C]`.
    pub fn layernorm(&self, x: Var, weight: Var, bias: Var, eps: f32) -> Result<Var> {
        let (xv, wv, bv) = (self.value(x)?, self.value(weight)?, self.value(bias)?);
        let (out, mean, rstd) = tensor::layernorm(&xv, &wv, &bv, eps)?; // mean, rstd: [rows]
        self.record(
            "layernorm",
            out,
            &[x, weight, bias],
            move |d, dout, ins, _out| {
                let [dx, dw, db] = d else {
                    unreachable!("layernorm has three inputs")
                };
                let cols = ins[1].numel();
                // The kernel adds into all three; a slot nobody wants gets a scratch buffer.
                let (mut sx, mut sw, mut sb) = (None, None, None);
                let gx = or_scratch(dx, &mut sx, ins[0].shape());
                let gw = or_scratch(dw, &mut sw, &[cols]);
                let gb = or_scratch(db, &mut sb, &[cols]);
                layernorm_backward(
                    gx.data_mut(),
                    gw.data_mut(),
                    gb.data_mut(),
                    dout.data(),
                    ins[0].data(),
                    ins[1].data(),
                    mean.data(),
                    rstd.data(),
                    cols,
                )?;
                Ok(())
            },
        )
    }

    /// GELU, exact (`GeluKind::Erf`, BERT) or tanh-approximated (`GeluKind::Tanh`, GPT-2).
    pub fn gelu(&self, x: Var, kind: GeluKind) -> Result<Var> {
        let out = tensor::gelu(&self.value(x)?, kind)?;
        self.record("gelu", out, &[x], move |d, dout, ins, _out| {
            // dx += gelu'(x) * dout
            if let Some(dx) = d[0].sum_mut() {
                let (x, g) = (ins[0].data(), dout.data());
                for_row_runs(dx.data_mut(), 64, |row, dx| {
                    let at = row * 64..row * 64 + dx.len();
                    Ok(gelu_backward(dx, &x[at.clone()], &g[at], kind)?)
                })?;
            }
            Ok(())
        })
    }

    /// Inverted dropout: in training mode with gradients on, zeroes each element with
    /// probability `p` (mask drawn from the graph's seeded RNG) and scales the rest by
    /// `1 / (1 - p)`; otherwise (eval mode or no-grad) returns `x` itself.
    /// [`Error::InvalidArgument`] unless `0 <= p < 1`.
    pub fn dropout(&self, x: Var, p: f32) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("p = {p} is not in [0, 1)"),
            ));
        }
        if p == 0.0 || !self.is_training() || !self.grad_enabled() {
            return Ok(x);
        }
        let xv = self.value(x)?;
        let scale = 1.0 / (1.0 - p);
        let mask: Vec<f32> = self.with_rng(|rng| {
            (0..xv.numel())
                .map(|_| if rng.next_f32() < p { 0.0 } else { scale })
                .collect()
        });
        let mask = Tensor::from_vec(mask, xv.shape())?;
        let out = tensor::mul(&xv, &mask)?;
        self.record("dropout", out, &[x], move |d, dout, _ins, _out| {
            // dx += dout * mask / (1 - p)
            if d[0].is_wanted() {
                d[0].add(&tensor::mul(dout, &mask)?)?;
            }
            Ok(())
        })
    }
}
