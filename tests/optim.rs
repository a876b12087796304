//! `lithe::optim` against PyTorch's formulas, written out here in f64 (`torch.optim.AdamW`,
//! `torch.optim.SGD`, `torch.nn.utils.clip_grad_norm_`, Hugging Face's warm-up schedules).

use lithe::optim::{
    AdamW, AdamWConfig, ConstantLr, LrSchedule, Optimizer, ParamGroup, Sgd, SgdConfig,
    WarmupCosine, WarmupLinear, clip_grad_norm, grad_norm, is_bias_or_norm,
};
use lithe::{Error, Graph, Param, Rng, Tensor};

/// Sets `p`'s gradient to exactly `grad` through a real backward pass: the vector-Jacobian
/// product of `p * 1` with `dout = grad` (no loss, so non-finite gradients can be planted too).
fn set_grad(p: &Param, grad: &[f32]) {
    p.zero_grad();
    let g = Graph::new();
    let x = g.param(p);
    let y = g.mul_scalar(x, 1.0).unwrap();
    g.backward_from(y, Tensor::from_vec(grad.to_vec(), &p.shape()).unwrap())
        .unwrap();
    let got = p.grad().unwrap();
    assert!(
        got.data()
            .iter()
            .zip(grad)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

fn param(values: &[f32]) -> Param {
    Param::new(Tensor::from_vec(values.to_vec(), &[values.len()]).unwrap())
}

/// `|a - b| <= atol + rtol * |b|` element-wise, f32 result against an f64 reference.
fn assert_close(got: &[f32], want: &[f64], atol: f64, rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w} (err {err:e})"
        );
    }
}

/// One step of `torch.optim.AdamW` (amsgrad=False) on one parameter, in f64.
struct AdamRef {
    w: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl AdamRef {
    fn new(w: &[f32]) -> Self {
        let w: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        let n = w.len();
        AdamRef {
            w,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    fn step(&mut self, g: &[f32], lr: f64, b1: f64, b2: f64, eps: f64, wd: f64) {
        self.t += 1;
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        for i in 0..self.w.len() {
            let g = g[i] as f64;
            self.w[i] *= 1.0 - lr * wd;
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g * g;
            let denom = (self.v[i] / bc2).sqrt() + eps;
            self.w[i] -= lr * (self.m[i] / bc1) / denom;
        }
    }
}

#[test]
fn adamw_matches_pytorch_formula_over_several_steps_with_changing_lr() {
    let cfg = AdamWConfig {
        lr: 0.05,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let init = [0.5f32, -1.25, 2.0, 0.0, -0.3];
    let p = param(&init);
    let mut opt = AdamW::new(vec![p.clone()], cfg).unwrap();
    let mut reference = AdamRef::new(&init);
    let mut rng = Rng::new(11);
    let lrs = [0.05, 0.04, 0.03, 0.02, 0.01, 0.005];
    for &lr in &lrs {
        let g: Vec<f32> = (0..init.len())
            .map(|_| (rng.normal() * 0.7) as f32)
            .collect();
        set_grad(&p, &g);
        opt.set_lr(lr).unwrap();
        opt.step().unwrap();
        reference.step(&g, lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
        assert_close(p.value().data(), &reference.w, 1e-6, 1e-5, "w");
    }
    let st = opt.state(&p).unwrap();
    assert_eq!(st.step, lrs.len() as u64);
    assert_close(&st.exp_avg, &reference.m, 1e-6, 1e-5, "exp_avg");
    assert_close(&st.exp_avg_sq, &reference.v, 1e-7, 1e-5, "exp_avg_sq");
}

#[test]
fn adamw_first_step_by_hand() {
    // Step 1: m_hat = g, v_hat = g^2, so w1 = w0 (1 - lr wd) - lr g / (|g| + eps).
    let p = param(&[1.0, -2.0, 3.0]);
    let cfg = AdamWConfig {
        lr: 0.1,
        weight_decay: 0.5,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(vec![p.clone()], cfg).unwrap();
    set_grad(&p, &[0.2, -4.0, 1e-3]);
    opt.step().unwrap();
    let want: Vec<f64> = [(1.0, 0.2), (-2.0, -4.0), (3.0, 1e-3)]
        .iter()
        .map(|&(w, g): &(f64, f64)| w * (1.0 - 0.1 * 0.5) - 0.1 * g / (g.abs() + 1e-8))
        .collect();
    assert_close(p.value().data(), &want, 1e-6, 1e-6, "w1");
}

#[test]
fn adamw_defaults_are_pytorchs() {
    let c = AdamWConfig::default();
    assert_eq!(
        (c.lr, c.beta1, c.beta2, c.eps, c.weight_decay),
        (1e-3, 0.9, 0.999, 1e-8, 1e-2)
    );
}

#[test]
fn weight_decay_groups_decay_only_the_decay_group() {
    let named: Vec<(String, Param)> = [
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.0.attention.self.query.bias",
        "encoder.layer.0.attention.output.LayerNorm.weight",
        "embeddings.word_embeddings.weight",
    ]
    .iter()
    .map(|n| (n.to_string(), param(&[2.0, -4.0])))
    .collect();
    let groups = ParamGroup::split_decay(&named, |name, _| is_bias_or_norm(name));
    assert_eq!(groups[0].params.len(), 2);
    assert_eq!(groups[1].params.len(), 2);
    assert_eq!(groups[1].weight_decay, Some(0.0));
    let cfg = AdamWConfig {
        lr: 0.1,
        weight_decay: 0.25,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::with_groups(groups.to_vec(), cfg).unwrap();
    // Zero gradients: the Adam part is 0 / (0 + eps) = 0, only the decay moves the weights.
    for (_, p) in &named {
        set_grad(p, &[0.0, 0.0]);
    }
    opt.step().unwrap();
    let factor = 1.0 - 0.1 * 0.25;
    for (name, p) in &named {
        let want = if is_bias_or_norm(name) {
            [2.0, -4.0]
        } else {
            [2.0 * factor, -4.0 * factor]
        };
        assert_close(p.value().data(), &want, 1e-7, 1e-7, name);
    }
}

#[test]
fn group_lr_scale_and_own_weight_decay() {
    let a = param(&[1.0]);
    let b = param(&[1.0]);
    let cfg = AdamWConfig {
        lr: 0.1,
        weight_decay: 0.0,
        ..AdamWConfig::default()
    };
    let groups = vec![
        ParamGroup::new(vec![a.clone()]),
        ParamGroup::new(vec![b.clone()])
            .with_lr_scale(0.5)
            .with_weight_decay(0.2),
    ];
    let mut opt = AdamW::with_groups(groups, cfg).unwrap();
    set_grad(&a, &[1.0]);
    set_grad(&b, &[1.0]);
    opt.step().unwrap();
    let mut ra = AdamRef::new(&[1.0]);
    ra.step(&[1.0], 0.1, 0.9, 0.999, 1e-8, 0.0);
    let mut rb = AdamRef::new(&[1.0]);
    rb.step(&[1.0], 0.05, 0.9, 0.999, 1e-8, 0.2);
    assert_close(a.value().data(), &ra.w, 1e-7, 1e-6, "a");
    assert_close(b.value().data(), &rb.w, 1e-7, 1e-6, "b");
}

#[test]
fn params_without_grad_are_skipped_and_keep_their_own_step_count() {
    let p = param(&[1.0, 2.0]);
    let q = param(&[-1.0, 0.5]);
    let cfg = AdamWConfig {
        lr: 0.01,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(vec![p.clone(), q.clone()], cfg).unwrap();
    let mut rp = AdamRef::new(&[1.0, 2.0]);
    let mut rq = AdamRef::new(&[-1.0, 0.5]);
    for step in 0..4 {
        opt.zero_grad();
        assert!(p.grad().is_none() && q.grad().is_none());
        set_grad(&p, &[0.3, -0.1]);
        rp.step(&[0.3, -0.1], 0.01, 0.9, 0.999, 1e-8, 0.01);
        if step == 3 {
            set_grad(&q, &[2.0, 1.0]);
            rq.step(&[2.0, 1.0], 0.01, 0.9, 0.999, 1e-8, 0.01);
        }
        opt.step().unwrap();
        if step < 3 {
            assert!(opt.state(&q).is_none());
            assert_eq!(q.value().data(), &[-1.0, 0.5]);
        }
    }
    assert_eq!(opt.state(&p).unwrap().step, 4);
    // q's first step is bias-corrected as a first step (PyTorch keeps `step` per parameter).
    assert_eq!(opt.state(&q).unwrap().step, 1);
    assert_close(p.value().data(), &rp.w, 1e-7, 1e-6, "p");
    assert_close(q.value().data(), &rq.w, 1e-7, 1e-6, "q");
}

#[test]
fn bad_hyper_parameters_and_duplicates_are_errors() {
    let p = param(&[1.0]);
    for cfg in [
        AdamWConfig {
            beta1: 1.0,
            ..AdamWConfig::default()
        },
        AdamWConfig {
            beta2: -0.1,
            ..AdamWConfig::default()
        },
        AdamWConfig {
            lr: f64::NAN,
            ..AdamWConfig::default()
        },
        AdamWConfig {
            eps: -1.0,
            ..AdamWConfig::default()
        },
    ] {
        assert!(matches!(
            AdamW::new(vec![p.clone()], cfg),
            Err(Error::InvalidArgument { .. })
        ));
    }
    assert!(matches!(
        AdamW::new(vec![p.clone(), p.clone()], AdamWConfig::default()),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        AdamW::with_groups(
            vec![
                ParamGroup::new(vec![p.clone()]),
                ParamGroup::new(vec![p.clone()])
            ],
            AdamWConfig::default()
        ),
        Err(Error::InvalidArgument { .. })
    ));
    let mut opt = AdamW::new(vec![p.clone()], AdamWConfig::default()).unwrap();
    assert!(opt.set_lr(-1.0).is_err());
    assert!(
        Sgd::new(
            vec![p.clone()],
            SgdConfig {
                nesterov: true,
                ..SgdConfig::default()
            }
        )
        .is_err()
    );
    assert!(
        Sgd::new(
            vec![p],
            SgdConfig {
                momentum: 0.9,
                dampening: 0.1,
                nesterov: true,
                ..SgdConfig::default()
            }
        )
        .is_err()
    );
}

/// `torch.optim.SGD` on one parameter, in f64.
fn sgd_ref(w: &mut [f64], buf: &mut Option<Vec<f64>>, g: &[f32], cfg: &SgdConfig) {
    let mut d: Vec<f64> = g.iter().map(|&x| x as f64).collect();
    if cfg.weight_decay != 0.0 {
        for (d, w) in d.iter_mut().zip(w.iter()) {
            *d += cfg.weight_decay * w;
        }
    }
    if cfg.momentum != 0.0 {
        let b = match buf {
            None => buf.insert(d.clone()),
            Some(b) => {
                for (b, d) in b.iter_mut().zip(&d) {
                    *b = cfg.momentum * *b + (1.0 - cfg.dampening) * d;
                }
                b
            }
        };
        if cfg.nesterov {
            for (d, b) in d.iter_mut().zip(b.iter()) {
                *d += cfg.momentum * b;
            }
        } else {
            d = b.clone();
        }
    }
    for (w, d) in w.iter_mut().zip(&d) {
        *w -= cfg.lr * d;
    }
}

#[test]
fn sgd_matches_pytorch_formula() {
    let cases = [
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: true,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: 0.02,
            momentum: 0.8,
            dampening: 0.3,
            weight_decay: 0.1,
            nesterov: false,
        },
    ];
    for cfg in cases {
        let init = [0.7f32, -0.2, 1.5, -3.0];
        let p = param(&init);
        let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
        let mut w: Vec<f64> = init.iter().map(|&x| x as f64).collect();
        let mut buf = None;
        let mut rng = Rng::new(5);
        for _ in 0..6 {
            let g: Vec<f32> = (0..init.len()).map(|_| rng.normal() as f32).collect();
            set_grad(&p, &g);
            opt.step().unwrap();
            sgd_ref(&mut w, &mut buf, &g, &cfg);
            assert_close(p.value().data(), &w, 1e-6, 1e-5, &format!("{cfg:?}"));
        }
        match &buf {
            Some(b) => assert_close(opt.momentum_buffer(&p).unwrap(), b, 1e-6, 1e-5, "buf"),
            None => assert!(opt.momentum_buffer(&p).is_none()),
        }
    }
}

#[test]
fn sgd_first_momentum_step_is_plain_sgd() {
    // buf starts as the gradient itself (not (1 - dampening) g), as in PyTorch.
    let p = param(&[1.0]);
    let cfg = SgdConfig {
        lr: 0.5,
        momentum: 0.9,
        dampening: 0.5,
        ..SgdConfig::default()
    };
    let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
    set_grad(&p, &[2.0]);
    opt.step().unwrap();
    assert_eq!(p.value().data(), &[0.0]);
    set_grad(&p, &[2.0]);
    opt.step().unwrap();
    // buf = 0.9 * 2 + 0.5 * 2 = 2.8; w = 0 - 0.5 * 2.8.
    assert_close(p.value().data(), &[-1.4], 1e-6, 0.0, "w2");
}

#[test]
fn warmup_cosine_endpoints_and_midpoint() {
    let s = WarmupCosine::new(1e-3, 1e-5, 10, 110).unwrap();
    assert_eq!(s.lr_at(0), 0.0);
    assert!((s.lr_at(5) - 5e-4).abs() < 1e-15);
    assert!((s.lr_at(10) - 1e-3).abs() < 1e-15);
    assert!((s.lr_at(60) - (1e-3 + 1e-5) / 2.0).abs() < 1e-15);
    assert!((s.lr_at(110) - 1e-5).abs() < 1e-15);
    assert!((s.lr_at(100_000) - 1e-5).abs() < 1e-15);
    for step in 10..110 {
        assert!(s.lr_at(step + 1) <= s.lr_at(step));
    }
    for step in 0..10 {
        assert!(s.lr_at(step + 1) > s.lr_at(step));
    }
    // No warm-up: the peak at step 0.
    let s = WarmupCosine::new(0.1, 0.0, 0, 100).unwrap();
    assert_eq!(s.lr_at(0), 0.1);
    assert!(s.lr_at(100).abs() < 1e-15);
    // Hugging Face's cosine (min 0) at a quarter of the decay: 0.5 (1 + cos(pi/4)).
    let s = WarmupCosine::new(1.0, 0.0, 4, 104).unwrap();
    let want = 0.5 * (1.0 + (std::f64::consts::PI * 0.25).cos());
    assert!((s.lr_at(29) - want).abs() < 1e-12);
}

#[test]
fn warmup_linear_endpoints() {
    let s = WarmupLinear::new(2e-5, 0.0, 100, 1100).unwrap();
    assert_eq!(s.lr_at(0), 0.0);
    assert!((s.lr_at(50) - 1e-5).abs() < 1e-18);
    assert!((s.lr_at(100) - 2e-5).abs() < 1e-18);
    assert!((s.lr_at(600) - 1e-5).abs() < 1e-18);
    assert_eq!(s.lr_at(1100), 0.0);
    assert_eq!(s.lr_at(5000), 0.0);
    let s = WarmupLinear::new(1.0, 0.1, 0, 10).unwrap();
    assert_eq!(s.lr_at(0), 1.0);
    assert!((s.lr_at(5) - 0.55).abs() < 1e-12);
    assert!((s.lr_at(10) - 0.1).abs() < 1e-12);
    assert_eq!(ConstantLr(0.3).lr_at(12345), 0.3);
    assert!(WarmupLinear::new(1.0, 2.0, 0, 10).is_err());
    assert!(WarmupCosine::new(1.0, 0.0, 11, 10).is_err());
    assert!(WarmupCosine::new(f64::INFINITY, 0.0, 1, 10).is_err());
}

#[test]
fn clip_grad_norm_scales_like_pytorch() {
    let a = param(&[0.0, 0.0]);
    let b = param(&[0.0]);
    let frozen = param(&[0.0]); // no gradient: ignored
    set_grad(&a, &[3.0, 4.0]);
    set_grad(&b, &[12.0]);
    let params = [a.clone(), b.clone(), frozen.clone()];
    assert!((grad_norm(&params) - 13.0).abs() < 1e-12);
    // No clipping when the norm is already small enough: gradients unchanged.
    assert!((clip_grad_norm(&params, 100.0).unwrap() - 13.0).abs() < 1e-12);
    assert_eq!(a.grad().unwrap().data(), &[3.0, 4.0]);
    let total = clip_grad_norm(&params, 6.5).unwrap();
    assert!((total - 13.0).abs() < 1e-12);
    let coef = 6.5 / (13.0 + 1e-6);
    assert_close(
        a.grad().unwrap().data(),
        &[3.0 * coef, 4.0 * coef],
        1e-6,
        1e-6,
        "a",
    );
    assert_close(b.grad().unwrap().data(), &[12.0 * coef], 1e-6, 1e-6, "b");
    assert!((grad_norm(&params) - 6.5).abs() < 1e-5);
    assert!(frozen.grad().is_none());
}

#[test]
fn clip_grad_norm_rejects_non_finite_norms_and_leaves_grads_alone() {
    let a = param(&[0.0, 0.0]);
    set_grad(&a, &[f32::NAN, 1.0]);
    assert!(matches!(
        clip_grad_norm(std::slice::from_ref(&a), 1.0),
        Err(Error::NonFinite { .. })
    ));
    assert!(a.grad().unwrap().data()[0].is_nan());
    assert_eq!(a.grad().unwrap().data()[1], 1.0);
    set_grad(&a, &[f32::INFINITY, 1.0]);
    assert!(clip_grad_norm(std::slice::from_ref(&a), 1.0).is_err());
    assert!(clip_grad_norm(std::slice::from_ref(&a), -1.0).is_err());
}

/// f(w) = 0.5 * sum_i a_i (w_i - b_i)^2 through the autograd, minimised by `opt`.
fn minimise_quadratic(opt: &mut dyn Optimizer, w: &Param, steps: usize, lr: &dyn LrSchedule) {
    let a = Tensor::from_vec(vec![1.0, 4.0, 0.25, 2.0], &[4]).unwrap();
    let b = Tensor::from_vec(vec![1.0, -2.0, 3.0, 0.5], &[4]).unwrap();
    for step in 0..steps {
        opt.zero_grad();
        let g = Graph::new();
        let wv = g.param(w);
        let (av, bv) = (g.constant(a.clone()), g.constant(b.clone()));
        let d = g.sub(wv, bv).unwrap();
        let sq = g.mul(d, d).unwrap();
        let weighted = g.mul(av, sq).unwrap();
        let loss = g.sum_all(weighted).unwrap();
        let loss = g.mul_scalar(loss, 0.5).unwrap();
        g.backward(loss).unwrap();
        opt.set_lr(lr.lr_at(step)).unwrap();
        opt.step().unwrap();
    }
    let err = w
        .value()
        .data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-3, "did not converge: {:?}", w.value().data());
}

#[test]
fn optimisers_converge_on_a_quadratic() {
    let w = Param::new(Tensor::zeros(&[4]));
    let mut adam = AdamW::new(
        vec![w.clone()],
        AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
    )
    .unwrap();
    let schedule = WarmupCosine::new(0.2, 1e-4, 20, 600).unwrap();
    minimise_quadratic(&mut adam, &w, 600, &schedule);

    for nesterov in [false, true] {
        let w = Param::new(Tensor::zeros(&[4]));
        let mut sgd = Sgd::new(
            vec![w.clone()],
            SgdConfig {
                momentum: 0.9,
                nesterov,
                ..SgdConfig::default()
            },
        )
        .unwrap();
        minimise_quadratic(&mut sgd, &w, 300, &ConstantLr(0.1));
    }
}

/// Values printed by PyTorch 2.11 (CPU, `foreach=False`) for these exact inputs: four steps with
/// the learning rate changed before each, as `param_groups[0]["lr"] = lr` does.
mod recorded_pytorch {
    use super::*;

    const W0: [f32; 5] = [0.5, -1.25, 2.0, 0.0, -0.3];
    const G: [[f32; 5]; 4] = [
        [0.1, -0.2, 0.3, -0.4, 0.5],
        [-1.5, 0.25, 0.0, 2.0, -0.75],
        [0.01, 0.02, -0.03, 0.04, -0.05],
        [3.0, -1.0, 0.5, -0.25, 0.125],
    ];
    const LRS: [f64; 4] = [0.05, 0.04, 0.03, 0.02];

    fn run(opt: &mut dyn Optimizer, p: &Param) -> Vec<f32> {
        for (g, &lr) in G.iter().zip(&LRS) {
            set_grad(p, g);
            opt.set_lr(lr).unwrap();
            opt.step().unwrap();
        }
        p.value().data().to_vec()
    }

    fn check(got: &[f32], torch: &[f64], what: &str) {
        // f32 results: a few units in the last place of slack for a different summation order.
        assert_close(got, torch, 1e-7, 1e-6, what);
    }

    #[test]
    fn adamw() {
        let p = param(&W0);
        let cfg = AdamWConfig {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(vec![p.clone()], cfg).unwrap();
        let torch = [
            0.48079055547714233,
            -1.1842889785766602,
            1.8685449361801147,
            0.005239874590188265,
            -0.32664093375205994,
        ];
        check(
            &run(&mut opt, &p),
            &torch,
            "AdamW(betas=(0.9, 0.99), wd=0.1)",
        );

        let p = param(&W0);
        let mut opt = AdamW::new(vec![p.clone()], AdamWConfig::default()).unwrap();
        let torch = [
            0.48683568835258484,
            -1.199521541595459,
            1.8931330442428589,
            0.005478183273226023,
            -0.3307549059391022,
        ];
        check(&run(&mut opt, &p), &torch, "AdamW(defaults)");
    }

    #[test]
    fn sgd() {
        let cases = [
            (
                SgdConfig {
                    lr: 0.05,
                    momentum: 0.9,
                    weight_decay: 0.01,
                    ..SgdConfig::default()
                },
                [
                    0.550413966178894,
                    -1.223347544670105,
                    1.948488473892212,
                    -0.11334452033042908,
                    -0.2992844879627228,
                ],
            ),
            (
                SgdConfig {
                    lr: 0.05,
                    momentum: 0.9,
                    weight_decay: 0.01,
                    nesterov: true,
                    ..SgdConfig::default()
                },
                [
                    0.5392938256263733,
                    -1.2048823833465576,
                    1.9267934560775757,
                    -0.158146470785141,
                    -0.29490360617637634,
                ],
            ),
            (
                SgdConfig {
                    lr: 0.05,
                    momentum: 0.8,
                    dampening: 0.3,
                    weight_decay: 0.1,
                    nesterov: false,
                },
                [
                    0.5164852738380432,
                    -1.2015738487243652,
                    1.918626308441162,
                    -0.06069463491439819,
                    -0.30900299549102783,
                ],
            ),
        ];
        for (cfg, torch) in cases {
            let p = param(&W0);
            let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
            check(&run(&mut opt, &p), &torch, &format!("{cfg:?}"));
        }
    }

    #[test]
    fn clip_grad_norm_() {
        let a = param(&[0.0, 0.0]);
        let b = param(&[0.0, 0.0, 0.0]);
        set_grad(&a, &[0.3, -1.7]);
        set_grad(&b, &[2.5, 0.0, -0.9]);
        let total = clip_grad_norm(&[a.clone(), b.clone()], 1.0).unwrap();
        assert!((total - 3.168596029281616).abs() < 1e-6);
        check(
            a.grad().unwrap().data(),
            &[0.09467913210391998, -0.5365150570869446],
            "a.grad",
        );
        check(
            b.grad().unwrap().data(),
            &[0.788992702960968, 0.0, -0.28403738141059875],
            "b.grad",
        );
    }
}
