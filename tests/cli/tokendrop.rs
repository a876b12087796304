//! `lithe tokendrop`, `lithe eval` on its output, and the demo's `tokendrop` stage.

use super::{
    arg, demo_against_baseline, json_lines, lithe, rejects_each, scratch, trained_digits_vit_with,
};

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
    // f32 full, f32 dropping, int8 full, int8 dropping.
    assert_eq!(rows.len(), 4);
    let (f, d) = (rows[0].as_object().unwrap(), rows[1].as_object().unwrap());
    for (r, (model, engine)) in rows.iter().zip([
        ("full", "f32"),
        ("tokendrop", "f32"),
        ("full", "int8"),
        ("tokendrop", "int8"),
    ]) {
        assert_eq!(
            (r["model"].as_str(), r["engine"].as_str()),
            (Some(model), Some(engine))
        );
        assert_eq!(
            r.as_object().unwrap().keys().collect::<Vec<_>>(),
            f.keys().collect::<Vec<_>>()
        );
        assert!(r["images_per_s"].as_f64().unwrap() > 0.0);
    }
    // int8 keeps the accuracy of f32 within a few points, and drops the same token counts.
    for i in [2, 3] {
        let (a8, a32) = (
            rows[i]["accuracy"].as_f64().unwrap(),
            rows[i - 2]["accuracy"].as_f64().unwrap(),
        );
        assert!((a8 - a32).abs() < 0.05, "row {i}: int8 {a8}, f32 {a32}");
        assert_eq!(rows[i]["tokens"], rows[i - 2]["tokens"]);
    }
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
    // It lowers to int8 (dynamic scales only), and `eval --int8` reads the file.
    let int8 = dir.join("int8");
    let q = json_lines(&lithe(&[
        "quantize",
        "--model",
        arg(&out),
        "--mode",
        "dynamic",
        "--calib",
        "digits",
        "--out",
        arg(&int8),
        "--json",
    ]));
    assert_eq!(q[0]["model"], "dynamicvit");
    assert_eq!(q[0]["fp32_accuracy"].as_f64(), Some(da));
    let qa = q[0]["accuracy"].as_f64().unwrap();
    assert!((qa - da).abs() < 0.05, "int8 {qa}, f32 {da}");
    let e8 = json_lines(&lithe(&[
        "eval",
        "--model",
        arg(&int8),
        "--int8",
        "--data",
        "digits",
        "--json",
    ]));
    assert_eq!(e8[0]["accuracy"].as_f64(), Some(qa));
    assert!(
        !lithe(&[
            "quantize",
            "--model",
            arg(&out),
            "--calib",
            "digits",
            "--out",
            arg(&int8)
        ])
        .status
        .success(),
        "ptq of a DynamicViT was accepted"
    );
    // Bad input is an error: a keep ratio outside (0, 1], a stage past the last block.
    let base = [
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
    rejects_each(
        &base,
        &[&["--keep", "0"], &["--keep", "1.5"], &["--stages", "1,9"]],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_tokendrop_stage_keeps_accuracy() {
    let (bp, dp, ba, da) = demo_against_baseline("tokendrop");
    // The backbone's parameters plus the predictors'.
    assert!(dp > bp, "tokendrop {dp} params, fp32 {bp}");
    assert!(da >= ba - 0.1, "tokendrop {da}, fp32 {ba}");
}
