//! The trainer (`lithe::train`) and the `lithe train` / `lithe eval` commands on small data.

use lithe::nn::{Vit, VitConfig};
use lithe::train::{self, TrainOptions};
use lithe::{Rng, io};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lithe_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lithe"))
        .args(args)
        .output()
        .expect("run lithe")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh empty folder under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("train-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn digits_config() -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        num_labels: 10,
        ..VitConfig::default()
    }
}

#[test]
fn trainer_learns_digits_and_a_saved_model_evaluates_the_same() {
    let (tr, te) = train::digits_split(42).unwrap();
    let config = digits_config();
    let vit = Vit::new(&config, &mut Rng::new(7)).unwrap();
    let opts = TrainOptions {
        epochs: 25,
        lr: 3e-3,
        label_smoothing: 0.05,
        seed: 8,
        ..TrainOptions::default()
    };
    let mut steps = 0;
    let history = train::train_vit(&vit, &tr, &te, &opts, &mut |e| {
        if let train::Event::Step { .. } = e {
            steps += 1;
        }
    })
    .unwrap();
    assert_eq!(history.epochs.len(), 25);
    assert_eq!(steps, 25 * tr.len().div_ceil(64));
    let acc = history.final_accuracy();
    assert!(acc >= 0.9, "digits test accuracy {acc}");
    assert!(history.epochs[24].train_loss < history.epochs[0].train_loss);

    // Save -> load -> evaluate: the same accuracy, through the library and through the CLI.
    let dir = scratch("digits");
    train::save_run(&dir, &vit, &config, Some(&history)).unwrap();
    for f in [
        "model.safetensors",
        "config.json",
        "history.json",
        "training.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let svg = std::fs::read_to_string(dir.join("training.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    let loaded_config: VitConfig = io::load_config(dir.join("config.json")).unwrap();
    assert_eq!(loaded_config, config);
    let loaded = Vit::new(&loaded_config, &mut Rng::new(99)).unwrap();
    io::load_into_module(&loaded, dir.join("model.safetensors"), true).unwrap();
    assert_eq!(train::evaluate_vit(&loaded, &te).unwrap(), acc);
    let out = lithe_cli(&[
        "eval",
        "--model",
        dir.to_str().unwrap(),
        "--data",
        "digits",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(row["model"], "vit");
    assert_eq!(row["examples"], te.len());
    assert!((row["accuracy"].as_f64().unwrap() - acc).abs() < 1e-4);
}

#[test]
fn train_vit_cli_on_an_idx_folder_writes_a_run() {
    // The digits as an IDX folder (train = test = the shipped file), to exercise --data.
    let dir = scratch("idx");
    let root = env!("CARGO_MANIFEST_DIR");
    for (src, dst) in [
        ("images-idx3", "images-idx3"),
        ("labels-idx1", "labels-idx1"),
    ] {
        let from = format!("{root}/data/digits8x8/digits-{src}-ubyte");
        std::fs::copy(&from, dir.join(format!("train-{dst}-ubyte"))).unwrap();
        std::fs::copy(&from, dir.join(format!("t10k-{dst}-ubyte"))).unwrap();
    }
    let out_dir = dir.join("run");
    let out = lithe_cli(&[
        "train",
        "vit",
        "--data",
        dir.to_str().unwrap(),
        "--epochs",
        "6",
        "--patch",
        "4",
        "--width",
        "32",
        "--depth",
        "1",
        "--heads",
        "4",
        "--lr",
        "3e-3",
        "--threads",
        "1",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[5]["epoch"], 6);
    // Digits pixels (0..=16) are recognised and scaled by 16, so even this short run learns.
    let acc = rows[5]["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.7, "accuracy {acc}");
    assert!(out_dir.join("training.svg").is_file());
}

#[test]
fn train_text_runs_one_epoch_on_a_tiny_tsv_and_evaluates() {
    let dir = scratch("text");
    let pos = [
        "a great and wonderful film",
        "i loved it , truly moving",
        "brilliant acting",
    ];
    let neg = [
        "a dull boring mess",
        "i hated every minute",
        "awful and tedious",
    ];
    let mut tsv = String::new();
    for i in 0..8 {
        tsv += &format!("1\t{}\n0\t{}\n", pos[i % 3], neg[i % 3]);
    }
    let (train, test) = (dir.join("train.tsv"), dir.join("test.tsv"));
    std::fs::write(&train, &tsv).unwrap();
    std::fs::write(&test, &tsv[..tsv.len() / 2]).unwrap();
    let vocab = format!(
        "{}/data/vocab/bert-base-uncased-vocab.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let out_dir = dir.join("run");
    let out = lithe_cli(&[
        "train",
        "text",
        "--train",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--vocab",
        &vocab,
        "--epochs",
        "1",
        "--batch",
        "4",
        "--width",
        "16",
        "--depth",
        "1",
        "--heads",
        "2",
        "--max-len",
        "16",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(row["epoch"], 1);
    let acc = row["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "training.svg",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    let out = lithe_cli(&[
        "eval",
        "--model",
        out_dir.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--max-len",
        "16",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(row["model"], "bert");
    assert!((row["accuracy"].as_f64().unwrap() - acc).abs() < 1e-4);
}

/// The real all-MiniLM-L6-v2 folder (`LITHE_MINILM_DIR`, exported by `scripts/test`); `None`
/// with a note when unset, a failure when `LITHE_REQUIRE_MINILM` is set.
fn minilm_dir() -> Option<PathBuf> {
    let required = std::env::var("LITHE_REQUIRE_MINILM").is_ok_and(|v| !v.is_empty() && v != "0");
    match std::env::var_os("LITHE_MINILM_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None if required => panic!("LITHE_REQUIRE_MINILM is set but LITHE_MINILM_DIR is not"),
        None => {
            eprintln!("NOTE: LITHE_MINILM_DIR is not set; the fine-tuning test did NOT run");
            None
        }
    }
}

#[test]
fn train_text_init_fine_tunes_the_imported_bert() {
    let Some(minilm) = minilm_dir() else { return };
    let dir = scratch("text-init");
    let mut tsv = String::new();
    for (label, text) in [
        (1, "a wonderful , moving film"),
        (0, "a dull and tedious mess"),
    ] {
        for _ in 0..4 {
            tsv += &format!("{label}\t{text}\n");
        }
    }
    let data = dir.join("data.tsv");
    std::fs::write(&data, &tsv).unwrap();
    let out_dir = dir.join("run");
    let out = lithe_cli(&[
        "train",
        "text",
        "--train",
        data.to_str().unwrap(),
        "--test",
        data.to_str().unwrap(),
        "--init",
        minilm.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "4",
        "--max-len",
        "12",
        "--lr",
        "1e-5",
        "--threads",
        "2",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Two small steps from the pretrained weights: the saved encoder is MiniLM's, moved a
    // little (a model trained from scratch would differ by O(0.02) everywhere), and the new
    // classifier head is there.
    let (ours, _) = io::read_safetensors(out_dir.join("model.safetensors")).unwrap();
    let (theirs, _) = io::read_safetensors(minilm.join("model.safetensors")).unwrap();
    let find = |named: &io::NamedTensors, suffix: &str| {
        named
            .iter()
            .find(|(n, _)| n.ends_with(suffix))
            .unwrap_or_else(|| panic!("no tensor named *{suffix}"))
            .1
            .clone()
    };
    for name in [
        "encoder.layer.5.intermediate.dense.weight",
        "embeddings.word_embeddings.weight",
    ] {
        let (a, b) = (find(&ours, name), find(&theirs, name));
        assert_eq!(a.shape(), b.shape(), "{name}");
        let d = a.max_abs_diff(&b).unwrap();
        assert!(
            d < 1e-3,
            "{name} moved by {d}: not initialised from the import"
        );
    }
    assert_eq!(find(&ours, "classifier.weight").shape(), [2, 384]);
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert!((0.0..=1.0).contains(&row["test_accuracy"].as_f64().unwrap()));
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = scratch("bad");
    let missing = dir.join("no-such-dir");
    let out = lithe_cli(&[
        "train",
        "vit",
        "--data",
        missing.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        dir.join("o").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    let bad = dir.join("bad.tsv");
    std::fs::write(&bad, "positive\tnot a numeric label\n").unwrap();
    let vocab = format!(
        "{}/data/vocab/bert-base-uncased-vocab.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = lithe_cli(&[
        "train",
        "text",
        "--train",
        bad.to_str().unwrap(),
        "--test",
        bad.to_str().unwrap(),
        "--vocab",
        &vocab,
        "--epochs",
        "1",
        "--out",
        dir.join("o").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("error") && err.contains("bad.tsv"), "{err}");

    let out = lithe_cli(&["eval", "--model", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));

    // The library refuses images that do not fit the model.
    let (tr, te) = train::digits_split(1).unwrap();
    let mut c = digits_config();
    c.image_size = 16;
    let vit = Vit::new(&c, &mut Rng::new(0)).unwrap();
    let err = train::train_vit(&vit, &tr, &te, &TrainOptions::default(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("the model takes"), "{err}");
}
