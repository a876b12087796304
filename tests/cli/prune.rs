//! `lithe prune` and `lithe ofa` on models trained in the test: the rows' keys and promises,
//! saved models that `lithe eval` reads back, and refused input.

use super::{json_lines, lithe};

fn s(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A depth-2, 4-head ViT trained for a few epochs on the shipped digits.
fn digits_vit(dir: &std::path::Path) -> String {
    let model = s(&dir.join("vit"));
    let out = lithe(&[
        "train", "vit", "--data", "digits", "--epochs", "4", "--width", "32", "--depth", "2",
        "--heads", "4", "--patch", "4", "--out", &model, "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    model
}

fn eval_accuracy(model: &str) -> f64 {
    let rows = json_lines(&lithe(&[
        "eval", "--model", model, "--data", "digits", "--json",
    ]));
    rows[0]["accuracy"].as_f64().unwrap()
}

/// Half the heads and neurons removed and re-distilled: the row lists the smaller shape, both
/// engines' accuracies and latencies and the speedups; the saved model is the reported one.
#[test]
fn prune_shrinks_a_vit_and_reports_speedups() {
    let dir = super::scratch("prune-vit");
    let model = digits_vit(&dir);
    let out_dir = s(&dir.join("pruned"));
    let rows = json_lines(&lithe(&[
        "prune",
        "--model",
        &model,
        "--data",
        "digits",
        "--heads",
        "0.5",
        "--ffn",
        "0.5",
        "--redistill",
        "--epochs",
        "3",
        "--out",
        &out_dir,
        "--json",
    ]));
    assert_eq!(rows.len(), 3);
    let (orig, before, pruned) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(orig["model"], "original");
    assert_eq!(
        (orig["heads"].as_u64(), orig["ffn"].as_u64()),
        (Some(4), Some(64))
    );
    assert_eq!(
        (pruned["heads"].as_u64(), pruned["ffn"].as_u64()),
        (Some(2), Some(32))
    );
    assert_eq!(before["params"], pruned["params"]);
    assert!(pruned["params"].as_u64() < orig["params"].as_u64());
    for key in [
        "accuracy",
        "int8_accuracy",
        "f32_ms",
        "int8_ms",
        "f32_speedup",
        "int8_speedup",
    ] {
        assert!(pruned[key].as_f64().unwrap() > 0.0, "{key}: {pruned}");
    }
    let acc = pruned["accuracy"].as_f64().unwrap();
    assert!(acc > 0.5, "{pruned}");
    assert!((eval_accuracy(&out_dir) - acc).abs() < 1e-4);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pruned/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["attention_head_size"], 8);
}

/// Magnitude pruning reports the sparsity reached.
#[test]
fn prune_sparsity_reaches_the_target() {
    let dir = super::scratch("prune-sparsity");
    let model = digits_vit(&dir);
    let rows = json_lines(&lithe(&[
        "prune",
        "--model",
        &model,
        "--data",
        "digits",
        "--sparsity",
        "0.5",
        "--epochs",
        "2",
        "--out",
        &s(&dir.join("sparse")),
        "--json",
    ]));
    assert_eq!(rows.len(), 2);
    let sparsity = rows[1]["sparsity"].as_f64().unwrap();
    assert!((sparsity - 0.5).abs() < 0.01, "{}", rows[1]);
}

/// `lithe ofa`: one row before elastic training, one per sub-network of the grid, narrower
/// ones smaller; the half-width model is saved and evaluates as reported.
#[test]
fn ofa_reports_every_subnet_and_saves_the_half_width_one() {
    let dir = super::scratch("ofa");
    let model = digits_vit(&dir);
    let out_dir = dir.join("ofa");
    let rows = json_lines(&lithe(&[
        "ofa",
        "--model",
        &model,
        "--data",
        "digits",
        "--widths",
        "1,0.5",
        "--depths",
        "1,0.5",
        "--epochs",
        "3",
        "--out",
        &s(&out_dir),
        "--json",
    ]));
    let names: Vec<&str> = rows.iter().map(|r| r["subnet"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "before elastic training",
            "w1-d1",
            "w0.5-d1",
            "w1-d0.5",
            "w0.5-d0.5"
        ]
    );
    let params: Vec<u64> = rows.iter().map(|r| r["params"].as_u64().unwrap()).collect();
    assert_eq!(params[0], params[1]);
    assert!(params[2] < params[1] && params[4] < params[2] && params[4] < params[3]);
    assert_eq!(rows[1]["of_full"].as_f64(), Some(1.0));
    let half = rows[2]["accuracy"].as_f64().unwrap();
    assert!((eval_accuracy(&s(&out_dir.join("half-width"))) - half).abs() < 1e-4);
}

#[test]
fn prune_and_ofa_refuse_bad_input() {
    let dir = super::scratch("prune-bad");
    let model = digits_vit(&dir);
    let out = s(&dir.join("x"));
    for args in [
        vec![
            "prune", "--model", &model, "--data", "digits", "--heads", "1.0", "--out", &out,
        ],
        vec![
            "prune", "--model", &model, "--data", "digits", "--ffn", "-0.5", "--out", &out,
        ],
        vec![
            "prune",
            "--model",
            &model,
            "--data",
            "digits",
            "--sparsity",
            "1.5",
            "--out",
            &out,
        ],
        vec!["prune", "--model", "no-such-dir", "--out", &out],
        vec![
            "ofa", "--model", &model, "--data", "digits", "--widths", "0", "--out", &out,
        ],
        vec![
            "ofa", "--model", &model, "--data", "digits", "--depths", "2", "--out", &out,
        ],
    ] {
        let o = lithe(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(!o.stderr.is_empty(), "{args:?}: no message");
    }
}

/// The demo's `prune-structured` and `ofa-half` stages: half-width models with the demo's row
/// schema, smaller than the baseline and close to its accuracy.
#[test]
fn demo_prune_and_ofa_stages_are_smaller_and_close_to_the_baseline() {
    let rows = json_lines(&lithe(&[
        "demo",
        "--quick",
        "--stages",
        "fp32,prune-structured,ofa-half",
        "--json",
    ]));
    assert_eq!(rows.len(), 3);
    let keys = |r: &serde_json::Value| r.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    for (row, stage) in rows[1..].iter().zip(["prune-structured", "ofa-half"]) {
        assert_eq!(row["stage"], stage);
        assert_eq!(keys(row), keys(&rows[0]));
        let (p, p0) = (
            row["params"].as_u64().unwrap(),
            rows[0]["params"].as_u64().unwrap(),
        );
        assert!(p * 5 < p0 * 3, "{stage}: {p} params, fp32 {p0}");
        let (a, a0) = (
            row["accuracy"].as_f64().unwrap(),
            rows[0]["accuracy"].as_f64().unwrap(),
        );
        assert!(a >= a0 - 0.05, "{stage}: {a} vs fp32 {a0}");
    }
}
