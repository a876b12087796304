//! `lithe quantize`, `lithe qat` and `lithe eval --int8`: a model saved by `lithe train` lowered
//! into the int8 engine (`lithe::int8`), by post-training quantization (static input scales
//! calibrated on data), dynamic quantization (per-row input scales at run time) or
//! quantization-aware fine-tuning (`lithe::compress::qat`), then saved as one
//! `model.int8.safetensors` that `lithe eval --int8` and the C ABI load.

use crate::bench::median_time;
use crate::train::{CliResult, images_arg, progress_printer, round, text_set};
use clap::{Args, ValueEnum};
use lithe::Graph;
use lithe::compress::qat::{self, QatConfig};
use lithe::compress::share::MiniVit;
use lithe::compress::tokendrop::DynamicVit;
use lithe::data::Tokenizer;
use lithe::int8::{Input, Int8Model, QuantPlan, ToInt8};
use lithe::nn::{AttentionMask, Bert, BertConfig, Vit, VitConfig};
use lithe::train::{ImageSet, TextSet, TrainOptions};
use lithe::{Rng, io};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The int8 model's file name inside an output folder.
pub const INT8_FILE: &str = "model.int8.safetensors";

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Static input scales from the largest |x| seen on calibration batches.
    Ptq,
    /// Input scales per row at run time (no calibration data needed).
    Dynamic,
}

#[derive(Args)]
pub struct QuantizeArgs {
    /// A folder written by `lithe train` (config.json, model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Calibration data. Images: an IDX folder or `digits` (the training split calibrates, the
    /// test split is evaluated). Text: a `label<TAB>text` file. Required for --mode ptq.
    #[arg(long)]
    calib: Option<String>,
    /// Folder for model.int8.safetensors (and a text model's tokenizer.json).
    #[arg(long)]
    out: PathBuf,
    /// ptq (calibrated static scales) or dynamic (per-row scales at run time).
    #[arg(long, value_enum, default_value = "ptq")]
    mode: Mode,
    /// Calibration batches.
    #[arg(long, default_value_t = 8)]
    batches: usize,
    /// Samples per calibration batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Longest token sequence (text models).
    #[arg(long, default_value_t = 64)]
    max_len: usize,
    /// Print a JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct QatArgs {
    /// A ViT folder written by `lithe train vit`.
    #[arg(long)]
    model: PathBuf,
    /// An IDX folder, or `digits`; default Fashion-MNIST (else the shipped digits).
    #[arg(long)]
    data: Option<String>,
    /// Passes of quantization-aware fine-tuning.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Folder for model.int8.safetensors.
    #[arg(long)]
    out: PathBuf,
    /// Samples per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate (about a tenth of training's).
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Weight of the old range in the EMA of each input's max |x|.
    #[arg(long, default_value_t = 0.9999)]
    ema_decay: f32,
    /// Seed of the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print a JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

/// A model folder written by `lithe train`.
pub enum Run {
    /// A ViT.
    Vit(Box<Vit>),
    /// A BERT classifier and its tokenizer.
    Bert(Box<Bert>, Box<Tokenizer>),
    /// A MiniViT student (written by `lithe minivit`).
    MiniVit(Box<MiniVit>),
    /// A token-dropping DynamicViT (written by `lithe tokendrop`).
    DynamicVit(Box<DynamicVit>),
}

/// Loads the model of a `lithe train` folder (config.json's `model_type` says which).
pub fn load_run(dir: &Path) -> CliResult<Run> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let kind: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not JSON: {e}", config_path.display()))?;
    let weights = dir.join("model.safetensors");
    match kind["model_type"].as_str() {
        Some("vit") => {
            let config: VitConfig = io::load_config(&config_path)?;
            let vit = Vit::new(&config, &mut Rng::new(0))?;
            io::load_into_module(&vit, &weights, true)?;
            Ok(Run::Vit(Box::new(vit)))
        }
        Some("minivit") => Ok(Run::MiniVit(Box::new(MiniVit::load(dir)?))),
        Some("dynamicvit") => Ok(Run::DynamicVit(Box::new(DynamicVit::load(dir)?))),
        Some("bert") => {
            let config: BertConfig = io::load_config(&config_path)?;
            let bert = Bert::new(&config, &mut Rng::new(0))?;
            io::load_into_module(&bert, &weights, true)?;
            Ok(Run::Bert(
                Box::new(bert),
                Box::new(Tokenizer::from_file(&dir.join("tokenizer.json"))?),
            ))
        }
        other => Err(format!(
            "{}: model_type {other:?} is not \"vit\", \"minivit\", \"dynamicvit\" or \"bert\"",
            config_path.display()
        )
        .into()),
    }
}

/// `path` itself, or `path/model.int8.safetensors` for a folder.
pub fn int8_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(INT8_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Saves `model` as `dir/model.int8.safetensors`; its size in bytes.
pub fn save(model: &Int8Model, dir: &Path) -> CliResult<u64> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(INT8_FILE);
    model.save(&path)?;
    Ok(std::fs::metadata(&path)?.len())
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |m, c| if row[c] > row[m] { c } else { m })
}

/// Test accuracy of an int8 image model on `data`, in batches of 256.
pub fn accuracy_images(model: &Int8Model, data: &ImageSet) -> CliResult<f64> {
    if data.is_empty() {
        return Err("the test set is empty".into());
    }
    let per = data.channels * data.side * data.side;
    let classes = model.num_classes();
    let mut ws = model.workspace(256, model.max_seq())?;
    let mut correct = 0;
    for (chunk, labels) in data.pixels.chunks(256 * per).zip(data.labels.chunks(256)) {
        let batch = labels.len();
        let logits = model.forward(
            &mut ws,
            Input::Images {
                pixels: chunk,
                batch,
            },
        )?;
        correct += logits
            .chunks_exact(classes)
            .zip(labels)
            .filter(|(row, y)| argmax(row) == **y)
            .count();
    }
    Ok(correct as f64 / data.len() as f64)
}

/// Test accuracy of an int8 text classifier on `data`, in batches of 64.
pub fn accuracy_text(model: &Int8Model, tok: &Tokenizer, data: &TextSet) -> CliResult<f64> {
    if data.is_empty() {
        return Err("the test set is empty".into());
    }
    let classes = model.num_classes();
    let mut ws = model.workspace(64, data.max_len)?;
    let mut correct = 0;
    for (texts, labels) in data.texts.chunks(64).zip(data.labels.chunks(64)) {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let enc = tok.encode_batch(&texts, data.max_len)?;
        let lengths = enc.lengths();
        let input = Input::Tokens {
            ids: &enc.ids,
            batch: enc.batch,
            seq: enc.seq,
            lengths: Some(&lengths),
        };
        let logits = model.forward(&mut ws, input)?;
        correct += logits
            .chunks_exact(classes)
            .zip(labels)
            .filter(|(row, y)| argmax(row) == **y)
            .count();
    }
    Ok(correct as f64 / data.len() as f64)
}

/// Median forward time of a batch of 64 test images on one thread.
pub fn latency_images(model: &Int8Model, data: &ImageSet) -> CliResult<Duration> {
    let per = data.channels * data.side * data.side;
    let pixels: Vec<f32> = (0..64)
        .flat_map(|i| {
            let r = i % data.len();
            data.pixels[r * per..(r + 1) * per].iter().copied()
        })
        .collect();
    let mut ws = model.workspace(64, model.max_seq())?;
    let input = Input::Images {
        pixels: &pixels,
        batch: 64,
    };
    model.forward(&mut ws, input)?;
    lithe::kernels::threads::set_num_threads(1);
    let t = median_time(Duration::from_millis(500), || {
        model
            .forward(&mut ws, input)
            .expect("forward of a valid batch");
    });
    lithe::kernels::threads::set_num_threads(0);
    Ok(t)
}

/// Calibrates a prepared BERT on up to `batches` batches of `calib`.
fn calibrate_bert(
    bert: &Bert,
    tok: &Tokenizer,
    calib: &TextSet,
    batch: usize,
    batches: usize,
) -> lithe::Result<()> {
    qat::calibrate(bert, || {
        for texts in calib.texts.chunks(batch.max(1)).take(batches) {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let enc = tok.encode_batch(&texts, calib.max_len)?;
            let mask = AttentionMask::from_lengths(&enc.lengths(), enc.seq)?;
            let g = Graph::inference();
            bert.forward_logits(
                &g,
                &enc.ids_usize(),
                [enc.batch, enc.seq],
                None,
                Some(&mask),
            )?;
        }
        Ok(())
    })
}

/// `lithe quantize`: one row `{"model","mode","fp32_accuracy","accuracy","bytes","path"}`
/// (accuracies on the test split of image --calib data; null for text).
pub fn run_quantize(a: QuantizeArgs) -> CliResult<()> {
    if a.mode == Mode::Ptq && a.calib.is_none() {
        return Err("--mode ptq needs --calib data (or use --mode dynamic)".into());
    }
    let path = a.out.join(INT8_FILE);
    let mut row = Map::new();
    let (mut fp32_acc, mut acc) = (Value::Null, Value::Null);
    let bytes = match load_run(&a.model)? {
        Run::Vit(vit) => {
            row.insert("model".into(), json!("vit"));
            let data = a
                .calib
                .as_deref()
                .map(|c| images_arg(Some(c)))
                .transpose()?;
            let engine = match (&data, a.mode) {
                (Some((train, _, _)), Mode::Ptq) => {
                    qat::ptq_vit(&vit, train, a.batch, Some(a.batches))?
                }
                _ => vit.to_int8(&QuantPlan::dynamic())?,
            };
            if let Some((_, test, _)) = &data {
                fp32_acc = json!(round(lithe::train::evaluate_vit(&vit, test)?, 4));
                acc = json!(round(accuracy_images(&engine, test)?, 4));
            }
            save(&engine, &a.out)?
        }
        Run::DynamicVit(model) => {
            // The predictors stay f32; calibrated scales would come from full-length runs while
            // the blocks after a stage see fewer tokens, so only dynamic scales are offered.
            if a.mode == Mode::Ptq {
                return Err("a DynamicViT lowers with --mode dynamic only".into());
            }
            row.insert("model".into(), json!("dynamicvit"));
            let engine = model.to_int8(&QuantPlan::dynamic())?;
            if let Some(c) = a.calib.as_deref() {
                let (_, test, _) = images_arg(Some(c))?;
                fp32_acc = json!(round(lithe::train::evaluate_dynamic_vit(&model, &test)?, 4));
                acc = json!(round(accuracy_images(&engine, &test)?, 4));
            }
            save(&engine, &a.out)?
        }
        Run::MiniVit(_) => {
            return Err(
                "int8 lowering of a MiniViT student is not supported; quantize its \
                        teacher, or train a plain ViT"
                    .into(),
            );
        }
        Run::Bert(bert, tok) => {
            let bert = &*bert;
            row.insert("model".into(), json!("bert"));
            let engine = if a.mode == Mode::Ptq {
                let calib = text_set(Path::new(a.calib.as_deref().unwrap_or_default()), a.max_len)?;
                qat::prepare_qat(bert, &QatConfig::ptq())?;
                let engine = calibrate_bert(bert, &tok, &calib, a.batch, a.batches)
                    .and_then(|()| qat::convert(bert));
                qat::strip_qat(bert);
                engine?
            } else {
                bert.to_int8(&QuantPlan::dynamic())?
            };
            let bytes = save(&engine, &a.out)?;
            tok.save(&a.out.join("tokenizer.json"))?;
            bytes
        }
    };
    eprintln!("lithe quantize: saved {}", path.display());
    row.insert(
        "mode".into(),
        json!(if a.mode == Mode::Ptq {
            "ptq"
        } else {
            "dynamic"
        }),
    );
    row.insert("fp32_accuracy".into(), fp32_acc);
    row.insert("accuracy".into(), acc);
    row.insert("bytes".into(), json!(bytes));
    row.insert("path".into(), json!(path.display().to_string()));
    crate::table::print_rows(&[row], a.json);
    Ok(())
}

/// `lithe qat`: quantization-aware fine-tuning of a trained ViT, converted to int8; one row
/// `{"model","mode","epochs","fp32_accuracy","accuracy","bytes","path"}`.
pub fn run_qat(a: QatArgs) -> CliResult<()> {
    lithe::kernels::threads::set_num_threads(a.threads);
    let Run::Vit(vit) = load_run(&a.model)? else {
        return Err(
            "lithe qat fine-tunes ViT folders (lithe train vit); for text models use \
                    lithe quantize"
                .into(),
        );
    };
    let (train, test, name) = images_arg(a.data.as_deref())?;
    let fp32_acc = lithe::train::evaluate_vit(&vit, &test)?;
    eprintln!("lithe qat: {name}, fp32 test accuracy {fp32_acc:.4}");
    let opts = TrainOptions {
        epochs: a.epochs,
        batch_size: a.batch,
        lr: a.lr,
        seed: a.seed,
        ..TrainOptions::default()
    };
    let config = QatConfig {
        ema_decay: a.ema_decay,
        ..QatConfig::default()
    };
    qat::finetune_vit(
        &vit,
        &train,
        &test,
        &config,
        &opts,
        &mut progress_printer("qat"),
    )?;
    let engine = qat::convert(&*vit)?;
    let bytes = save(&engine, &a.out)?;
    let path = a.out.join(INT8_FILE);
    eprintln!("lithe qat: saved {}", path.display());
    let mut row = Map::new();
    row.insert("model".into(), json!("vit"));
    row.insert("mode".into(), json!("qat"));
    row.insert("epochs".into(), json!(a.epochs));
    row.insert("fp32_accuracy".into(), json!(round(fp32_acc, 4)));
    row.insert(
        "accuracy".into(),
        json!(round(accuracy_images(&engine, &test)?, 4)),
    );
    row.insert("bytes".into(), json!(bytes));
    row.insert("path".into(), json!(path.display().to_string()));
    crate::table::print_rows(&[row], a.json);
    Ok(())
}

/// `lithe eval --int8`: the accuracy of an int8 model file (or a folder holding
/// model.int8.safetensors, plus tokenizer.json for text); the row of `lithe eval`.
pub fn run_eval(model: &Path, data: Option<&str>, max_len: usize) -> CliResult<Map<String, Value>> {
    let file = int8_file(model);
    let engine = Int8Model::load(&file)?;
    let (kind, data, examples, accuracy) = match engine.kind() {
        lithe::int8::ModelKind::Vit => {
            let (_, test, name) = images_arg(data)?;
            let acc = accuracy_images(&engine, &test)?;
            ("vit", name, test.len(), acc)
        }
        lithe::int8::ModelKind::Bert => {
            let dir = file.parent().unwrap_or(Path::new("."));
            let tok = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
            let data = data.ok_or("--data TSV is required for a text model")?;
            let test = text_set(Path::new(data), max_len.min(engine.max_seq()))?;
            let acc = accuracy_text(&engine, &tok, &test)?;
            ("bert", data.to_string(), test.len(), acc)
        }
    };
    let mut row = Map::new();
    row.insert("model".into(), json!(kind));
    row.insert("data".into(), json!(data));
    row.insert("examples".into(), json!(examples));
    row.insert("accuracy".into(), json!(round(accuracy, 4)));
    Ok(row)
}
