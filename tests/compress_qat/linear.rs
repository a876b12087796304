//! One Linear under QAT: the fake-quantized forward against its formulas, and the observers.

use super::max_diff;
use lithe::int8::symmetric_scale;
use lithe::kernels::quantize::{
    dequantize_per_row, dequantize_per_tensor, quantize_per_row, quantize_per_tensor,
};
use lithe::nn::{Init, InputQuant, Linear, LinearQuant};
use lithe::{Graph, Rng, Tensor};

fn max_abs(x: &[f32]) -> f32 {
    x.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// `y = x_q W_q^T + b` in f64 from the kernels' quantizers: per-tensor (`Some(scale)`) or
/// per-row (`None`) input, per-row weight.
fn manual_linear(x: &Tensor, lin: &Linear, x_scale: Option<f32>) -> Vec<f64> {
    let (w, b) = (lin.weight.value(), lin.bias.as_ref().unwrap().value());
    let (out, inp) = (lin.out_features(), lin.in_features());
    let rows = x.numel() / inp;
    let mut qx = vec![0i8; x.numel()];
    let mut xd = vec![0.0f32; x.numel()];
    match x_scale {
        Some(s) => {
            quantize_per_tensor(x.data(), s, &mut qx).unwrap();
            dequantize_per_tensor(&qx, s, &mut xd).unwrap();
        }
        None => {
            let mut s = vec![0.0; rows];
            quantize_per_row(x.data(), inp, &mut qx, &mut s).unwrap();
            dequantize_per_row(&qx, inp, &s, &mut xd).unwrap();
        }
    }
    let (mut qw, mut sw, mut wd) = (vec![0i8; w.numel()], vec![0.0; out], vec![0.0; w.numel()]);
    quantize_per_row(w.data(), inp, &mut qw, &mut sw).unwrap();
    dequantize_per_row(&qw, inp, &sw, &mut wd).unwrap();
    let mut y = vec![0.0f64; rows * out];
    for r in 0..rows {
        for n in 0..out {
            let dot: f64 = (0..inp)
                .map(|k| xd[r * inp + k] as f64 * wd[n * inp + k] as f64)
                .sum();
            y[r * out + n] = dot + b.data()[n] as f64;
        }
    }
    y
}

/// The int8 engine's arithmetic for a per-tensor input scale `s_x`: exact i32 dot products of
/// the quantized values, then `s_x * s_w[n] * acc + b[n]` in f32.
fn integer_linear(x: &Tensor, lin: &Linear, s_x: f32) -> Vec<f64> {
    let (w, b) = (lin.weight.value(), lin.bias.as_ref().unwrap().value());
    let (out, inp) = (lin.out_features(), lin.in_features());
    let mut qx = vec![0i8; x.numel()];
    quantize_per_tensor(x.data(), s_x, &mut qx).unwrap();
    let (mut qw, mut sw) = (vec![0i8; w.numel()], vec![0.0f32; out]);
    quantize_per_row(w.data(), inp, &mut qw, &mut sw).unwrap();
    let mut y = Vec::new();
    for xr in qx.chunks_exact(inp) {
        for (n, wr) in qw.chunks_exact(inp).enumerate() {
            let acc: i32 = xr.iter().zip(wr).map(|(&a, &b)| a as i32 * b as i32).sum();
            y.push((s_x * sw[n] * acc as f32 + b.data()[n]) as f64);
        }
    }
    y
}

fn test_linear(seed: u64) -> (Linear, Tensor) {
    let mut rng = Rng::new(seed);
    let lin = Linear::new(7, 5, true, Init::Normal(0.5), &mut rng);
    let bias = lin.bias.as_ref().unwrap();
    bias.set_value(Tensor::randn(&[5], 0.0, 1.0, &mut rng))
        .unwrap();
    let x = Tensor::randn(&[2, 3, 7], 0.0, 2.0, &mut rng); // [B, T, in]
    (lin, x)
}

#[test]
fn qat_linear_forward_is_the_quantized_formula() {
    let (lin, x) = test_linear(1);
    let y_f32 = {
        let g = Graph::inference();
        g.value(lin.forward(&g, g.constant(x.clone())).unwrap())
            .unwrap()
    };
    lin.set_quant(Some(LinearQuant::new(InputQuant::Ema { decay: 0.9 })));
    // A training step observes the input first (the first observation is the range itself).
    let g = Graph::new();
    let y = g
        .value(lin.forward(&g, g.constant(x.clone())).unwrap())
        .unwrap();
    assert_eq!(y.shape(), &[2, 3, 5]);
    assert_eq!(lin.quant().unwrap().range, Some(max_abs(x.data())));
    let want = manual_linear(&x, &lin, Some(symmetric_scale(max_abs(x.data()))));
    let d = max_diff(y.data(), &want);
    assert!(d < 1e-5, "training forward differs from the formula by {d}");
    // The same up to f32 rounding as the engine's integer arithmetic.
    let d = max_diff(
        y.data(),
        &integer_linear(&x, &lin, symmetric_scale(max_abs(x.data()))),
    );
    assert!(
        d < 1e-5,
        "training forward differs from the integer formula by {d}"
    );
    // The inference path (no gradients: normally the packed f32 weight) agrees too.
    let g = Graph::inference();
    let y_inf = g
        .value(lin.forward(&g, g.constant(x.clone())).unwrap())
        .unwrap();
    let d = max_diff(y_inf.data(), &want);
    assert!(
        d < 1e-5,
        "inference forward differs from the formula by {d}"
    );
    // And the quantization is really there: the f32 layer differs by far more.
    let d = max_diff(y_f32.data(), &want);
    assert!(d > 1e-3, "f32 and quantized forwards agree to {d}");
    // Removing the state brings the f32 layer back exactly.
    lin.set_quant(None);
    let g = Graph::inference();
    let back = g.value(lin.forward(&g, g.constant(x)).unwrap()).unwrap();
    assert_eq!(back.data(), y_f32.data());
}

#[test]
fn dynamic_linear_quantizes_each_row() {
    let (lin, x) = test_linear(2);
    lin.set_quant(Some(LinearQuant::new(InputQuant::Dynamic)));
    let want = manual_linear(&x, &lin, None);
    for g in [Graph::new(), Graph::inference()] {
        let y = g
            .value(lin.forward(&g, g.constant(x.clone())).unwrap())
            .unwrap();
        let d = max_diff(y.data(), &want);
        assert!(d < 1e-5, "dynamic forward differs from the formula by {d}");
    }
    assert_eq!(
        lin.quant().unwrap().range,
        None,
        "dynamic layers observe nothing"
    );
}

#[test]
fn ema_follows_the_update_rule_only_on_training_graphs() {
    let (lin, x) = test_linear(3);
    let decay = 0.9f32;
    lin.set_quant(Some(LinearQuant::new(InputQuant::Ema { decay })));
    let mut want: Option<f32> = None;
    for factor in [1.0, 3.0, 0.5, 2.0] {
        let xs = x.scale(factor);
        let m = max_abs(xs.data());
        want = Some(want.map_or(m, |r| decay * r + (1.0 - decay) * m));
        let g = Graph::new(); // a training step: the weight's gradient is recorded
        let y = lin.forward(&g, g.constant(xs)).unwrap();
        let loss = g.sum_all(g.mul(y, y).unwrap()).unwrap();
        g.backward(loss).unwrap();
        let got = lin.quant().unwrap().range.unwrap();
        let want = want.unwrap();
        assert!(
            (got - want).abs() <= 1e-6 * want,
            "factor {factor}: range {got}, expected {want}"
        );
    }
    let before = lin.quant().unwrap().range;
    // Inference graphs, no-grad sections and eval-mode graphs leave the range alone.
    let big = x.scale(10.0);
    let g = Graph::inference();
    lin.forward(&g, g.constant(big.clone())).unwrap();
    let g = Graph::new();
    g.no_grad(|| lin.forward(&g, g.constant(big.clone())).unwrap());
    g.set_training(false);
    lin.forward(&g, g.constant(big)).unwrap();
    assert_eq!(lin.quant().unwrap().range, before);
}
