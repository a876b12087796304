//! Depthwise 2-D convolution over a token grid (MiniViT's MLP-side weight transformation): one
//! op on the tape, its backward the kernels' (`dx`, `dweight`, `dbias` in one pass).
//!
//! Shapes: `x` and the output `[B, gh * gw, C]` (tokens of a row-major `gh x gw` grid),
//! `weight` `[k, k, C]` (k odd), `bias` `[C]`; see [`crate::tensor::dwconv`].

use crate::autograd::{Graph, Var};
use crate::error::Result;
use crate::tensor::{self, DwConvGrads, dwconv_backward};

impl Graph {
    /// `out[b, i * gw + j, c] = bias[c] + sum_{u, v} weight[u, v, c] x[b, (i + u - p) * gw +
    /// (j + v - p), c]` over the taps inside the `grid = (gh, gw)` (zero padding
    /// `p = (k - 1) / 2`), for `x [B, gh * gw, C]`, `weight [k, k, C]`, `bias [C]`.
    /// [`Error::Shape`](crate::Error::Shape) when `gh * gw` is not the token count, `k` is even,
    /// or the widths disagree. The residual `x + dwconv(x)` is the caller's.
    pub fn dwconv(&self, x: Var, weight: Var, bias: Var, grid: (usize, usize)) -> Result<Var> {
        let (xv, wv, bv) = (self.value(x)?, self.value(weight)?, self.value(bias)?);
        let out = tensor::dwconv(&xv, &wv, &bv, grid)?; // [B, N, C]
        self.record(
            "dwconv",
            out,
            &[x, weight, bias],
            move |d, dout, ins, _out| {
                let [dx, dw, db] = d else {
                    unreachable!("dwconv has three inputs")
                };
                let grads = DwConvGrads {
                    dx: dx.sum_mut(),
                    dweight: dw.sum_mut(),
                    dbias: db.sum_mut(),
                };
                dwconv_backward(dout, ins[0], ins[1], grid, grads)
            },
        )
    }
}
