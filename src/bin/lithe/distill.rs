//! `lithe distill`: train a smaller student from a trained teacher and compare them.
//!
//! A ViT teacher (`lithe train vit`) is distilled on images by `kd`, `deit`, `deit-hard`,
//! `sparse-logits` (the teacher's top-k probabilities written once to a file, then the student
//! trained from the file with the teacher dropped) or `tinybert`; `none` trains the same
//! student on the labels only. A BERT teacher (`lithe train text`) goes to the text path
//! ([`crate::distill_text`]). Rows: `{"method","model","params","accuracy","train_seconds"}`,
//! the teacher's first; the sparse method adds the logit file's size next to the dense one's.

use crate::subject::DataArgs;
use crate::train::{CliResult, CommonArgs, images_arg, progress_printer, round};
use clap::{Args, ValueEnum};
use lithe::compress::distill::{DeitTarget, KdConfig, SparseLogits, TinyBertConfig};
use lithe::nn::{Module, Vit, VitConfig};
use lithe::train::{self, ImageDistill};
use lithe::{Rng, io};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::Instant;

/// `lithe distill`: train a smaller student from a trained teacher.
#[derive(Args)]
pub struct DistillArgs {
    /// Teacher folder written by `lithe train` (config.json says vit or bert).
    #[arg(long)]
    pub teacher: PathBuf,
    /// Student: a config.json file, or `depth=N` (the teacher's config with N blocks). Students
    /// whose shapes match the teacher's start from its embeddings, head and first N blocks.
    #[arg(long, default_value = "depth=3")]
    pub student: String,
    /// How the student learns.
    #[arg(long, value_enum)]
    pub method: DistillMethod,
    #[command(flatten)]
    pub input: DataArgs,
    /// KD temperature T.
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f32,
    /// KD share alpha: loss = (1 - alpha) CE(labels) + alpha KD.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Sparse logits: probabilities kept per image.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Start the student from fresh weights instead of the teacher's first blocks.
    #[arg(long)]
    pub random_init: bool,
    /// Theseus: constant replacement rate p (default: the linear schedule below).
    #[arg(long)]
    pub replace_rate: Option<f64>,
    /// Theseus: p(t) = min(1, k t + b) with t the step; k (default: p reaches 1 at the end).
    #[arg(long)]
    pub replace_slope: Option<f64>,
    /// Theseus: b of the schedule.
    #[arg(long, default_value_t = 0.3)]
    pub replace_base: f64,
    /// Theseus: learning rate of module replacement, where only the successor blocks learn
    /// (default: --lr, which the successor's fine-tuning uses).
    #[arg(long)]
    pub replace_lr: Option<f64>,
    /// Theseus: epochs of the successor fine-tuned alone after module replacement.
    #[arg(long, default_value_t = 1)]
    pub successor_epochs: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The distillation methods of `lithe distill --method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistillMethod {
    /// Soft-label KD mixed with the labels.
    Kd,
    /// TinyBERT's layer losses (embedding, hidden states, attention scores) and prediction KD.
    Tinybert,
    /// DeiT's distillation token trained on the teacher's soft labels.
    Deit,
    /// DeiT's distillation token trained on the teacher's argmax.
    DeitHard,
    /// TinyViT's stored top-k teacher probabilities (no teacher in memory while training).
    SparseLogits,
    /// BERT-of-Theseus module replacement (text).
    Theseus,
    /// The same student on the labels only.
    None,
}

pub fn run(a: DistillArgs) -> CliResult<()> {
    lithe::kernels::threads::set_num_threads(a.common.threads);
    match crate::int8::load_run(&a.teacher)? {
        crate::int8::Run::Vit(vit) => run_images(&a, *vit),
        crate::int8::Run::Bert(..) => crate::distill_text::run(&a),
        _ => Err(format!(
            "{} is neither a ViT nor a BERT folder written by `lithe train`",
            a.teacher.display()
        )
        .into()),
    }
}

/// The student's config from `--student` for a ViT teacher; DeiT methods add the distillation
/// token.
fn vit_student_config(spec: &str, teacher: &VitConfig, deit: bool) -> CliResult<VitConfig> {
    let mut config = match spec.strip_prefix("depth=") {
        Some(n) => {
            let depth: usize = n
                .parse()
                .map_err(|_| format!("--student {spec}: depth must be a number"))?;
            if depth == 0 {
                return Err("--student depth must be at least 1".into());
            }
            VitConfig {
                num_hidden_layers: depth,
                ..teacher.clone()
            }
        }
        None => io::load_config::<VitConfig>(spec)?,
    };
    config.distillation_token = deit;
    Ok(config)
}

fn run_images(a: &DistillArgs, teacher: Vit) -> CliResult<()> {
    let method_name = a
        .method
        .to_possible_value()
        .map(|v| v.get_name().to_string());
    let method_name = method_name.unwrap_or_default();
    if a.method == DistillMethod::Theseus {
        return Err("--method theseus replaces BERT blocks: give a BERT teacher (text)".into());
    }
    let (tr, te, data_name) = images_arg(a.input.data.as_deref())?;
    let deit = matches!(a.method, DistillMethod::Deit | DistillMethod::DeitHard);
    let config = vit_student_config(&a.student, &teacher.config, deit)?;
    let mut rng = Rng::new(a.common.seed);
    let student = if a.random_init {
        Vit::new(&config, &mut rng)?
    } else {
        let (student, fresh) = train::vit_student_from_teacher(&teacher, &config, &mut rng)?;
        if !fresh.is_empty() {
            eprintln!("lithe distill: not from the teacher: {}", fresh.join(", "));
        }
        student
    };
    let teacher_accuracy = train::evaluate_vit(&teacher, &te)?;
    eprintln!(
        "lithe distill: teacher {} ({} params, depth {}, test accuracy {teacher_accuracy:.4}); \
         student depth {} ({} params) by {method_name} on {data_name}",
        a.teacher.display(),
        teacher.num_params(),
        teacher.config.num_hidden_layers,
        config.num_hidden_layers,
        student.num_params(),
    );
    let kd = KdConfig {
        temperature: a.temperature,
        alpha: a.alpha,
    };
    kd.validate()?;
    // Sparse logits: one teacher pass over the training set into a file, the teacher dropped,
    // and the student trained from what is read back.
    let mut sparse = None;
    if a.method == DistillMethod::SparseLogits {
        std::fs::create_dir_all(&a.common.out)?;
        let path = a
            .common
            .out
            .join(format!("teacher-top{}.safetensors", a.top_k));
        let start = Instant::now();
        let store = train::sparse_teacher_logits(&teacher, &tr, a.top_k, a.temperature)?;
        store.save(&path)?;
        let bytes = std::fs::metadata(&path)?.len() as usize;
        let dense = SparseLogits::dense_bytes(tr.len(), store.classes());
        eprintln!(
            "lithe distill: wrote {} ({bytes} bytes, {:.1}% of the {dense} bytes of dense f32 \
             logits) in {:.1} s",
            path.display(),
            100.0 * bytes as f64 / dense as f64,
            start.elapsed().as_secs_f64()
        );
        sparse = Some((SparseLogits::load(&path)?, bytes, dense));
    }
    let (teacher_params, teacher_depth) = (teacher.num_params(), teacher.config.num_hidden_layers);
    let teacher = (a.method != DistillMethod::SparseLogits).then_some(teacher);
    let method = match a.method {
        DistillMethod::Kd => ImageDistill::Kd(kd),
        DistillMethod::Deit => ImageDistill::Deit(DeitTarget::Soft {
            temperature: a.temperature,
            alpha: a.alpha,
        }),
        DistillMethod::DeitHard => ImageDistill::Deit(DeitTarget::Hard),
        DistillMethod::SparseLogits => ImageDistill::Sparse {
            store: &sparse.as_ref().expect("written above").0,
            alpha: a.alpha,
        },
        DistillMethod::Tinybert => ImageDistill::TinyBert(TinyBertConfig {
            temperature: a.temperature,
            ..TinyBertConfig::default()
        }),
        DistillMethod::None => ImageDistill::Labels,
        DistillMethod::Theseus => unreachable!("refused above"),
    };
    let opts = a.common.options(1e-3);
    let start = Instant::now();
    let history = train::train_vit_distill(
        &student,
        teacher.as_ref(),
        &method,
        &tr,
        &te,
        &opts,
        &mut progress_printer("distill"),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    train::save_run(&a.common.out, &student, &student.config, Some(&history))?;
    eprintln!("lithe distill: saved to {}", a.common.out.display());

    let row = |method: &str, model: &str, params: usize, acc: f64, secs: Option<f64>| {
        let mut r = Map::new();
        r.insert("method".into(), json!(method));
        r.insert("model".into(), json!(model));
        r.insert("params".into(), json!(params));
        r.insert("accuracy".into(), json!(round(acc, 4)));
        r.insert(
            "of_teacher".into(),
            json!(round(acc / teacher_accuracy.max(1e-12), 4)),
        );
        r.insert(
            "train_seconds".into(),
            secs.map_or(Value::Null, |s| json!(round(s, 1))),
        );
        if let Some((_, bytes, dense)) = &sparse {
            r.insert("logit_bytes".into(), json!(bytes));
            r.insert("dense_bytes".into(), json!(dense));
        }
        r
    };
    let rows = vec![
        row(
            "teacher",
            &format!("depth {teacher_depth}"),
            teacher_params,
            teacher_accuracy,
            None,
        ),
        row(
            &method.name(),
            &format!("depth {}", config.num_hidden_layers),
            student.num_params(),
            history.final_accuracy(),
            Some(seconds),
        ),
    ];
    crate::table::print_rows(&rows, a.common.json);
    Ok(())
}
