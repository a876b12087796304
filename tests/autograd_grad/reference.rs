//! f64 references of every op's forward, written for clarity on multi-indices: the oracle the
//! finite differences run on.

use lithe::GeluKind;
use lithe::Tensor;

/// An f64 row-major array.
#[derive(Clone, Debug)]
pub struct R {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// The multi-index of flat position `p` in `shape`.
pub fn unravel(mut p: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = p % shape[d];
        p /= shape[d];
    }
    idx
}

impl R {
    pub fn new(shape: &[usize], data: Vec<f64>) -> R {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        R {
            shape: shape.to_vec(),
            data,
        }
    }

    pub fn from_t(t: &Tensor) -> R {
        R::new(t.shape(), t.data().iter().map(|&v| v as f64).collect())
    }

    pub fn scalar(v: f64) -> R {
        R::new(&[], vec![v])
    }

    /// Element `f(index)` at every index of `shape`.
    pub fn from_fn(shape: &[usize], f: impl Fn(&[usize]) -> f64) -> R {
        let n = shape.iter().product();
        R::new(shape, (0..n).map(|p| f(&unravel(p, shape))).collect())
    }

    pub fn get(&self, idx: &[usize]) -> f64 {
        assert_eq!(idx.len(), self.shape.len());
        let off: usize = idx
            .iter()
            .zip(strides(&self.shape))
            .map(|(i, s)| i * s)
            .sum();
        self.data[off]
    }

    /// Element at `idx` of the broadcast shape `idx` lives in (aligned right, size-1 dims read 0).
    pub fn get_bc(&self, idx: &[usize]) -> f64 {
        let lead = idx.len() - self.shape.len();
        let own: Vec<usize> = (0..self.shape.len())
            .map(|d| if self.shape[d] == 1 { 0 } else { idx[lead + d] })
            .collect();
        self.get(&own)
    }

    pub fn map(&self, f: impl Fn(f64) -> f64) -> R {
        R::new(&self.shape, self.data.iter().map(|&v| f(v)).collect())
    }
}

pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let db = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            da.max(db)
        })
        .collect()
}

pub fn binary(a: &R, b: &R, f: impl Fn(f64, f64) -> f64) -> R {
    let shape = broadcast_shape(&a.shape, &b.shape);
    R::from_fn(&shape, |i| f(a.get_bc(i), b.get_bc(i)))
}

pub fn sum(a: &R, axes: &[usize], keepdim: bool) -> R {
    let kept: Vec<usize> = (0..a.shape.len())
        .map(|d| if axes.contains(&d) { 1 } else { a.shape[d] })
        .collect();
    let mut out = R::new(&kept, vec![0.0; kept.iter().product()]);
    let ks = strides(&kept);
    for p in 0..a.data.len() {
        let idx = unravel(p, &a.shape);
        let o: usize = (0..idx.len())
            .map(|d| if axes.contains(&d) { 0 } else { idx[d] * ks[d] })
            .sum();
        out.data[o] += a.data[p];
    }
    if !keepdim {
        out.shape = (0..a.shape.len())
            .filter(|d| !axes.contains(d))
            .map(|d| a.shape[d])
            .collect();
    }
    out
}

pub fn permute(a: &R, perm: &[usize]) -> R {
    let shape: Vec<usize> = perm.iter().map(|&p| a.shape[p]).collect();
    R::from_fn(&shape, |i| {
        let mut src = vec![0; i.len()];
        for (k, &p) in perm.iter().enumerate() {
            src[p] = i[k];
        }
        a.get(&src)
    })
}

pub fn slice(a: &R, axis: usize, start: usize, end: usize) -> R {
    let mut shape = a.shape.clone();
    shape[axis] = end - start;
    R::from_fn(&shape, |i| {
        let mut s = i.to_vec();
        s[axis] += start;
        a.get(&s)
    })
}

pub fn concat(xs: &[R], axis: usize) -> R {
    let mut shape = xs[0].shape.clone();
    shape[axis] = xs.iter().map(|x| x.shape[axis]).sum();
    R::from_fn(&shape, |i| {
        let mut s = i.to_vec();
        for x in xs {
            if s[axis] < x.shape[axis] {
                return x.get(&s);
            }
            s[axis] -= x.shape[axis];
        }
        unreachable!()
    })
}

pub fn index_select(a: &R, axis: usize, ids: &[usize]) -> R {
    let mut shape = a.shape.clone();
    shape[axis] = ids.len();
    R::from_fn(&shape, |i| {
        let mut s = i.to_vec();
        s[axis] = ids[i[axis]];
        a.get(&s)
    })
}

pub fn scatter_add(base: &R, axis: usize, ids: &[usize], src: &R) -> R {
    let mut out = base.clone();
    let os = strides(&out.shape);
    for p in 0..src.data.len() {
        let mut i = unravel(p, &src.shape);
        i[axis] = ids[i[axis]];
        let o: usize = i.iter().zip(&os).map(|(a, b)| a * b).sum();
        out.data[o] += src.data[p];
    }
    out
}

/// `op(a) @ op(b)` with broadcast batch dims.
pub fn matmul(a: &R, ta: bool, b: &R, tb: bool) -> R {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k) = if ta {
        (a.shape[ra - 1], a.shape[ra - 2])
    } else {
        (a.shape[ra - 2], a.shape[ra - 1])
    };
    let n = if tb { b.shape[rb - 2] } else { b.shape[rb - 1] };
    let mut shape = broadcast_shape(&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let nb = shape.len();
    shape.extend([m, n]);
    R::from_fn(&shape, |idx| {
        let (i, j) = (idx[nb], idx[nb + 1]);
        (0..k)
            .map(|kk| {
                let mut ia = idx[..nb].to_vec();
                ia.extend(if ta { [kk, i] } else { [i, kk] });
                let mut ib = idx[..nb].to_vec();
                ib.extend(if tb { [j, kk] } else { [kk, j] });
                a.get_bc(&ia) * b.get_bc(&ib)
            })
            .sum()
    })
}

/// `f(row)` applied to each row of the last axis.
pub fn rows(a: &R, f: impl Fn(&[f64]) -> Vec<f64>) -> R {
    let c = *a.shape.last().unwrap();
    R::new(&a.shape, a.data.chunks(c).flat_map(f).collect())
}

pub fn softmax(a: &R) -> R {
    rows(a, |r| {
        let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = r.iter().map(|v| (v - m).exp()).sum();
        r.iter().map(|v| (v - m).exp() / s).collect()
    })
}

pub fn log_softmax(a: &R) -> R {
    rows(a, |r| {
        let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + r.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        r.iter().map(|v| v - lse).collect()
    })
}

pub fn layernorm(x: &R, w: &R, b: &R, eps: f64) -> R {
    rows(x, |r| {
        let c = r.len() as f64;
        let mu = r.iter().sum::<f64>() / c;
        let var = r.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / c;
        let rs = 1.0 / (var + eps).sqrt();
        r.iter()
            .enumerate()
            .map(|(j, v)| (v - mu) * rs * w.data[j] + b.data[j])
            .collect()
    })
}

pub fn gelu(x: &R, kind: GeluKind) -> R {
    x.map(|v| match kind {
        GeluKind::Erf => {
            0.5 * v * (1.0 + lithe::kernels::reference::erf_f64(v / std::f64::consts::SQRT_2))
        }
        GeluKind::Tanh => {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
            0.5 * v * (1.0 + u.tanh())
        }
    })
}

/// PyTorch's cross-entropy (mean over non-ignored rows, label smoothing `eps`).
pub fn cross_entropy(logits: &R, targets: &[usize], eps: f64, ignore: Option<usize>) -> R {
    let c = *logits.shape.last().unwrap();
    let lp = log_softmax(logits);
    let (mut total, mut count) = (0.0, 0);
    for (r, &t) in targets.iter().enumerate() {
        if ignore == Some(t) {
            continue;
        }
        let row = &lp.data[r * c..(r + 1) * c];
        total += (1.0 - eps) * -row[t] + eps * -row.iter().sum::<f64>() / c as f64;
        count += 1;
    }
    R::scalar(total / count as f64)
}

pub fn mse(a: &R, b: &R) -> R {
    let s: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    R::scalar(s / a.data.len() as f64)
}

/// `sum(p * (ln p - log_q)) / batch`, 0 for terms with `p == 0`.
pub fn kl_div(log_q: &R, p: &R) -> R {
    let s: f64 = log_q
        .data
        .iter()
        .zip(&p.data)
        .map(|(&l, &p)| if p == 0.0 { 0.0 } else { p * (p.ln() - l) })
        .sum();
    R::scalar(s / log_q.shape[0] as f64)
}
