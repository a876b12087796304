//! `lithe train vit|text` and `lithe eval`: the library trainer (`lithe::train`) behind flags,
//! with progress bars on stderr and a summary table (or `--json` rows) on stdout.

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lithe::data::{Tokenizer, read_tsv};
use lithe::nn::{Bert, BertConfig, Vit, VitConfig};
use lithe::train::{self, Event, History, ImageSet, TextSet, TrainOptions};
use lithe::{Rng, io};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// Where `apt-get install dataset-fashion-mnist` puts the four IDX files.
pub const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

pub type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Subcommand)]
pub enum TrainCommand {
    /// A ViT on Fashion-MNIST (or the IDX images in --data; the shipped 8x8 digits as fallback).
    Vit(VitArgs),
    /// A BERT classifier on `label<TAB>text` files, from scratch or from a Hugging Face BERT.
    Text(TextArgs),
}

/// Flags shared by every training job.
#[derive(Args, Clone)]
pub struct CommonArgs {
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    pub(crate) epochs: usize,
    /// Folder for model.safetensors, config.json, history.json and training.svg.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Samples per step.
    #[arg(long, default_value_t = 64)]
    pub(crate) batch: usize,
    /// Peak learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// AdamW weight decay (biases and norms get none).
    #[arg(long, default_value_t = 0.05)]
    pub(crate) weight_decay: f64,
    /// Label smoothing of the cross-entropy.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) label_smoothing: f32,
    /// Seed of the initialisation and the batch order.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Compute threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
    /// Print JSON lines (one per epoch) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

impl CommonArgs {
    pub(crate) fn options(&self, default_lr: f64) -> TrainOptions {
        TrainOptions {
            epochs: self.epochs,
            batch_size: self.batch,
            lr: self.lr.unwrap_or(default_lr),
            weight_decay: self.weight_decay,
            label_smoothing: self.label_smoothing,
            seed: self.seed,
            ..TrainOptions::default()
        }
    }
}

#[derive(Args)]
pub struct VitArgs {
    /// Folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], or `digits` (the shipped
    /// 8x8 digits); default Fashion-MNIST.
    #[arg(long)]
    data: Option<String>,
    /// Patch side (must divide the image side; 4 is used on the 8x8 digits).
    #[arg(long, default_value_t = 7)]
    patch: usize,
    /// Hidden width.
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 4)]
    depth: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
pub struct TextArgs {
    /// Training examples, `label<TAB>text` per line.
    #[arg(long)]
    train: PathBuf,
    /// Test examples, same format.
    #[arg(long)]
    test: PathBuf,
    /// WordPiece vocabulary (one token per line; lower-cased input).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// A Hugging Face BERT directory to fine-tune (its classifier head is new).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Longest token sequence.
    #[arg(long, default_value_t = 64)]
    max_len: usize,
    /// Hidden width of a model trained from scratch.
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Blocks of a model trained from scratch.
    #[arg(long, default_value_t = 2)]
    depth: usize,
    /// Heads of a model trained from scratch.
    #[arg(long, default_value_t = 2)]
    heads: usize,
    /// ALBERT's factorized embedding for a model trained from scratch: tables of this width,
    /// then a Linear to the hidden width.
    #[arg(long)]
    embedding_size: Option<usize>,
    /// ALBERT's cross-layer sharing for a model trained from scratch: the blocks hold this many
    /// distinct weight sets (must divide --depth; 1 shares one block across all layers).
    #[arg(long)]
    groups: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
pub struct EvalArgs {
    /// A folder written by `lithe train` (config.json says vit or bert); with --int8, an int8
    /// model file or folder.
    #[arg(long)]
    model: PathBuf,
    /// Images: an IDX folder (default Fashion-MNIST, or `digits` for the shipped digits' test
    /// split). Text: a test TSV.
    #[arg(long)]
    data: Option<String>,
    /// Longest token sequence (text models).
    #[arg(long, default_value_t = 64)]
    max_len: usize,
    /// Print a JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// --model is an int8 model file, or a folder with model.int8.safetensors (`lithe
    /// quantize`, `lithe qat`).
    #[arg(long)]
    int8: bool,
}

/// A progress bar per epoch on stderr and a line per finished epoch.
pub fn progress_printer(what: &'static str) -> impl FnMut(Event) {
    let mut bar: Option<ProgressBar> = None;
    move |event| match event {
        Event::EpochStart { epoch, steps } => {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} eta {eta} {msg}",
                )
                .expect("valid template"),
            );
            b.set_prefix(format!("{what} epoch {epoch}"));
            bar = Some(b);
        }
        Event::Step { loss } => {
            if let Some(b) = &bar {
                b.inc(1);
                b.set_message(format!("loss {loss:.4}"));
            }
        }
        Event::EpochEnd(s) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            eprintln!(
                "{what} epoch {}: train loss {:.4}  test accuracy {:.4}  ({:.1} s)",
                s.epoch, s.train_loss, s.test_accuracy, s.train_seconds
            );
        }
    }
}

/// The per-epoch rows of a run.
fn history_rows(h: &History) -> Vec<Map<String, Value>> {
    h.epochs
        .iter()
        .map(|e| {
            let mut row = Map::new();
            row.insert("epoch".into(), json!(e.epoch));
            row.insert("train_loss".into(), json!(round(e.train_loss, 4)));
            row.insert("test_accuracy".into(), json!(round(e.test_accuracy, 4)));
            row.insert("seconds".into(), json!(round(e.train_seconds, 2)));
            row
        })
        .collect()
}

pub fn round(x: f64, digits: i32) -> f64 {
    let s = 10f64.powi(digits);
    (x * s).round() / s
}

/// `(train, test, name)`: the IDX folder `dir` if given (an error if unreadable), else
/// Fashion-MNIST if installed, else the shipped digits (saying so on stderr).
pub fn image_data(dir: Option<&Path>) -> CliResult<(ImageSet, ImageSet, String)> {
    if let Some(d) = dir {
        if !d.is_dir() {
            // Scripts name Debian's Fashion-MNIST folder explicitly: say how to get it.
            let hint = if d == Path::new(FASHION_DIR) {
                " (apt-get install dataset-fashion-mnist)"
            } else {
                ""
            };
            return Err(format!("data folder {} does not exist{hint}", d.display()).into());
        }
        let (tr, te) = train::load_image_dir(d)?;
        return Ok((tr, te, d.display().to_string()));
    }
    let fashion = Path::new(FASHION_DIR);
    if fashion.join("train-images-idx3-ubyte.gz").exists() {
        let (tr, te) = train::load_image_dir(fashion)?;
        return Ok((tr, te, "fashion-mnist".into()));
    }
    eprintln!(
        "lithe: Fashion-MNIST not found in {FASHION_DIR} (apt-get install dataset-fashion-mnist); \
         using the shipped 8x8 digits (80/20 split)"
    );
    let (tr, te) = train::digits_split(42)?;
    Ok((tr, te, "digits8x8".into()))
}

fn run_vit(a: VitArgs) -> CliResult<()> {
    lithe::kernels::threads::set_num_threads(a.common.threads);
    let (tr, te, name) = images_arg(a.data.as_deref())?;
    if a.patch == 0 {
        return Err("--patch must be at least 1".into());
    }
    // The 8x8 digits cannot take 7x7 patches; use 4x4 there unless told otherwise.
    let patch = if tr.side % a.patch != 0 && tr.side == 8 {
        4
    } else {
        a.patch
    };
    let config = VitConfig {
        image_size: tr.side,
        patch_size: patch,
        num_channels: tr.channels,
        hidden_size: a.width,
        num_hidden_layers: a.depth,
        num_attention_heads: a.heads,
        intermediate_size: 2 * a.width,
        num_labels: tr.num_classes().max(te.num_classes()),
        ..VitConfig::default()
    };
    let vit = Vit::new(&config, &mut Rng::new(a.common.seed))?;
    eprintln!(
        "lithe train vit: {name}, {} train / {} test images, {} params",
        tr.len(),
        te.len(),
        lithe::nn::Module::num_params(&vit)
    );
    let opts = a.common.options(2e-3);
    let history = train::train_vit(&vit, &tr, &te, &opts, &mut progress_printer("vit"))?;
    train::save_run(&a.common.out, &vit, &config, Some(&history))?;
    eprintln!("lithe train vit: saved to {}", a.common.out.display());
    crate::table::print_rows(&history_rows(&history), a.common.json);
    Ok(())
}

pub fn text_set(path: &Path, max_len: usize) -> CliResult<TextSet> {
    let rows = read_tsv(path)?;
    if rows.is_empty() {
        return Err(format!("{} has no examples", path.display()).into());
    }
    Ok(TextSet::new(rows, max_len))
}

fn run_text(a: TextArgs) -> CliResult<()> {
    lithe::kernels::threads::set_num_threads(a.common.threads);
    let tr = text_set(&a.train, a.max_len)?;
    let te = text_set(&a.test, a.max_len)?;
    let classes = tr.num_classes().max(te.num_classes()).max(2);
    let mut rng = Rng::new(a.common.seed);
    let (bert, tok, default_lr) = match &a.init {
        Some(dir) => {
            if a.embedding_size.is_some() || a.groups.is_some() {
                let why = "--embedding-size and --groups shape a model trained from scratch";
                return Err(format!("{why}, not one loaded with --init").into());
            }
            let hf = io::import_hf_bert_dir(dir)?;
            let mut config = hf.config.clone();
            config.num_labels = classes;
            let bert = Bert::new(&config, &mut rng)?;
            // Everything but the classifier head, which is new.
            let report = hf.load_into(&bert, false)?;
            eprintln!(
                "lithe train text: {} tensors from {}; new: {}",
                report.loaded.len(),
                dir.display(),
                report.missing.join(", ")
            );
            let tok = match &a.vocab {
                Some(v) => Tokenizer::from_vocab(v, true)?,
                None => Tokenizer::from_file(&hf.tokenizer)?,
            };
            (bert, tok, 5e-5)
        }
        None => {
            let vocab = a
                .vocab
                .as_ref()
                .ok_or("--vocab is required when training from scratch (no --init)")?;
            let tok = Tokenizer::from_vocab(vocab, true)?;
            let config = BertConfig {
                vocab_size: tok.vocab_size(),
                hidden_size: a.width,
                num_hidden_layers: a.depth,
                num_attention_heads: a.heads,
                intermediate_size: 4 * a.width,
                max_position_embeddings: a.max_len.max(8),
                hidden_dropout_prob: 0.1,
                attention_probs_dropout_prob: 0.1,
                num_labels: classes,
                embedding_size: a.embedding_size,
                num_hidden_groups: a.groups,
                ..BertConfig::default()
            };
            (Bert::new(&config, &mut rng)?, tok, 5e-4)
        }
    };
    if a.max_len > bert.config.max_position_embeddings {
        return Err(format!(
            "--max-len {} exceeds the model's {} positions",
            a.max_len, bert.config.max_position_embeddings
        )
        .into());
    }
    eprintln!(
        "lithe train text: {} train / {} test texts, {classes} classes, {} params",
        tr.len(),
        te.len(),
        lithe::nn::Module::num_params(&bert)
    );
    let opts = a.common.options(default_lr);
    let history = train::train_bert(&bert, &tok, &tr, &te, &opts, &mut progress_printer("text"))?;
    train::save_run(&a.common.out, &bert, &bert.config, Some(&history))?;
    tok.save(&a.common.out.join("tokenizer.json"))?;
    eprintln!("lithe train text: saved to {}", a.common.out.display());
    crate::table::print_rows(&history_rows(&history), a.common.json);
    Ok(())
}

/// `lithe train ...`.
pub fn run(cmd: TrainCommand) -> CliResult<()> {
    match cmd {
        TrainCommand::Vit(a) => run_vit(a),
        TrainCommand::Text(a) => run_text(a),
    }
}

/// `(train, test, name)` of an image `--data` argument: `digits` (the shipped digits' 80/20
/// split), an IDX folder, or none (Fashion-MNIST if installed, else the digits).
pub fn images_arg(arg: Option<&str>) -> CliResult<(ImageSet, ImageSet, String)> {
    match arg {
        Some("digits") => {
            let (tr, te) = train::digits_split(42)?;
            Ok((tr, te, "digits8x8".to_string()))
        }
        other => image_data(other.map(Path::new)),
    }
}

/// `lithe eval --model DIR --data ... [--int8]`: one row `{"model","data","examples","accuracy"}`.
pub fn run_eval(a: EvalArgs) -> CliResult<()> {
    if a.int8 {
        let row = crate::int8::run_eval(&a.model, a.data.as_deref(), a.max_len)?;
        crate::table::print_rows(&[row], a.json);
        return Ok(());
    }
    let (kind, data, examples, accuracy) = match crate::int8::load_run(&a.model)? {
        crate::int8::Run::Vit(vit) => {
            let (_, te, name) = images_arg(a.data.as_deref())?;
            let acc = train::evaluate_vit(&vit, &te)?;
            ("vit", name, te.len(), acc)
        }
        crate::int8::Run::MiniVit(student) => {
            let (_, te, name) = images_arg(a.data.as_deref())?;
            let acc = train::evaluate_minivit(&student, &te)?;
            ("minivit", name, te.len(), acc)
        }
        crate::int8::Run::DynamicVit(model) => {
            let (_, te, name) = images_arg(a.data.as_deref())?;
            let acc = train::evaluate_dynamic_vit(&model, &te)?;
            ("dynamicvit", name, te.len(), acc)
        }
        crate::int8::Run::Bert(bert, tok) => {
            let data = a.data.ok_or("--data TSV is required for a text model")?;
            let te = text_set(Path::new(&data), a.max_len)?;
            let acc = train::evaluate_bert(&bert, &tok, &te)?;
            ("bert", data, te.len(), acc)
        }
    };
    let mut row = Map::new();
    row.insert("model".into(), json!(kind));
    row.insert("data".into(), json!(data));
    row.insert("examples".into(), json!(examples));
    row.insert("accuracy".into(), json!(round(accuracy, 4)));
    crate::table::print_rows(&[row], a.json);
    Ok(())
}
