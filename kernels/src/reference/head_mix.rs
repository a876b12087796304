//! References for the head-mixing kernels (`crate::head_mix`), summed in f64.

/// `dst[h * len + x] = sum_g M[h, g] src[g * len + x] + bias[h]` (`M = m^T` when `transpose`;
/// bias 0 when `None`), with `len = src.len() / heads`.
pub fn mix_heads_ref(
    src: &[f32],
    m: &[f32],
    bias: Option<&[f32]>,
    heads: usize,
    transpose: bool,
) -> Vec<f32> {
    let len = src.len() / heads.max(1);
    let mut out = vec![0.0f32; src.len()];
    for h in 0..heads {
        for x in 0..len {
            let mut acc = bias.map_or(0.0, |b| b[h] as f64);
            for g in 0..heads {
                let c = if transpose {
                    m[g * heads + h]
                } else {
                    m[h * heads + g]
                };
                acc += c as f64 * src[g * len + x] as f64;
            }
            out[h * len + x] = acc as f32;
        }
    }
    out
}

/// `acc[h * heads + g] += sum_x a[h * len + x] b[g * len + x]`, each sum (with its starting
/// value) in f64, with `len = a.len() / heads`.
pub fn add_head_dots_ref(acc: &mut [f32], a: &[f32], b: &[f32], heads: usize) {
    let len = a.len() / heads.max(1);
    for h in 0..heads {
        for g in 0..heads {
            let mut s = acc[h * heads + g] as f64;
            for x in 0..len {
                s += a[h * len + x] as f64 * b[g * len + x] as f64;
            }
            acc[h * heads + g] = s as f32;
        }
    }
}
