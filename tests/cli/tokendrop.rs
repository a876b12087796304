//! `lithe tokendrop`, `lithe eval` on its output, and the demo's `tokendrop` stage.

use super::{arg, json_lines, lithe, scratch, trained_digits_vit_with};

#[test]
fn tokendrop_trains_predictors_and_eval_reads_the_model() {
    let dir = scratch("tokendrop");
    let model = dir.join("vit");
    // Patch 2 on 8x8 digits: 16 patch tokens, 4 blocks (stages before blocks 1, 2, 3).
    trained_digits_vit_with(&model, 2, 4);
    let out = dir.join("dynamic");
    let rows = json_lines(&lithe(&[
        "tokendrop",
        "--model",
        arg(&model),
        "--data",
        "digits",
        "--keep",
        "0.7",
        "--epochs",
        "3",
        "--lr",
        "2e-3",
        "--backbone-lr-scale",
        "0.1",
        "--threads",
        "1",
        "--rounds",
        "1",
        "--out",
        arg(&out),
        "--json",
    ]));
    assert_eq!(rows.len(), 2);
    let (f, d) = (rows[0].as_object().unwrap(), rows[1].as_object().unwrap());
    assert_eq!(
        f.keys().collect::<Vec<_>>(),
        [
            "model",
            "engine",
            "keep",
            "tokens",
            "params",
            "accuracy",
            "drop_pt",
            "images_per_s",
            "speedup",
            "train_s"
        ]
    );
    assert_eq!(
        (f["model"].as_str(), d["model"].as_str()),
        (Some("full"), Some("tokendrop"))
    );
    // ceil(0.7 * 16) = 12, ceil(0.49 * 16) = 8, ceil(0.343 * 16) = 6 patch tokens kept.
    assert_eq!(f["tokens"], serde_json::json!([16]));
    assert_eq!(d["tokens"], serde_json::json!([12, 8, 6]));
    let (fa, da) = (
        f["accuracy"].as_f64().unwrap(),
        d["accuracy"].as_f64().unwrap(),
    );
    // 2x2 patches make a weaker digits model than 4x4 ones (about 0.75 after 8 epochs).
    assert!(fa > 0.6 && da > fa - 0.1, "full {fa}, token dropping {da}");
    let drop = d["drop_pt"].as_f64().unwrap();
    assert!((drop - (fa - da) * 100.0).abs() < 0.02, "drop_pt {drop}");
    assert!(d["speedup"].as_f64().unwrap() > 0.0);
    // The saved model loads back and scores the same.
    let eval = json_lines(&lithe(&[
        "eval",
        "--model",
        arg(&out),
        "--data",
        "digits",
        "--json",
    ]));
    assert_eq!(eval[0]["model"], "dynamicvit");
    assert_eq!(eval[0]["accuracy"].as_f64(), Some(da));
    // Bad input is an error: a keep ratio outside (0, 1], a stage past the last block.
    for extra in [["--keep", "0"], ["--keep", "1.5"], ["--stages", "1,9"]] {
        let mut args = vec![
            "tokendrop",
            "--model",
            arg(&model),
            "--data",
            "digits",
            "--epochs",
            "1",
            "--out",
            arg(&dir),
        ];
        args.extend(extra);
        let out = lithe(&args);
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("error"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_tokendrop_stage_keeps_accuracy() {
    let rows = json_lines(&lithe(&[
        "demo",
        "--quick",
        "--stages",
        "fp32,tokendrop",
        "--json",
    ]));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["stage"], "tokendrop");
    assert_eq!(
        rows[1].as_object().unwrap().keys().collect::<Vec<_>>(),
        rows[0].as_object().unwrap().keys().collect::<Vec<_>>()
    );
    // The backbone's parameters plus the predictors'.
    let (bp, dp) = (
        rows[0]["params"].as_u64().unwrap(),
        rows[1]["params"].as_u64().unwrap(),
    );
    assert!(dp > bp, "tokendrop {dp} params, fp32 {bp}");
    assert_eq!(rows[1]["bytes"].as_u64(), Some(4 * dp));
    let (ba, da) = (
        rows[0]["accuracy"].as_f64().unwrap(),
        rows[1]["accuracy"].as_f64().unwrap(),
    );
    assert!(da >= ba - 0.1, "tokendrop {da}, fp32 {ba}");
    assert!(rows[1]["throughput"].as_f64().unwrap() > 0.0);
}
