//! The CLI given bad files and flags: a non-zero exit code and a short message on stderr,
//! never a panic or an abort.

use super::*;
use std::path::Path;
use std::process::{Command, Output};

fn lithe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lithe"))
        .args(args)
        .env("LITHE_THREADS", "1")
        .output()
        .expect("run lithe")
}

/// Failed cleanly: a non-zero exit code that is not a signal, no panic, and a one-line message:
/// clap's usage errors start with `error:`; lithe's own error is the last line of stderr,
/// after any progress lines, and the only one that starts with `lithe: error:`.
fn check_refused(args: &[&str], failures: &mut Vec<String>) {
    let out = lithe(args);
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let ok = match out.status.code() {
        None => false, // killed by a signal (abort)
        Some(0) => false,
        Some(_) => {
            !err.contains("panicked")
                && !err.contains("RUST_BACKTRACE")
                && (first.starts_with("error:")
                    || (err
                        .trim_end()
                        .lines()
                        .last()
                        .is_some_and(|l| l.starts_with("lithe: error:"))
                        && err
                            .lines()
                            .filter(|l| l.starts_with("lithe: error:"))
                            .count()
                            == 1))
        }
    };
    if !ok {
        failures.push(format!("{args:?}: status {:?}, stderr:\n{err}", out.status));
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cli_bad_files_and_flags_fail_cleanly() {
    let dir = scratch("cli");
    let missing = dir.join("missing");
    // A model directory whose files are garbage, one whose config asks for an impossible model,
    // and a plain file where a directory is expected.
    let corrupt = dir.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("config.json"), b"{\"model_type\": \"vit\", ").unwrap();
    std::fs::write(
        corrupt.join("model.safetensors"),
        b"\x10\0\0\0\0\0\0\0{}garbage",
    )
    .unwrap();
    let huge = dir.join("huge");
    std::fs::create_dir_all(&huge).unwrap();
    let mut c = vit_config();
    c.hidden_size = 1 << 40;
    c.num_attention_heads = 1;
    lithe::io::save_config(&c, huge.join("config.json")).unwrap();
    std::fs::write(huge.join("model.safetensors"), b"\x02\0\0\0\0\0\0\0{}").unwrap();
    let file = dir.join("file.txt");
    std::fs::write(&file, b"not a model").unwrap();
    let int8_garbage = dir.join("model.int8.safetensors");
    std::fs::write(&int8_garbage, [0xffu8; 64]).unwrap();
    let tsv = dir.join("bad.tsv");
    std::fs::write(&tsv, b"no tab here\n7\n").unwrap();

    let mut failures = Vec::new();
    let (missing, corrupt, huge, file, dir_s) =
        (s(&missing), s(&corrupt), s(&huge), s(&file), s(&dir));
    let int8_garbage = s(&int8_garbage);
    for args in [
        // Missing files, a directory for a file, a file for a directory, corrupt models.
        vec!["eval", "--model", missing, "--data", "digits"],
        vec!["eval", "--model", file, "--data", "digits"],
        vec!["eval", "--model", corrupt, "--data", "digits"],
        vec!["eval", "--model", huge, "--data", "digits"],
        vec![
            "eval",
            "--int8",
            "--model",
            int8_garbage,
            "--data",
            "digits",
        ],
        vec!["eval", "--int8", "--model", dir_s, "--data", "digits"],
        vec!["eval", "--model", corrupt, "--data", missing],
        vec!["eval", "--model", corrupt, "--data", s(&tsv)],
        vec!["embed", "--model", missing],
        vec!["embed", "--model", file],
        vec!["embed", "--model", corrupt, "--int8"],
        vec![
            "quantize", "--model", corrupt, "--calib", "digits", "--out", missing,
        ],
        vec![
            "quantize", "--model", missing, "--calib", "digits", "--out", missing,
        ],
        vec![
            "train", "vit", "--data", file, "--epochs", "1", "--out", missing,
        ],
        vec![
            "train", "vit", "--data", missing, "--epochs", "1", "--out", missing,
        ],
        vec![
            "train", "text", "--train", missing, "--test", missing, "--vocab", missing, "--out",
            missing,
        ],
        vec![
            "train",
            "text",
            "--train",
            s(&tsv),
            "--test",
            s(&tsv),
            "--vocab",
            file,
            "--out",
            missing,
        ],
        vec![
            "distill",
            "--teacher",
            corrupt,
            "--student",
            "depth=1",
            "--method",
            "kd",
            "--out",
            missing,
        ],
        vec!["prune", "--model", huge, "--heads", "0.5", "--out", missing],
        vec!["tokendrop", "--model", file, "--out", missing],
        vec![
            "bench", "minilm", "--model", missing, "--batch", "1", "--seq", "8",
        ],
        // Bad numbers.
        vec!["train", "vit", "--epochs", "abc"],
        vec!["train", "vit", "--epochs", "-1"],
        vec![
            "train", "vit", "--lr", "nan", "--epochs", "1", "--data", "digits", "--out", missing,
        ],
        vec![
            "train", "vit", "--patch", "0", "--epochs", "1", "--data", "digits", "--out", missing,
        ],
        vec![
            "train", "vit", "--heads", "3", "--width", "64", "--epochs", "1", "--data", "digits",
            "--out", missing,
        ],
        vec![
            "train",
            "vit",
            "--width",
            "99999999999999",
            "--epochs",
            "1",
            "--data",
            "digits",
            "--out",
            missing,
        ],
        vec![
            "train", "vit", "--batch", "0", "--epochs", "1", "--data", "digits", "--out", missing,
        ],
        vec![
            "bench",
            "gemm",
            "--shape",
            "100000x100000x100000",
            "--budget-ms",
            "1",
        ],
        vec![
            "bench",
            "gemm",
            "--shape",
            "4294967296x4294967296x2",
            "--budget-ms",
            "1",
        ],
        vec![
            "bench",
            "gemm",
            "--dtype",
            "i8",
            "--shape",
            "100000x100000x100000",
            "--budget-ms",
            "1",
        ],
        vec!["bench", "gemm", "--shape", "x", "--budget-ms", "1"],
        vec!["bench", "gemm", "--shape", "", "--budget-ms", "1"],
        vec!["bench", "gemm", "--threads", "99999999999999999999999"],
        vec!["demo", "--stages", "bogus"],
        vec![
            "prune", "--model", corrupt, "--heads", "1.5", "--out", missing,
        ],
        vec![
            "prune", "--model", corrupt, "--heads", "nan", "--out", missing,
        ],
    ] {
        check_refused(&args, &mut failures);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        failures.is_empty(),
        "{} commands:\n{}",
        failures.len(),
        failures.join("\n---\n")
    );
}
