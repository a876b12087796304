//! Depthwise 2-D convolution over token grids, forward and backward, with the batch split over
//! lithe's pool (MiniViT's MLP-side weight transformation).
//!
//! Shapes: `x` and the output are `[B, N, C]`: per sample, `N = gh * gw` tokens of a row-major
//! `gh x gw` grid with `C` channels each (token `i * gw + j` sits at row `i`, column `j`), which
//! is the kernels' channels-last `[B, gh, gw, C]` layout without the reshape. `weight` is
//! `[k, k, C]` (one `k x k` filter per channel, `k` odd), `bias` `[C]`. Zero padding `(k - 1) / 2`
//! and stride 1 keep the grid's size; see [`lithe_kernels::dwconv`] for the exact sum.

use super::Tensor;
use crate::error::{Error, Result};
use lithe_kernels::dwconv::{DwConvShape, dwconv_backward as kernel_backward, dwconv_forward};
use lithe_kernels::threads;

/// Checks `x [B, gh * gw, C]`, `weight [k, k, C]` (k odd) and `bias [C]` when given; returns
/// the geometry of ONE sample (batch 1) and the batch size.
fn check(
    op: &'static str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    grid: (usize, usize),
) -> Result<(DwConvShape, usize)> {
    let [batch, tokens, channels] = x.shape()[..] else {
        return Err(Error::shape(
            op,
            format!("x must be [B, N, C], got {:?}", x.shape()),
        ));
    };
    let (gh, gw) = grid;
    if gh.checked_mul(gw) != Some(tokens) {
        return Err(Error::shape(
            op,
            format!("{tokens} tokens do not fill a {gh} x {gw} grid"),
        ));
    }
    let [k, k2, wc] = weight.shape()[..] else {
        return Err(Error::shape(
            op,
            format!("weight must be [k, k, C], got {:?}", weight.shape()),
        ));
    };
    if k != k2 || wc != channels || k.is_multiple_of(2) {
        return Err(Error::shape(
            op,
            format!(
                "weight {:?} must be [k, k, {channels}] with k odd",
                weight.shape()
            ),
        ));
    }
    if let Some(b) = bias {
        b.expect_shape(op, &[channels])?;
    }
    let sample = DwConvShape {
        batch: 1,
        height: gh,
        width: gw,
        channels,
        k,
    };
    Ok((sample, batch))
}

/// `out[b] = bias + dwconv(x[b], weight)` for every sample of `x [B, gh * gw, C]`; samples run in
/// parallel. [`Error::Shape`] when the shapes do not fit (module docs).
pub fn dwconv(x: &Tensor, weight: &Tensor, bias: &Tensor, grid: (usize, usize)) -> Result<Tensor> {
    let (sample, _) = check("dwconv", x, weight, Some(bias), grid)?;
    let len = sample.activation_len().unwrap_or(0);
    let mut out = vec![0f32; x.numel()]; // [B, N, C]
    if len > 0 {
        let (w, b) = (weight.data(), bias.data());
        let items: Vec<_> = out.chunks_mut(len).zip(x.data().chunks(len)).collect();
        threads::map(items, |(out_b, x_b)| {
            dwconv_forward(out_b, x_b, w, b, sample)
        })
        .into_iter()
        .collect::<std::result::Result<(), _>>()?;
    }
    Tensor::from_vec(out, x.shape())
}

/// Where [`dwconv_backward`] adds the gradients (`None`: not wanted): `dx [B, N, C]`,
/// `dweight [k, k, C]`, `dbias [C]`.
pub(crate) struct DwConvGrads<'a> {
    pub dx: Option<&'a mut Tensor>,
    pub dweight: Option<&'a mut Tensor>,
    pub dbias: Option<&'a mut Tensor>,
}

/// Adds the gradients of [`dwconv`] for `dout [B, N, C]`. Each sample's input gradient is
/// written by its own thread; the filter and bias gradients are summed per sample, then added in
/// sample order, so the result does not depend on the number of threads.
pub(crate) fn dwconv_backward(
    dout: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    grid: (usize, usize),
    grads: DwConvGrads<'_>,
) -> Result<()> {
    const OP: &str = "dwconv backward";
    let (sample, batch) = check(OP, x, weight, None, grid)?;
    let channels = sample.channels;
    dout.expect_shape(OP, x.shape())?;
    let len = sample.activation_len().unwrap_or(0);
    let wlen = sample.weight_len().unwrap_or(0);
    if batch == 0 || len == 0 {
        return Ok(());
    }
    let DwConvGrads { dx, dweight, dbias } = grads;
    let want_params = dweight.is_some() || dbias.is_some();
    if dx.is_none() && !want_params {
        return Ok(());
    }
    let dx_chunks: Vec<Option<&mut [f32]>> = match dx {
        Some(t) => t.data_mut().chunks_mut(len).map(Some).collect(),
        None => (0..batch).map(|_| None).collect(),
    };
    let (w, xd, gd) = (weight.data(), x.data(), dout.data());
    // Per sample: (dweight [k, k, C], dbias [C]) of that sample alone (empty when not wanted).
    let items: Vec<_> = dx_chunks.into_iter().enumerate().collect();
    let partials: Vec<(Vec<f32>, Vec<f32>)> = threads::map(items, |(b, dx_b)| {
        let (x_b, dout_b) = (&xd[b * len..(b + 1) * len], &gd[b * len..(b + 1) * len]);
        let mut scratch = Vec::new();
        let dx_b = match dx_b {
            Some(d) => d,
            None => {
                scratch.resize(len, 0.0);
                &mut scratch[..]
            }
        };
        let (mut dw, mut db) = (vec![0f32; wlen], vec![0f32; channels]);
        kernel_backward(dx_b, &mut dw, &mut db, dout_b, x_b, w, sample)?;
        if !want_params {
            return Ok((Vec::new(), Vec::new()));
        }
        Ok((dw, db))
    })
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    if let Some(dw) = dweight {
        let dw = dw.data_mut();
        for (part, _) in &partials {
            dw.iter_mut().zip(part).for_each(|(a, &p)| *a += p);
        }
    }
    if let Some(db) = dbias {
        let db = db.data_mut();
        for (_, part) in &partials {
            db.iter_mut().zip(part).for_each(|(a, &p)| *a += p);
        }
    }
    Ok(())
}
