//! Batched matrix multiplication with transposed operands and broadcast batch dimensions.
//!
//! Shapes: `a` is `[..., M, K]` (`[..., K, M]` when `ta`), `b` is `[..., K, N]` (`[..., N, K]`
//! when `tb`), `out` is `[broadcast(...), M, N]`. Transposes are strided GEMM views, in the
//! forward and in both backward products: no transposed copy is ever made.

use crate::autograd::{Graph, Var};
use crate::error::Result;
use crate::tensor::{self, GemmMode, Tensor, gemm_into};

impl Graph {
    /// `op(a) @ op(b)`, `op` transposing the last two axes when its flag is set. Batch dims
    /// broadcast (equal, size 1, or missing, e.g. a 2-D `b` shared by every batch). Both operands
    /// need rank >= 2.
    pub fn matmul_ex(&self, a: Var, ta: bool, b: Var, tb: bool) -> Result<Var> {
        let out = tensor::matmul_ex(&self.value(a)?, ta, &self.value(b)?, tb)?;
        self.record("matmul", out, &[a, b], move |d, dout, ins, _out| {
            let (av, bv) = (ins[0], ins[1]);
            // With C = op(A) op(B): d op(A) = dC op(B)^T and d op(B) = op(A)^T dC; GEMM with
            // beta = 1 adds them straight into the slots (summing over broadcast batches).
            if let Some(da) = d[0].sum_mut() {
                if ta {
                    gemm_into(bv, tb, dout, true, da, GemmMode::Accumulate)?; // dA += op(B) dC^T
                } else {
                    gemm_into(dout, false, bv, !tb, da, GemmMode::Accumulate)?; // dA += dC op(B)^T
                }
            }
            if let Some(db) = d[1].sum_mut() {
                if tb {
                    gemm_into(dout, true, av, ta, db, GemmMode::Accumulate)?; // dB += dC^T op(A)
                } else {
                    gemm_into(av, !ta, dout, false, db, GemmMode::Accumulate)?; // dB += op(A)^T dC
                }
            }
            Ok(())
        })
    }

    /// A Linear layer in one op: `x[..., in] @ w[out, in]^T + bias[out] -> [..., out]`, the bias
    /// folded into the GEMM (see [`tensor::linear`]).
    pub fn linear(&self, x: Var, w: Var, bias: Option<Var>) -> Result<Var> {
        let (xv, wv) = (self.value(x)?, self.value(w)?);
        let bv = bias.map(|b| self.value(b)).transpose()?;
        let out = tensor::linear(&xv, &wv, bv.as_ref())?;
        let inputs: Vec<Var> = [x, w].into_iter().chain(bias).collect();
        self.record("linear", out, &inputs, |d, dout, ins, _out| {
            let (xv, wv) = (ins[0], ins[1]);
            // dx[.., in] += dy[.., out] @ W[out, in]
            if let Some(dx) = d[0].sum_mut() {
                gemm_into(dout, false, wv, false, dx, GemmMode::Accumulate)?;
            }
            // dW[out, in] += dy^T @ x, summed over every leading row
            if let Some(dw) = d[1].sum_mut() {
                gemm_into(dout, true, xv, false, dw, GemmMode::Accumulate)?;
            }
            // dbias[out] += dy summed over every leading row
            if let Some(slot) = d.get_mut(2).filter(|s| s.is_wanted()) {
                let outputs = wv.shape()[0];
                let mut sums = vec![0f32; outputs];
                for row in dout.data().chunks_exact(outputs.max(1)) {
                    for (s, &g) in sums.iter_mut().zip(row) {
                        *s += g;
                    }
                }
                slot.add(&Tensor::from_vec(sums, &[outputs])?)?;
            }
            Ok(())
        })
    }

    /// `a @ b`: `[..., M, K] x [..., K, N] -> [..., M, N]` (composite of [`Graph::matmul_ex`]).
    pub fn matmul(&self, a: Var, b: Var) -> Result<Var> {
        self.matmul_ex(a, false, b, false)
    }

    /// `a @ b^T` without copying `b`: `[..., M, K] x [..., N, K] -> [..., M, N]`; the Linear
    /// layer's `x[B, T, in] @ W[out, in]^T` (composite of [`Graph::matmul_ex`]).
    pub fn matmul_t(&self, a: Var, b: Var) -> Result<Var> {
        self.matmul_ex(a, false, b, true)
    }
}
