//! References for the depthwise convolution (`crate::dwconv`), summed in f64.

use crate::dwconv::DwConvShape;

/// The input position `(row, col)` that tap `(u, v)` of output `(i, j)` reads, or `None` where
/// the tap falls in the zero padding. `p = (k - 1) / 2`.
fn dwconv_tap(s: &DwConvShape, i: usize, j: usize, u: usize, v: usize) -> Option<(usize, usize)> {
    let p = s.padding();
    let (r, c) = ((i + u).checked_sub(p)?, (j + v).checked_sub(p)?);
    (r < s.height && c < s.width).then_some((r, c))
}

/// Index of `[b, i, j, c]` in a `[B, H, W, C]` buffer.
fn dwconv_at(s: &DwConvShape, b: usize, i: usize, j: usize, c: usize) -> usize {
    ((b * s.height + i) * s.width + j) * s.channels + c
}

/// Depthwise convolution forward in f64 on f64 buffers (the finite-difference tests
/// differentiate this): `out[b,i,j,c] = bias[c] + sum_{u,v} w[u,v,c] * inp[b, i+u-p, j+v-p, c]`
/// over the taps inside the grid. out, inp: `[B, H, W, C]`; weight: `[k, k, C]`; bias: `[C]`.
pub fn dwconv_forward_f64(
    out: &mut [f64],
    inp: &[f64],
    weight: &[f64],
    bias: &[f64],
    s: DwConvShape,
) {
    let (k, ch) = (s.k, s.channels);
    for b in 0..s.batch {
        for i in 0..s.height {
            for j in 0..s.width {
                for c in 0..ch {
                    let mut acc = bias[c];
                    for u in 0..k {
                        for v in 0..k {
                            if let Some((r, q)) = dwconv_tap(&s, i, j, u, v) {
                                acc +=
                                    weight[(u * k + v) * ch + c] * inp[dwconv_at(&s, b, r, q, c)];
                            }
                        }
                    }
                    out[dwconv_at(&s, b, i, j, c)] = acc;
                }
            }
        }
    }
}

/// Depthwise convolution forward, computed in f64 (see [`dwconv_forward_f64`]).
pub fn dwconv_forward_ref(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    s: DwConvShape,
) {
    let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let mut o = vec![0.0f64; out.len()];
    dwconv_forward_f64(&mut o, &wide(inp), &wide(weight), &wide(bias), s);
    for (d, v) in out.iter_mut().zip(o) {
        *d = v as f32;
    }
}

/// Depthwise convolution backward in f64, accumulating (each sum, seeded with the old value, is
/// rounded to f32 once): `dbias[c] += sum dout[.., c]`,
/// `dweight[u,v,c] += sum_{b,i,j} dout[b,i,j,c] * inp[b, i+u-p, j+v-p, c]`,
/// `dinp[b,r,q,c] += sum` of `weight[u,v,c] * dout[b,i,j,c]` over the outputs `(i, j)` whose tap
/// `(u, v)` reads `(r, q)` (written as a scatter: the definition, not the flipped-filter form the
/// kernels use). dinp, dout, inp: `[B, H, W, C]`; dweight, weight: `[k, k, C]`; dbias: `[C]`.
#[allow(clippy::too_many_arguments)]
pub fn dwconv_backward_ref(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    s: DwConvShape,
) {
    let (k, ch) = (s.k, s.channels);
    let mut dx: Vec<f64> = dinp.iter().map(|&v| v as f64).collect();
    let mut dw: Vec<f64> = dweight.iter().map(|&v| v as f64).collect();
    let mut db: Vec<f64> = dbias.iter().map(|&v| v as f64).collect();
    for b in 0..s.batch {
        for i in 0..s.height {
            for j in 0..s.width {
                for c in 0..ch {
                    let g = dout[dwconv_at(&s, b, i, j, c)] as f64;
                    db[c] += g;
                    for u in 0..k {
                        for v in 0..k {
                            if let Some((r, q)) = dwconv_tap(&s, i, j, u, v) {
                                let at = dwconv_at(&s, b, r, q, c);
                                let t = (u * k + v) * ch + c;
                                dw[t] += g * inp[at] as f64;
                                dx[at] += g * weight[t] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    for (d, v) in dinp.iter_mut().zip(dx) {
        *d = v as f32;
    }
    for (d, v) in dweight.iter_mut().zip(dw) {
        *d = v as f32;
    }
    for (d, v) in dbias.iter_mut().zip(db) {
        *d = v as f32;
    }
}
