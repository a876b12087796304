//! The depthwise-convolution op against an f64 loop over the grid: tokens `[B, gh * gw, C]` in
//! row-major grid order, filter `[k, k, C]`, bias `[C]`, zero padding `(k - 1) / 2`.

use super::check::{check, randn};
use super::reference::R;
use lithe::{Error, Graph, Tensor};

/// `out[b, i*gw + j, c] = bias[c] + sum_{u,v} w[u, v, c] x[b, (i+u-p)*gw + (j+v-p), c]`, taps
/// outside the grid skipped.
fn reference(x: &[R], grid: (usize, usize)) -> R {
    let (xs, w, bias) = (&x[0], &x[1], &x[2]);
    let (gh, gw) = grid;
    let k = w.shape[0];
    let p = (k - 1) as isize / 2;
    R::from_fn(&xs.shape, |idx| {
        let (b, t, c) = (idx[0], idx[1], idx[2]);
        let (i, j) = ((t / gw) as isize, (t % gw) as isize);
        let mut acc = bias.get(&[c]);
        for u in 0..k {
            for v in 0..k {
                let (r, q) = (i + u as isize - p, j + v as isize - p);
                if (0..gh as isize).contains(&r) && (0..gw as isize).contains(&q) {
                    let tok = r as usize * gw + q as usize;
                    acc += w.get(&[u, v, c]) * xs.get(&[b, tok, c]);
                }
            }
        }
        acc
    })
}

#[test]
fn dwconv_gradients() {
    // (batch, grid, channels, k): a 3x3 filter on a non-square grid; k = 1 (a per-channel
    // scale); k = 5 wider than the grid (taps skipped on every side); a 1x1 grid.
    let cases = [
        (2, (3, 4), 3, 3),
        (1, (2, 2), 2, 1),
        (2, (2, 3), 2, 5),
        (3, (1, 1), 4, 3),
    ];
    for (i, &(b, grid, c, k)) in cases.iter().enumerate() {
        let seed = 120 + 3 * i as u64;
        let inputs = [
            randn(&[b, grid.0 * grid.1, c], seed),
            randn(&[k, k, c], seed + 1),
            randn(&[c], seed + 2),
        ];
        check(
            &format!("dwconv-{b}x{grid:?}x{c}-k{k}"),
            &inputs,
            move |g, v| g.dwconv(v[0], v[1], v[2], grid),
            move |x| reference(x, grid),
        );
    }
}

#[test]
fn dwconv_rejects_bad_shapes() {
    let g = Graph::new();
    let x = g.variable(randn(&[2, 6, 3], 140));
    let w = g.variable(randn(&[3, 3, 3], 141));
    let b = g.variable(randn(&[3], 142));
    assert!(g.dwconv(x, w, b, (2, 3)).is_ok());
    let shape_err = |r: lithe::Result<lithe::Var>| matches!(r, Err(Error::Shape { .. }));
    assert!(shape_err(g.dwconv(x, w, b, (2, 2)))); // 6 tokens, 4 grid cells
    assert!(shape_err(g.dwconv(x, w, b, (3, 3))));
    let flat = g.variable(randn(&[6, 3], 143));
    assert!(shape_err(g.dwconv(flat, w, b, (2, 3)))); // not [B, N, C]
    let even = g.variable(randn(&[2, 2, 3], 144));
    assert!(shape_err(g.dwconv(x, even, b, (2, 3)))); // k even
    let rect = g.variable(randn(&[3, 1, 3], 145));
    assert!(shape_err(g.dwconv(x, rect, b, (2, 3)))); // not k x k
    let narrow = g.variable(randn(&[3, 3, 2], 146));
    assert!(shape_err(g.dwconv(x, narrow, b, (2, 3)))); // C differs
    let long_bias = g.variable(randn(&[4], 147));
    assert!(shape_err(g.dwconv(x, w, long_bias, (2, 3))));
}

#[test]
fn dwconv_empty_batch() {
    let g = Graph::new();
    let x = g.variable(Tensor::zeros(&[0, 4, 2]));
    let w = g.variable(randn(&[3, 3, 2], 148));
    let b = g.variable(randn(&[2], 149));
    let y = g.dwconv(x, w, b, (2, 2)).unwrap();
    assert_eq!(g.value(y).unwrap().shape(), &[0, 4, 2]);
}

#[test]
fn dwconv_is_identical_for_any_thread_count() {
    // Samples run on separate threads; the filter and bias gradients are summed in sample
    // order, so the result cannot depend on how the batch was split.
    let inputs = [
        randn(&[5, 12, 8], 150),
        randn(&[3, 3, 8], 151),
        randn(&[8], 152),
    ];
    let run = |threads: usize| {
        lithe::kernels::threads::set_num_threads(threads);
        let g = Graph::new();
        let v: Vec<_> = inputs.iter().map(|t| g.variable(t.clone())).collect();
        let y = g.dwconv(v[0], v[1], v[2], (3, 4)).unwrap();
        g.backward_from(y, randn(&[5, 12, 8], 153)).unwrap();
        let mut out = vec![g.value(y).unwrap()];
        out.extend(v.iter().map(|&x| g.grad(x).unwrap().unwrap()));
        out
    };
    let (one, three) = (run(1), run(3));
    lithe::kernels::threads::set_num_threads(0);
    assert_eq!(one, three);
}
