//! The CLI's promises to scripts: JSON rows with the documented keys, and errors on bad input.

use std::process::Command;

mod distill;
mod prune;
mod tokendrop;

fn lithe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lithe"))
        .args(args)
        .output()
        .expect("run lithe")
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "lithe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

#[test]
fn bench_gemm_prints_one_json_row_per_shape() {
    let out = lithe(&[
        "bench",
        "gemm",
        "--dtype",
        "f32",
        "--shape",
        "17x33x65,8x8x8",
        "--threads",
        "1",
        "--budget-ms",
        "20",
        "--json",
    ]);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 2);
    for (row, shape) in rows.iter().zip(["17x33x65", "8x8x8"]) {
        assert_eq!(row["dtype"], "f32");
        assert_eq!(row["shape"], shape);
        assert_eq!(row["threads"], 1);
        assert!(row["isa"].is_string());
        assert!(row["median_us"].as_f64().unwrap() > 0.0);
        assert!(row["gflops"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_gemm_rejects_bad_shapes_and_isas() {
    for args in [
        vec!["--shape", "12x0x4"],
        vec!["--shape", "12x4"],
        vec!["--isa", "sse9"],
    ] {
        let mut all = vec!["bench", "gemm", "--budget-ms", "1"];
        all.extend(args);
        let out = lithe(&all);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("error"));
    }
}

#[test]
fn demo_quick_trains_to_real_accuracy_and_prints_the_row_schema() {
    let rows = json_lines(&lithe(&[
        "demo",
        "--quick",
        "--stages",
        "fp32,int8-ptq,int8-qat",
        "--json",
    ]));
    assert_eq!(rows.len(), 3);
    let row = rows[0].as_object().unwrap();
    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "stage",
            "params",
            "bytes",
            "accuracy",
            "latency_ms",
            "throughput"
        ]
    );
    assert_eq!(row["stage"], "fp32");
    assert_eq!(
        row["bytes"].as_u64().unwrap(),
        4 * row["params"].as_u64().unwrap()
    );
    let accuracy = row["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "digits test accuracy {accuracy}");
    // The int8 stages: same schema, the same parameters in a smaller file, close accuracy.
    for (row, stage) in rows[1..].iter().zip(["int8-ptq", "int8-qat"]) {
        let row = row.as_object().unwrap();
        assert_eq!(
            row.keys().collect::<Vec<_>>(),
            rows[0].as_object().unwrap().keys().collect::<Vec<_>>()
        );
        assert_eq!(row["stage"], stage);
        assert_eq!(row["params"], rows[0]["params"]);
        let bytes = row["bytes"].as_u64().unwrap();
        assert!(
            bytes > 0 && bytes < rows[0]["bytes"].as_u64().unwrap(),
            "{stage}: {bytes} bytes"
        );
        let acc = row["accuracy"].as_f64().unwrap();
        assert!(
            acc >= accuracy - 0.05,
            "{stage}: accuracy {acc} vs fp32 {accuracy}"
        );
        assert!(row["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(row["throughput"].as_f64().unwrap() > 0.0);
    }
    assert!(!lithe(&["demo", "--stages", "nope"]).status.success());
}

/// A fresh scratch folder.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lithe-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn arg(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// A small ViT trained for a few epochs on the digits, saved as `lithe train` saves a run.
fn trained_digits_vit(dir: &std::path::Path) {
    trained_digits_vit_of_depth(dir, 1);
}

/// [`trained_digits_vit`] with `depth` blocks.
fn trained_digits_vit_of_depth(dir: &std::path::Path, depth: usize) {
    trained_digits_vit_with(dir, 4, depth);
}

/// A ViT with patch side `patch` and `depth` blocks trained on the shipped digits, saved in `dir`.
fn trained_digits_vit_with(dir: &std::path::Path, patch: usize, depth: usize) {
    use lithe::nn::{Vit, VitConfig};
    let config = VitConfig {
        image_size: 8,
        patch_size: patch,
        num_channels: 1,
        hidden_size: 32,
        num_hidden_layers: depth,
        num_attention_heads: 4,
        intermediate_size: 64,
        num_labels: 10,
        ..VitConfig::default()
    };
    let vit = Vit::new(&config, &mut lithe::Rng::new(1)).unwrap();
    let (train, test) = lithe::train::digits_split(42).unwrap();
    let opts = lithe::train::TrainOptions {
        epochs: 8,
        batch_size: 64,
        lr: 3e-3,
        ..Default::default()
    };
    lithe::train::train_vit(&vit, &train, &test, &opts, &mut |_| {}).unwrap();
    lithe::train::save_run(dir, &vit, &config, None).unwrap();
}

#[test]
fn minivit_compresses_a_digits_vit_and_eval_reads_the_student() {
    let dir = scratch("minivit");
    let teacher = dir.join("teacher");
    trained_digits_vit_of_depth(&teacher, 2);
    let student = dir.join("student");
    let rows = json_lines(&lithe(&[
        "minivit",
        "--teacher",
        arg(&teacher),
        "--data",
        "digits",
        "--share",
        "2",
        "--epochs",
        "4",
        "--lr",
        "2e-3",
        "--threads",
        "1",
        "--out",
        arg(&student),
        "--json",
    ]));
    assert_eq!(rows.len(), 2);
    let (t, s) = (rows[0].as_object().unwrap(), rows[1].as_object().unwrap());
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        [
            "model",
            "share",
            "transforms",
            "distill",
            "params",
            "param_ratio",
            "accuracy",
            "drop_pt"
        ]
    );
    assert_eq!(
        (t["model"].as_str(), s["model"].as_str()),
        (Some("teacher"), Some("minivit"))
    );
    assert_eq!(
        (s["share"].as_u64(), s["transforms"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(s["distill"].as_bool(), Some(true));
    // The two blocks share one set of weights: the student is ~1.7x smaller.
    let (tp, sp) = (t["params"].as_u64().unwrap(), s["params"].as_u64().unwrap());
    assert!(sp * 3 < tp * 2, "student {sp} params, teacher {tp}");
    let ratio = s["param_ratio"].as_f64().unwrap();
    assert!(
        (ratio - tp as f64 / sp as f64).abs() < 1e-3,
        "ratio {ratio}"
    );
    let (ta, sa) = (
        t["accuracy"].as_f64().unwrap(),
        s["accuracy"].as_f64().unwrap(),
    );
    assert!(ta > 0.8 && sa > ta - 0.1, "teacher {ta}, student {sa}");
    // The saved student loads back and scores the same.
    let eval = json_lines(&lithe(&[
        "eval",
        "--model",
        arg(&student),
        "--data",
        "digits",
        "--json",
    ]));
    assert_eq!(eval[0]["model"], "minivit");
    assert_eq!(eval[0]["accuracy"].as_f64(), Some(sa));
    // Bad input is an error: an even kernel, a folder that holds no ViT.
    let base = [
        "minivit",
        "--teacher",
        arg(&teacher),
        "--data",
        "digits",
        "--epochs",
        "1",
        "--out",
        arg(&dir),
    ];
    rejects_each(&base, &[&["--kernel", "2"], &["--teacher", arg(&student)]]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_minivit_stage_is_smaller_and_close_to_the_baseline() {
    let (bp, sp, ba, sa) = demo_against_baseline("minivit");
    assert!(sp * 3 < bp * 2, "minivit {sp} params, fp32 {bp}");
    assert!(sa >= ba - 0.05, "minivit {sa}, fp32 {ba}");
}

#[test]
fn quantize_qat_and_eval_int8_on_the_digits() {
    let dir = scratch("quantize");
    let run = dir.join("run");
    trained_digits_vit(&run);
    let eval = |model: &std::path::Path, int8: bool| {
        let mut args = vec!["eval", "--model", arg(model), "--data", "digits", "--json"];
        if int8 {
            args.push("--int8");
        }
        json_lines(&lithe(&args))[0]["accuracy"].as_f64().unwrap()
    };
    let fp32 = eval(&run, false);
    assert!(fp32 >= 0.7, "fp32 accuracy {fp32}");

    let ptq = dir.join("ptq");
    let rows = json_lines(&lithe(&[
        "quantize",
        "--model",
        arg(&run),
        "--calib",
        "digits",
        "--out",
        arg(&ptq),
        "--batches",
        "4",
        "--json",
    ]));
    let row = rows[0].as_object().unwrap();
    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "model",
            "mode",
            "fp32_accuracy",
            "accuracy",
            "bytes",
            "path"
        ]
    );
    assert_eq!(row["model"], "vit");
    assert_eq!(row["mode"], "ptq");
    assert_eq!(row["fp32_accuracy"].as_f64().unwrap(), fp32);
    let file = ptq.join("model.int8.safetensors");
    assert_eq!(
        row["bytes"].as_u64().unwrap(),
        std::fs::metadata(&file).unwrap().len()
    );
    let acc = row["accuracy"].as_f64().unwrap();
    assert!(acc >= fp32 - 0.05, "ptq accuracy {acc} vs fp32 {fp32}");
    // eval --int8 takes the folder or the file, and agrees with quantize.
    assert_eq!(eval(&ptq, true), acc);
    assert_eq!(eval(&file, true), acc);

    let dynamic = dir.join("dynamic");
    let rows = json_lines(&lithe(&[
        "quantize",
        "--model",
        arg(&run),
        "--mode",
        "dynamic",
        "--out",
        arg(&dynamic),
        "--json",
    ]));
    assert_eq!(rows[0]["mode"], "dynamic");
    assert!(rows[0]["accuracy"].is_null());
    let acc = eval(&dynamic, true);
    assert!(acc >= fp32 - 0.05, "dynamic accuracy {acc} vs fp32 {fp32}");

    let qat = dir.join("qat");
    let rows = json_lines(&lithe(&[
        "qat",
        "--model",
        arg(&run),
        "--data",
        "digits",
        "--epochs",
        "1",
        "--out",
        arg(&qat),
        "--json",
    ]));
    assert_eq!(rows[0]["mode"], "qat");
    let acc = rows[0]["accuracy"].as_f64().unwrap();
    assert!(acc >= fp32 - 0.1, "qat accuracy {acc} vs fp32 {fp32}");
    assert_eq!(eval(&qat, true), acc);

    // Errors: PTQ without data, a missing model, an fp32 folder given to --int8.
    let no_calib = lithe(&[
        "quantize",
        "--model",
        arg(&run),
        "--out",
        arg(&dir.join("x")),
    ]);
    assert!(!no_calib.status.success());
    assert!(String::from_utf8_lossy(&no_calib.stderr).contains("--calib"));
    assert!(
        !lithe(&["eval", "--int8", "--model", arg(&dir.join("none"))])
            .status
            .success()
    );
    assert!(
        !lithe(&["eval", "--int8", "--model", arg(&run), "--data", "digits"])
            .status
            .success()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny Hugging Face style BERT folder (config.json, model.safetensors, vocab.txt) with a
/// vocabulary of over 1000 tokens, as `lithe bench minilm` draws ids from 1000 up.
fn tiny_hf_bert(dir: &std::path::Path) {
    use lithe::nn::{Bert, BertConfig};
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    vocab.extend((0..1100).map(|i| format!("w{i}")));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    let config = BertConfig {
        vocab_size: vocab.len(),
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 32,
        ..BertConfig::default()
    };
    let bert = Bert::new(&config, &mut lithe::Rng::new(2)).unwrap();
    lithe::train::save_run(dir, &bert, &config, None).unwrap();
}

fn embed(args: &[&str], input: &str) -> Vec<Vec<f32>> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lithe"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn embed_and_bench_minilm_int8() {
    let dir = scratch("bert");
    tiny_hf_bert(&dir);
    let input = "w1 w2 w3\nw7 w8 w9 w10 w11 w12\nw5\n";
    let model = arg(&dir);
    let fp32 = embed(&["embed", "--model", model], input);
    let int8 = embed(
        &["embed", "--model", model, "--int8", "--batch", "2"],
        input,
    );
    assert_eq!(int8.len(), 3);
    for (a, b) in int8.iter().zip(&fp32) {
        assert_eq!(a.len(), 32);
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(cos > 0.99, "cosine to fp32 {cos}");
    }
    let rows = json_lines(&lithe(&[
        "bench",
        "minilm",
        "--model",
        model,
        "--int8",
        "--batch",
        "2",
        "--seq",
        "16",
        "--budget-ms",
        "20",
        "--json",
    ]));
    let row = rows[0].as_object().unwrap();
    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "batch",
            "seq",
            "threads",
            "precision",
            "device",
            "median_ms"
        ]
    );
    assert_eq!(row["precision"], "int8");
    assert!(row["median_ms"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `lithe` with `base` plus each of `extras` in turn: each must fail with an error message.
fn rejects_each(base: &[&str], extras: &[&[&str]]) {
    for extra in extras {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = lithe(&args);
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("error"));
    }
}

/// `demo --quick --stages fp32,<stage>`: checks the two rows share the schema and that the
/// stage's `bytes` is its f32 parameters'; returns `(fp32 params, stage params, fp32 accuracy,
/// stage accuracy)`.
fn demo_against_baseline(stage: &str) -> (u64, u64, f64, f64) {
    let stages = format!("fp32,{stage}");
    let rows = json_lines(&lithe(&["demo", "--quick", "--stages", &stages, "--json"]));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["stage"], stage);
    assert_eq!(
        rows[1].as_object().unwrap().keys().collect::<Vec<_>>(),
        rows[0].as_object().unwrap().keys().collect::<Vec<_>>()
    );
    let params = |r: &serde_json::Value| r["params"].as_u64().unwrap();
    let accuracy = |r: &serde_json::Value| r["accuracy"].as_f64().unwrap();
    assert_eq!(rows[1]["bytes"].as_u64(), Some(4 * params(&rows[1])));
    assert!(rows[1]["throughput"].as_f64().unwrap() > 0.0);
    (
        params(&rows[0]),
        params(&rows[1]),
        accuracy(&rows[0]),
        accuracy(&rows[1]),
    )
}
