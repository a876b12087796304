//! The losses in plain f64 on row-major `Vec<f64>`, written from the formulas (no shared code
//! with the library): `[B, T, W]` activations, masks as per-token flags `[B, T]`.

/// Softmax of `row` over the entries where `keep` is true (the others get probability 0).
fn masked_softmax(row: &[f64], keep: impl Fn(usize) -> bool) -> Vec<f64> {
    let max = (0..row.len())
        .filter(|&k| keep(k))
        .map(|k| row[k])
        .fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = (0..row.len())
        .map(|k| if keep(k) { (row[k] - max).exp() } else { 0.0 })
        .collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// `KL(p || q) = sum p (ln p - ln q)`, terms with `p == 0` counting 0.
fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(p, _)| **p > 0.0)
        .map(|(p, q)| p * (p.ln() - q.ln()))
        .sum()
}

/// `T^2 / N * sum_rows KL(softmax(t / T) || softmax(s / T))` over rows of `classes`.
pub fn soft_kd(student: &[f64], teacher: &[f64], classes: usize, temperature: f64) -> f64 {
    let rows = student.len() / classes;
    let tempered = |x: &[f64]| -> Vec<f64> {
        let x: Vec<f64> = x.iter().map(|v| v / temperature).collect();
        masked_softmax(&x, |_| true)
    };
    let total: f64 = student
        .chunks(classes)
        .zip(teacher.chunks(classes))
        .map(|(s, t)| kl(&tempered(t), &tempered(s)))
        .sum();
    temperature * temperature * total / rows as f64
}

/// Token flags `[B, T]`: sample `b` keeps `lengths[b]` tokens, or all of them without lengths.
pub fn flags(lengths: Option<&[usize]>, b: usize, t: usize) -> Vec<bool> {
    (0..b * t)
        .map(|i| lengths.is_none_or(|l| i % t < l[i / t]))
        .collect()
}

/// One relation `softmax(X_i X_j^T / sqrt(d_r))` per relation head: `[b][h][query] -> [T]`
/// probabilities, padded keys excluded.
fn relation(
    xi: &[f64],
    xj: &[f64],
    [b, t, w]: [usize; 3],
    r: usize,
    valid: &[bool],
) -> Vec<Vec<Vec<Vec<f64>>>> {
    let dr = w / r;
    (0..b)
        .map(|bi| {
            (0..r)
                .map(|h| {
                    (0..t)
                        .map(|q| {
                            let logits: Vec<f64> = (0..t)
                                .map(|k| {
                                    (0..dr)
                                        .map(|c| {
                                            let at = |tok: usize| (bi * t + tok) * w + h * dr + c;
                                            xi[at(q)] * xj[at(k)]
                                        })
                                        .sum::<f64>()
                                        / (dr as f64).sqrt()
                                })
                                .collect();
                            masked_softmax(&logits, |k| valid[bi * t + k])
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// One layer's projections: `[q, k, v]`, each `[B, T, W]`.
pub type Layer<'a> = [&'a [f64]; 3];

/// The attention relation loss: per layer and pair `(i, j)` (indices into q, k, v), the mean
/// over samples, relation heads and valid query rows of `KL(R^t || R^s)`; then the mean over
/// pairs and layers.
#[allow(clippy::too_many_arguments)]
pub fn attention_relation(
    student: &[Layer],
    teacher: &[Layer],
    (b, t): (usize, usize),
    (ws, wt): (usize, usize),
    r: usize,
    pairs: &[(usize, usize)],
    valid: &[bool],
) -> f64 {
    let mut total = 0.0;
    for (s, te) in student.iter().zip(teacher) {
        for &(i, j) in pairs {
            let rs = relation(s[i], s[j], [b, t, ws], r, valid);
            let rt = relation(te[i], te[j], [b, t, wt], r, valid);
            let (mut sum, mut rows) = (0.0, 0usize);
            for bi in 0..b {
                for h in 0..r {
                    for q in (0..t).filter(|&q| valid[bi * t + q]) {
                        sum += kl(&rt[bi][h][q], &rs[bi][h][q]);
                        rows += 1;
                    }
                }
            }
            total += sum / rows as f64;
        }
    }
    total / (student.len() * pairs.len()) as f64
}

/// `n(H) n(H)^T` for `H [B, T, W]` with L2-normalized rows: `[B * T * T]`.
fn cosine_relation(x: &[f64], [b, t, w]: [usize; 3]) -> Vec<f64> {
    let rows: Vec<Vec<f64>> = x
        .chunks(w)
        .map(|row| {
            let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            row.iter().map(|v| v / n).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(b * t * t);
    for bi in 0..b {
        for i in 0..t {
            for j in 0..t {
                let (a, c) = (&rows[bi * t + i], &rows[bi * t + j]);
                out.push(a.iter().zip(c).map(|(p, q)| p * q).sum());
            }
        }
    }
    out
}

/// The hidden relation loss: per layer, the mean over entries `(b, i, j)` with both tokens
/// valid of `(R^s - R^t)^2`; then the mean over layers.
pub fn hidden_relation(
    student: &[&[f64]],
    teacher: &[&[f64]],
    (b, t): (usize, usize),
    (ws, wt): (usize, usize),
    valid: &[bool],
) -> f64 {
    let mut total = 0.0;
    for (s, te) in student.iter().zip(teacher) {
        let rs = cosine_relation(s, [b, t, ws]);
        let rt = cosine_relation(te, [b, t, wt]);
        let (mut sum, mut count) = (0.0, 0usize);
        for bi in 0..b {
            for i in 0..t {
                for j in 0..t {
                    if valid[bi * t + i] && valid[bi * t + j] {
                        let at = (bi * t + i) * t + j;
                        sum += (rs[at] - rt[at]).powi(2);
                        count += 1;
                    }
                }
            }
        }
        total += sum / count as f64;
    }
    total / student.len() as f64
}

/// Mean cross-entropy of rows of `logits` (`classes` wide) against `labels`.
pub fn cross_entropy(logits: &[f64], labels: &[usize], classes: usize) -> f64 {
    let total: f64 = logits
        .chunks(classes)
        .zip(labels)
        .map(|(row, &y)| -masked_softmax(row, |_| true)[y].ln())
        .sum();
    total / labels.len() as f64
}

/// `T^2 / N * sum_rows KL(p || softmax(s / T))` for given target distributions `p`.
pub fn kd_to_targets(student: &[f64], targets: &[f64], classes: usize, temperature: f64) -> f64 {
    let rows = student.len() / classes;
    let total: f64 = student
        .chunks(classes)
        .zip(targets.chunks(classes))
        .map(|(s, p)| {
            let s: Vec<f64> = s.iter().map(|v| v / temperature).collect();
            kl(p, &masked_softmax(&s, |_| true))
        })
        .sum();
    temperature * temperature * total / rows as f64
}

/// `mean((a - b)^2)`.
pub fn mse(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64
}

/// `x[n, k] W^T + bias` for `W[m, k]`.
pub fn linear(x: &[f64], w: &[f64], bias: &[f64], k: usize) -> Vec<f64> {
    let m = bias.len();
    x.chunks(k)
        .flat_map(|row| {
            (0..m).map(move |j| bias[j] + (0..k).map(|i| row[i] * w[j * k + i]).sum::<f64>())
        })
        .collect()
}
