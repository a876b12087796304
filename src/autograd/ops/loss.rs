//! Losses, each fused with its own backward: cross-entropy from logits, MSE, KL divergence.
//! Each returns a rank-0 scalar.

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::{self, Tensor};

/// Options of [`Graph::cross_entropy`] (PyTorch's `F.cross_entropy` semantics).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CrossEntropyOptions {
    /// Label smoothing `eps` in `[0, 1]`: the target distribution is
    /// `(1 - eps) * onehot(t) + eps / C`.
    pub label_smoothing: f32,
    /// Rows whose target equals this are skipped, and the mean is over the other rows.
    pub ignore_index: Option<usize>,
}

impl Graph {
    /// Mean cross-entropy of `logits[..., C]` (seen as `N x C`) against integer class targets
    /// (`targets.len() == N`):
    /// `loss = 1/|valid| * sum_{r valid} [(1 - eps) * -logp[r, t_r] + eps * mean_c -logp[r, c]]`
    /// with `logp = log_softmax(logits)`, as PyTorch's `F.cross_entropy(..., reduction="mean",
    /// label_smoothing=eps, ignore_index=...)`. Gradient:
    /// `dlogits[r, c] = (softmax[r, c] - q[r, c]) / |valid|` on valid rows, 0 on ignored ones.
    ///
    /// Errors: [`Error::Shape`] if `targets.len() != N` or `logits` is a scalar,
    /// [`Error::Index`] for a (non-ignored) target `>= C`, [`Error::Empty`] if there is no row,
    /// no class, or every row is ignored, [`Error::InvalidArgument`] if `eps` is not in `[0, 1]`.
    /// NaN logits give a NaN loss.
    pub fn cross_entropy(
        &self,
        logits: Var,
        targets: &[usize],
        opts: &CrossEntropyOptions,
    ) -> Result<Var> {
        const OP: &str = "cross_entropy";
        let eps = opts.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(Error::invalid(
                OP,
                format!("label_smoothing = {eps} is not in [0, 1]"),
            ));
        }
        let lv = self.value(logits)?;
        let logp = tensor::log_softmax(&lv).map_err(|e| match e {
            Error::Empty { msg, .. } => Error::Empty { op: OP, msg },
            Error::Shape { msg, .. } => Error::Shape { op: OP, msg },
            e => e,
        })?; // [N, C]
        let c = *lv.shape().last().unwrap_or(&1);
        let n = lv.numel() / c;
        if targets.len() != n {
            return Err(Error::shape(
                OP,
                format!(
                    "{} targets for {n} rows of logits {:?}",
                    targets.len(),
                    lv.shape()
                ),
            ));
        }
        let valid = |t: usize| opts.ignore_index != Some(t);
        if let Some(&bad) = targets.iter().find(|&&t| valid(t) && t >= c) {
            return Err(Error::Index {
                op: OP,
                index: bad,
                size: c,
            });
        }
        let count = targets.iter().filter(|&&t| valid(t)).count();
        if count == 0 {
            return Err(Error::empty(OP, "no row with a (non-ignored) target"));
        }
        let lp = logp.data();
        let mut total = 0f64;
        for (r, &t) in targets.iter().enumerate().filter(|(_, t)| valid(**t)) {
            let row = &lp[r * c..(r + 1) * c];
            let nll = -(row[t] as f64);
            let smooth = -row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
            total += (1.0 - eps as f64) * nll + eps as f64 * smooth;
        }
        let out = Tensor::scalar((total / count as f64) as f32);
        let targets = targets.to_vec();
        let ignore = opts.ignore_index;
        self.record(OP, out, &[logits], move |d, dout, _ins, _out| {
            // dlogits[r, :] += dout / count * (softmax[r, :] - q[r, :]) on valid rows
            if let Some(dl) = d[0].sum_mut() {
                let scale = dout.data()[0] / count as f32;
                let lp = logp.data();
                let dl = dl.data_mut();
                for (r, &t) in targets.iter().enumerate() {
                    if ignore == Some(t) {
                        continue;
                    }
                    for j in 0..c {
                        let q = eps / c as f32 + if j == t { 1.0 - eps } else { 0.0 };
                        dl[r * c + j] += scale * (lp[r * c + j].exp() - q);
                    }
                }
            }
            Ok(())
        })
    }

    /// Mean squared error `mean((a - b)^2)` over all elements; `a` and `b` must have the same
    /// shape (no broadcasting: [`Error::Shape`]), and at least one element ([`Error::Empty`]).
    pub fn mse(&self, a: Var, b: Var) -> Result<Var> {
        let (av, bv) = (self.value(a)?, self.value(b)?);
        bv.expect_shape("mse", av.shape())?;
        if av.numel() == 0 {
            return Err(Error::empty("mse", "no element"));
        }
        let n = av.numel();
        let total: f64 = av
            .data()
            .iter()
            .zip(bv.data())
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum();
        let out = Tensor::scalar((total / n as f64) as f32);
        self.record("mse", out, &[a, b], move |d, dout, ins, _out| {
            // da += dout * 2 (a - b) / n, db -= the same
            let diff = tensor::sub(ins[0], ins[1])?;
            let scale = 2.0 * dout.data()[0] / n as f32;
            d[0].axpy(scale, &diff)?;
            d[1].axpy(-scale, &diff)?;
            Ok(())
        })
    }

    /// KL divergence in PyTorch's `F.kl_div(log_input, target, reduction="batchmean",
    /// log_target=False)` convention: `log_input` holds log-probabilities `log q`, `target`
    /// probabilities `p` (same shape, rank >= 1), and
    /// `loss = sum(p * (ln p - log_input)) / log_input.shape[0]`, where a term with `p == 0`
    /// counts as 0. This is `KL(p || q)` per row, averaged over the first axis (the batch).
    ///
    /// Gradients: `dlog_input = -p / batch`; `dtarget = (ln p + 1 - log_input) / batch` where
    /// `p > 0` and 0 where `p == 0` (the true derivative is -inf there). A negative `p` gives
    /// NaN (IEEE `ln`). Errors: [`Error::Shape`] for different shapes or a scalar,
    /// [`Error::Empty`] for an empty batch.
    pub fn kl_div(&self, log_input: Var, target: Var) -> Result<Var> {
        let (lq, p) = (self.value(log_input)?, self.value(target)?);
        p.expect_shape("kl_div", lq.shape())?;
        let batch = *lq
            .shape()
            .first()
            .ok_or_else(|| Error::shape("kl_div", "needs rank >= 1 (axis 0 is the batch)"))?;
        if lq.numel() == 0 {
            return Err(Error::empty("kl_div", format!("shape {:?}", lq.shape())));
        }
        let xlogy = |p: f64| if p == 0.0 { 0.0 } else { p * p.ln() };
        let total: f64 = lq
            .data()
            .iter()
            .zip(p.data())
            .map(|(&l, &p)| xlogy(p as f64) - p as f64 * l as f64)
            .sum();
        let out = Tensor::scalar((total / batch as f64) as f32);
        self.record(
            "kl_div",
            out,
            &[log_input, target],
            move |d, dout, ins, _out| {
                let scale = dout.data()[0] / batch as f32;
                let (lq, p) = (ins[0].data(), ins[1].data());
                // dlog_input += -p * dout / batch
                if let Some(dl) = d[0].sum_mut() {
                    for (g, &p) in dl.data_mut().iter_mut().zip(p) {
                        *g -= scale * p;
                    }
                }
                // dtarget += (ln p + 1 - log_input) * dout / batch, 0 where p == 0
                if let Some(dp) = d[1].sum_mut() {
                    for ((g, &p), &l) in dp.data_mut().iter_mut().zip(p).zip(lq) {
                        if p != 0.0 {
                            *g += scale * (p.ln() + 1.0 - l);
                        }
                    }
                }
                Ok(())
            },
        )
    }
}
