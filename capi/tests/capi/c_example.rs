//! The C example: builds `examples/c/lithe_example.c` with the system C compiler against `liblithe_capi.a` (this
//! crate's static library, which cargo builds before running this test) and checks what it
//! prints against the Rust API on the same model and input: the logits of a tiny int8 Vit on the
//! shipped 8x8 digits, and the embedding of a sentence by a tiny int8 Bert with its vocab.txt
//! (and by the real all-MiniLM-L6-v2 when `LITHE_MINILM_DIR` names it).

use lithe::Rng;
use lithe::data::Tokenizer;
use lithe::embed::{Pooling, SentenceEncoder};
use lithe::int8::{Input, Int8Model, QuantPlan};
use lithe::nn::{Bert, BertConfig, Vit, VitConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lithe-capi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A library of this build (`liblithe_capi.a`, `.so`, `.dylib`). Cargo writes a staticlib or
/// cdylib under its plain name (no hash) to `target/<profile>/deps/`, next to this test
/// executable, and rebuilds it before running the test; `cargo build` also copies it up to
/// `target/<profile>/`, where `cargo test` does not.
fn built_lib(file: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps.to_path_buf(), deps.parent().unwrap().to_path_buf()]
        .iter()
        .map(|d| d.join(file))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no {file} in {} or its parent", deps.display()))
}

/// Compiles the C example (`$CC`, else `cc`; warnings as errors) against `lib` into `out`.
fn compile_example(lib: &Path, out: &Path) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root().join("include"))
        .arg(root().join("examples/c/lithe_example.c"))
        .arg(lib)
        .arg("-o")
        .arg(out);
    if lib.extension().is_some_and(|e| e == "a") {
        // What Rust's standard library needs from the system (`rustc --print
        // native-static-libs`).
        if cfg!(target_os = "macos") {
            cmd.args(["-lSystem", "-lc", "-lm"]);
        } else {
            cmd.args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil"]);
        }
    } else {
        // Find the shared library where it is at run time.
        cmd.arg(format!("-Wl,-rpath,{}", lib.parent().unwrap().display()));
    }
    let res = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(
        res.status.success(),
        "compiling the C example against {} failed:\n{}",
        lib.display(),
        String::from_utf8_lossy(&res.stderr)
    );
}

/// The C example linked with the static library, compiled once per test process.
fn example() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let out = scratch("build").join("lithe_example");
        compile_example(&built_lib("liblithe_capi.a"), &out);
        out
    })
}

/// Runs the example; its stdout lines.
fn run_example(args: &[&str]) -> Vec<String> {
    run(example(), args)
}

/// Runs `exe` with `args`; its stdout lines.
fn run(exe: &Path, args: &[&str]) -> Vec<String> {
    let res = Command::new(exe).args(args).output().unwrap();
    assert!(
        res.status.success(),
        "lithe_example {args:?} failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    String::from_utf8(res.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn floats(words: &[&str]) -> Vec<f32> {
    words.iter().map(|w| w.parse().unwrap()).collect()
}

fn assert_close(c: &[f32], rust: &[f32], what: &str) {
    assert_eq!(c.len(), rust.len(), "{what}: lengths");
    for (i, (a, b)) in c.iter().zip(rust).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{what}[{i}]: C {a}, Rust {b}"
        );
    }
}

/// A tiny random int8 ViT for the 8x8 digits, saved in `dir`; its path.
fn tiny_vit_file(dir: &Path) -> PathBuf {
    let config = VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        num_labels: 10,
        ..VitConfig::default()
    };
    let vit = Vit::new(&config, &mut Rng::new(3)).unwrap();
    let path = dir.join("vit.int8.safetensors");
    Int8Model::from_vit(&vit, &QuantPlan::dynamic())
        .unwrap()
        .save(&path)
        .unwrap();
    path
}

fn digits_file() -> PathBuf {
    root().join("data/digits8x8/digits-images-idx3-ubyte")
}

#[test]
fn c_example_classifies_digits_like_the_rust_api() {
    let path = tiny_vit_file(&scratch("vit"));
    let images = digits_file();
    let n = 5;
    let lines = run_example(&[
        "classify",
        path.to_str().unwrap(),
        images.to_str().unwrap(),
        &n.to_string(),
    ]);
    assert_eq!(lines.len(), n, "{lines:?}");

    // The same images through the Rust API, from the same file.
    let idx = lithe::data::idx::read_images(&images).unwrap();
    let pixels: Vec<f32> = idx.pixels[..n * 64]
        .iter()
        .map(|&p| p as f32 / 16.0)
        .collect();
    let model = Int8Model::load(&path).unwrap();
    let mut ws = model.workspace(n, model.max_seq()).unwrap();
    let logits = model
        .forward(
            &mut ws,
            Input::Images {
                pixels: &pixels,
                batch: n,
            },
        )
        .unwrap();
    for (b, line) in lines.iter().enumerate() {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(w[..2], ["image", b.to_string().as_str()], "{line}");
        assert_eq!(w[4], "logits", "{line}");
        let rust = &logits[b * 10..(b + 1) * 10];
        assert_close(&floats(&w[5..]), rust, &format!("logits of image {b}"));
        let best = (0..10).fold(0, |m, c| if rust[c] > rust[m] { c } else { m });
        assert_eq!(w[3], best.to_string(), "argmax of image {b}");
    }
}

/// Runs `lithe_example embed` and compares with `model.embed` of the same text.
fn check_embedding(model_path: &Path, tokenizer_path: &Path, text: &str) {
    let lines = run_example(&[
        "embed",
        model_path.to_str().unwrap(),
        tokenizer_path.to_str().unwrap(),
        text,
    ]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let w: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(w[0], "embedding");
    let c = floats(&w[2..]);

    let model = Int8Model::load(model_path).unwrap();
    assert_eq!(w[1], model.hidden_size().to_string());
    let tok = if tokenizer_path.extension().is_some_and(|e| e == "json") {
        Tokenizer::from_file(tokenizer_path).unwrap()
    } else {
        Tokenizer::from_vocab(tokenizer_path, true).unwrap()
    };
    let enc = tok.encode(text, model.max_seq()).unwrap();
    let mut ws = model.workspace(1, model.max_seq()).unwrap();
    let input = Input::Tokens {
        ids: &enc.ids,
        batch: 1,
        seq: enc.seq,
        lengths: None,
    };
    let rust = model.embed(&mut ws, input, Pooling::Mean).unwrap();
    assert_close(&c, rust, "embedding");
    let norm: f32 = c.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "embedding norm {norm}");
}

#[test]
fn c_example_embeds_a_sentence_like_the_rust_api() {
    let dir = scratch("bert");
    let words = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jump",
        "##s", "over", "lazy", "dog", ".",
    ];
    let vocab = dir.join("vocab.txt");
    std::fs::write(&vocab, words.join("\n") + "\n").unwrap();
    let config = BertConfig {
        vocab_size: words.len(),
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 16,
        ..BertConfig::default()
    };
    let bert = Bert::new(&config, &mut Rng::new(5)).unwrap();
    let path = dir.join("bert.int8.safetensors");
    Int8Model::from_bert(&bert, &QuantPlan::dynamic())
        .unwrap()
        .save(&path)
        .unwrap();
    check_embedding(
        &path,
        &vocab,
        "The quick brown fox jumps over the lazy dog.",
    );
}

#[test]
fn c_example_embeds_with_the_real_minilm_when_present() {
    let Some(dir) = std::env::var_os("LITHE_MINILM_DIR").map(PathBuf::from) else {
        assert!(
            std::env::var_os("LITHE_REQUIRE_MINILM").is_none(),
            "LITHE_REQUIRE_MINILM is set but LITHE_MINILM_DIR is not"
        );
        eprintln!(
            "note: LITHE_MINILM_DIR is not set; the MiniLM case did not run (scripts/test sets it)"
        );
        return;
    };
    let encoder = SentenceEncoder::from_hf_dir(&dir).unwrap();
    let out = scratch("minilm");
    let path = out.join("minilm.int8.safetensors");
    Int8Model::from_bert(&encoder.bert, &QuantPlan::dynamic())
        .unwrap()
        .save(&path)
        .unwrap();
    let tokenizer = ["tokenizer.json", "vocab.txt"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .expect("a tokenizer.json or vocab.txt in LITHE_MINILM_DIR");
    check_embedding(&path, &tokenizer, "A man is playing a guitar.");
}

#[test]
fn shared_library_gives_what_the_static_one_gives() {
    let dir = scratch("shared");
    let shared = if cfg!(target_os = "macos") {
        "liblithe_capi.dylib"
    } else {
        "liblithe_capi.so"
    };
    let exe = dir.join("lithe_example_shared");
    compile_example(&built_lib(shared), &exe);
    let model = tiny_vit_file(&dir);
    let images = digits_file();
    let args = [
        "classify",
        model.to_str().unwrap(),
        images.to_str().unwrap(),
        "3",
    ];
    let lines = run(&exe, &args);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines, run_example(&args));
}
