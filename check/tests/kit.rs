//! The kit checked against hand-computed values, its failure messages, and its strategies'
//! coverage of the hard cases.

use lithe_check::strategy::{Values, dim, f32_value, i8_value};
use lithe_check::{
    Compare, Exact, Measures, Stage, Tolerance, TraceError, Traced, assert_close, check_equivalent,
    ulp_distance,
};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

#[test]
fn measures_match_hand_computation() {
    let reference = [1.0f32, -2.0, 0.0, 4.0];
    let fast = [1.0f32, -2.5, 0.25, 4.0];
    let m = Measures::new(&fast, &reference, 0.5, None);
    assert_eq!(m.max_abs, 0.5);
    assert_eq!(m.max_abs_at, Some(1));
    // |0.25 - 0| / max(0, 0.5) = 0.5 ties with 0.5 / 2 = 0.25: the first maximum is index 2.
    assert_eq!(m.max_rel, 0.5);
    assert_eq!(m.max_rel_at, Some(2));
    let frob = ((0.25f64 + 0.0625) / 21.0).sqrt();
    assert!(
        (m.rel_frobenius - frob).abs() < 1e-15,
        "{}",
        m.rel_frobenius
    );
    let dot = 1.0 + 5.0 + 16.0;
    let cos = dot / ((1.0f64 + 6.25 + 0.0625 + 16.0).sqrt() * 21f64.sqrt());
    assert!((m.cosine - cos).abs() < 1e-15);
    assert_eq!(m.nonfinite_mismatches, 0);
}

#[test]
fn ulps_count_representable_steps() {
    assert_eq!(ulp_distance(1.0, f32::from_bits(1.0f32.to_bits() + 3)), 3);
    assert_eq!(ulp_distance(0.0, f32::from_bits(1)), 1);
    assert_eq!(ulp_distance(f32::MAX, f32::INFINITY), 1);
    assert_eq!(ulp_distance(f32::NAN, 1.0), u64::MAX);
}

#[test]
fn nonfinite_values_must_agree() {
    let tol = Tolerance::abs(1.0);
    // NaN where the reference has NaN, and the same infinity, agree.
    let ok = [f32::NAN, f32::INFINITY, 1.0];
    assert!(Compare::new(&ok, &ok).check(&tol).is_ok());
    // A NaN the reference does not have is reported, at its index, whatever the bounds.
    let err = Compare::new(&[1.0, f32::NAN, 3.0], &[1.0, 2.0, 3.0])
        .check(&tol)
        .unwrap_err();
    assert_eq!(err.worst().unwrap().index, 1);
    assert!(err.to_string().contains("non-finite"), "{err}");
    let err = Compare::new(&[f32::NEG_INFINITY], &[f32::INFINITY])
        .check(&tol)
        .unwrap_err();
    assert_eq!(err.worst().unwrap().fast, "-inf");
}

#[test]
fn a_failure_prints_the_worst_element_and_its_index() {
    let reference: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let mut fast = reference.clone();
    fast[7] += 0.5; // [1, 3] in a 3x4 matrix
    fast[2] += 0.01;
    let err = Compare::new(&fast, &reference)
        .shape(&[3, 4])
        .context("sgemm avx2 m=3 n=4")
        .check(&Tolerance::abs(1e-3))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("sgemm avx2 m=3 n=4: "), "{text}");
    assert!(
        text.contains("max abs error 5.000e-1 > 1.000e-3; worst element at [1, 3] (flat index 7): fast 7.5, reference 7.0"),
        "{text}"
    );
    // The panicking form carries the same message.
    let panic = std::panic::catch_unwind(|| {
        assert_close(&fast, &reference, &Tolerance::abs(1e-3));
    })
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("worst element at index 7: fast 7.5, reference 7.0"),
        "{message}"
    );
}

#[test]
fn each_bound_points_at_its_own_worst_element() {
    // Index 0 has the largest absolute error, index 1 the largest relative one.
    let reference = [100.0f32, 0.01];
    let fast = [101.0f32, 0.02];
    let err = Compare::new(&fast, &reference)
        .check(&Tolerance::abs(0.1).and_rel(0.05, 1e-6))
        .unwrap_err();
    let at: Vec<usize> = err
        .failures
        .iter()
        .map(|(_, w)| w.as_ref().unwrap().index)
        .collect();
    assert_eq!(at, vec![0, 1]);
    // allclose: |f - r| <= atol + rtol |r| fails only at index 1.
    let err = Compare::new(&fast, &reference)
        .check(&Tolerance::allclose(1e-3, 0.02))
        .unwrap_err();
    assert_eq!(err.worst().unwrap().index, 1);
    assert!(
        Compare::new(&fast, &reference)
            .check(&Tolerance::allclose(0.02, 0.01))
            .is_ok()
    );
}

#[test]
fn scaled_frobenius_uses_the_given_norm() {
    // A sum that cancels to nearly 0: relative to the reference the error is large, relative
    // to the magnitude of its terms it is tiny.
    let (fast, reference, terms) = ([1.1e-6f32], [1e-6f32], [2.0f32]);
    let tol = Tolerance::frobenius(1e-6);
    assert!(Compare::new(&fast, &reference).check(&tol).is_err());
    let m = Compare::new(&fast, &reference)
        .scale(&terms)
        .check(&tol)
        .unwrap();
    assert!((m.rel_frobenius - 5e-8).abs() < 1e-9, "{}", m.rel_frobenius);
}

#[test]
fn lengths_and_shapes_are_checked() {
    let err = Compare::new(&[1.0, 2.0], &[1.0])
        .check(&Tolerance::EXACT)
        .unwrap_err();
    assert!(
        err.to_string().contains("fast has 2 elements, reference 1"),
        "{err}"
    );
    let err = Compare::new(&[1.0, 2.0], &[1.0, 2.0])
        .shape(&[3])
        .check(&Tolerance::EXACT)
        .unwrap_err();
    assert!(
        err.to_string().contains("does not hold 2 elements"),
        "{err}"
    );
}

#[test]
fn exact_counts_differences_and_names_the_first() {
    let err = Exact::new(&[0i32, 5, 9, 7], &[0, 6, 9, 8])
        .context("i32 accumulators")
        .check()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("2 element(s) differ; first; worst element at index 1: fast 5, reference 6"),
        "{text}"
    );
    assert!(Exact::new(&[1u8, 2], &[1, 2]).check().is_ok());
}

/// A toy engine: `layer.i` doubles its input; `bug_at` adds an error at one layer.
struct Doubler {
    label: &'static str,
    layers: usize,
    bug_at: Option<usize>,
    noise: f32,
}

impl Traced<Vec<f32>> for Doubler {
    fn label(&self) -> String {
        self.label.to_owned()
    }

    fn trace(&mut self, sample: &Vec<f32>) -> Result<Vec<Stage>, TraceError> {
        if sample.is_empty() {
            return Err("empty sample".into());
        }
        let mut x = sample.clone();
        let mut stages = vec![Stage::new("embeddings", x.clone())];
        for i in 0..self.layers {
            x.iter_mut().for_each(|v| *v = *v * 2.0 + self.noise);
            if self.bug_at == Some(i) {
                x[0] += 1.0;
            }
            stages.push(Stage::new(format!("layer.{i}"), x.clone()));
        }
        Ok(stages)
    }
}

#[test]
fn equivalence_names_the_first_layer_out_of_tolerance() {
    let samples = vec![vec![1.0f32, 2.0, 3.0], vec![-1.0, 0.5, 0.25]];
    let mut reference = Doubler {
        label: "f32",
        layers: 4,
        bug_at: None,
        noise: 0.0,
    };
    let mut fast = Doubler {
        label: "int8",
        layers: 4,
        bug_at: Some(2),
        noise: 1e-4,
    };
    let tol = Tolerance::frobenius(1e-2);
    let report = check_equivalent(&mut fast, &mut reference, &samples, &tol).unwrap();
    assert!(!report.passed());
    assert_eq!(report.stages.len(), 5);
    assert_eq!(report.first_failure().unwrap().name, "layer.2");
    assert_eq!(report.largest_jump().unwrap().0.name, "layer.2");
    // The small per-layer noise stays within tolerance before the bug.
    assert!(report.stages[..3].iter().all(|s| s.failure.is_none()));
    let text = report.to_string();
    assert!(
        text.contains("first stage out of tolerance: layer.2 (sample 0)"),
        "{text}"
    );
    assert!(text.contains("worst element at index 0"), "{text}");

    // Without the bug the same engines are equivalent, and assert_equivalent returns the report.
    fast.bug_at = None;
    let report = lithe_check::assert_equivalent(&mut fast, &mut reference, &samples, &tol);
    assert!(report.passed() && report.to_string().contains("every stage within tolerance"));

    // A failing trace is an error that names the engine and the sample.
    let err = check_equivalent(&mut fast, &mut reference, &[vec![]], &tol).unwrap_err();
    assert_eq!(
        err.to_string(),
        "engine int8 failed on sample 0: empty sample"
    );
}

#[test]
fn stages_traced_by_one_engine_only_are_listed() {
    let samples = vec![vec![1.0f32]];
    let mut deep = Doubler {
        label: "deep",
        layers: 3,
        bug_at: None,
        noise: 0.0,
    };
    let mut shallow = Doubler {
        label: "shallow",
        layers: 2,
        bug_at: None,
        noise: 0.0,
    };
    let report = check_equivalent(&mut deep, &mut shallow, &samples, &Tolerance::EXACT).unwrap();
    assert_eq!(report.uncompared, vec!["layer.2".to_owned()]);
    assert_eq!(report.stages.len(), 3);
    assert!(report.passed());
}

fn draws<T>(strategy: impl Strategy<Value = T>, n: usize) -> Vec<T> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

#[test]
fn dims_hit_one_primes_and_tile_edges() {
    let d = draws(dim(200, &[16, 48]), 600);
    assert!(d.iter().all(|v| (1..=200).contains(v)));
    for want in [1, 15, 16, 17, 47, 49, 31] {
        assert!(d.contains(&want), "{want} never drawn");
    }
    // And values that are none of those.
    assert!(d.iter().any(|&v| v > 100 && v != 127));
}

#[test]
fn float_values_reach_the_hard_cases_only_when_asked() {
    let plain = draws(f32_value(Values::unit()), 2000);
    assert!(plain.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    let hard = draws(f32_value(Values::hard()), 2000);
    assert!(hard.iter().all(|v| v.is_finite()));
    assert!(hard.iter().any(|v| *v == 0.0 && v.is_sign_negative()));
    assert!(hard.iter().any(|v| v.is_subnormal()));
    assert!(hard.iter().any(|v| v.abs() > 1e38));
    let all = draws(f32_value(Values::hard().with_nonfinite()), 2000);
    assert!(all.iter().any(|v| v.is_nan()));
    assert!(all.contains(&f32::INFINITY));
    assert!(all.contains(&f32::NEG_INFINITY));
}

#[test]
fn int8_values_saturate_often() {
    let v = draws(i8_value(false), 1000);
    assert!(v.iter().all(|&x| x != -128));
    let saturated = v.iter().filter(|&&x| x.abs() == 127).count();
    assert!(saturated > 50, "{saturated} of 1000 at ±127");
    assert!(draws(i8_value(true), 1000).contains(&-128));
}
