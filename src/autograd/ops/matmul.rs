//! Batched matrix multiplication with transposed operands and broadcast batch dimensions.
//!
//! Shapes: `a` is `[..., M, K]` (`[..., K, M]` when `ta`), `b` is `[..., K, N]` (`[..., N, K]`
//! when `tb`), `out` is `[broadcast(...), M, N]`. Transposes are strided GEMM views, in the
//! forward and in both backward products: no transposed copy is ever made.

use crate::autograd::{Graph, Var};
use crate::error::Result;
use crate::tensor::{self, GemmMode, gemm_into};

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
            if let Some(da) = &mut d[0] {
                if ta {
                    gemm_into(bv, tb, dout, true, da, GemmMode::Accumulate)?; // dA += op(B) dC^T
                } else {
                    gemm_into(dout, false, bv, !tb, da, GemmMode::Accumulate)?; // dA += dC op(B)^T
                }
            }
            if let Some(db) = &mut d[1] {
                if tb {
                    gemm_into(dout, true, av, ta, db, GemmMode::Accumulate)?; // dB += dC^T op(A)
                } else {
                    gemm_into(av, !ta, dout, false, db, GemmMode::Accumulate)?; // dB += op(A)^T dC
                }
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
