//! `lithe distill` for BERT teachers: a `depth=N` student trained on a text classification set
//! by soft-label KD, by BERT-of-Theseus module replacement, or on labels only (`none`: the
//! teacher's first N blocks fine-tuned). One row for the teacher and one for the student.

use crate::distill::{DistillArgs, DistillMethod};
use crate::train::{CliResult, progress_printer, round, text_set};
use lithe::compress::distill::KdConfig;
use lithe::compress::theseus::{ReplaceSchedule, Theseus};
use lithe::data::Tokenizer;
use lithe::nn::{Bert, BertConfig, Module};
use lithe::train::{self, History, TextSet, TrainOptions};
use lithe::{Rng, io};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::Instant;

/// The flag spelling of `m` (`deit-hard`, not `DeitHard`).
fn method_name(m: DistillMethod) -> String {
    clap::ValueEnum::to_possible_value(&m)
        .map_or_else(|| format!("{m:?}"), |v| v.get_name().to_string())
}

/// The student's depth from `--student depth=N`.
fn student_depth(spec: &str, teacher_depth: usize) -> CliResult<usize> {
    let n = spec
        .strip_prefix("depth=")
        .ok_or_else(|| {
            format!(
                "--student {spec:?}: text students are given as depth=N (N blocks of the teacher)"
            )
        })?
        .parse::<usize>()
        .map_err(|e| format!("--student {spec:?}: {e}"))?;
    if n == 0 || n > teacher_depth {
        return Err(format!(
            "--student depth={n}: the teacher has {teacher_depth} blocks (need 1..={teacher_depth})"
        )
        .into());
    }
    Ok(n)
}

/// The BERT and tokenizer of a `lithe train text` folder.
fn load_teacher(dir: &Path) -> CliResult<(Bert, Tokenizer)> {
    let config: BertConfig = io::load_config(dir.join("config.json"))?;
    let bert = Bert::new(&config, &mut Rng::new(0))?;
    io::load_into_module(&bert, dir.join("model.safetensors"), true)?;
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json"))
        .map_err(|e| format!("{}: {e}", dir.join("tokenizer.json").display()))?;
    Ok((bert, tok))
}

/// Training seconds recorded in the teacher's `history.json`, if there is one.
fn teacher_seconds(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("history.json")).ok()?;
    let h: Value = serde_json::from_str(&text).ok()?;
    h["epochs"]
        .as_array()?
        .iter()
        .map(|e| e["train_seconds"].as_f64())
        .sum()
}

fn row(method: &str, bert: &Bert, accuracy: f64, train_seconds: Option<f64>) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("method".into(), json!(method));
    r.insert(
        "model".into(),
        json!(format!("bert depth {}", bert.config.num_hidden_layers)),
    );
    r.insert("params".into(), json!(bert.num_params()));
    r.insert("accuracy".into(), json!(round(accuracy, 4)));
    r.insert(
        "train_seconds".into(),
        train_seconds.map_or(Value::Null, |s| json!(round(s, 1))),
    );
    r
}

/// The replacement schedule of the flags: a constant rate, the given slope, or the slope that
/// reaches 1 at the last replacement step.
fn schedule(a: &DistillArgs, n_train: usize, opts: &TrainOptions) -> CliResult<ReplaceSchedule> {
    let s = match (a.replace_rate, a.replace_slope) {
        (Some(p), _) => ReplaceSchedule::Constant(p),
        (None, Some(slope)) => ReplaceSchedule::Linear {
            slope,
            base: a.replace_base,
        },
        (None, None) => {
            ReplaceSchedule::reaching_one(a.replace_base, train::training_steps(n_train, opts)?)?
        }
    };
    s.validate()?;
    Ok(s)
}

/// Trains the student by `a.method`; returns it and its history (phases one after another).
fn train_student(
    a: &DistillArgs,
    teacher: &Bert,
    depth: usize,
    tok: &Tokenizer,
    (tr, te): (&TextSet, &TextSet),
    opts: &TrainOptions,
) -> CliResult<(Bert, History)> {
    match a.method {
        DistillMethod::None => {
            let student = train::first_layers(teacher, depth)?;
            let h = train::train_bert(&student, tok, tr, te, opts, &mut progress_printer("none"))?;
            Ok((student, h))
        }
        DistillMethod::Kd => {
            let student = train::first_layers(teacher, depth)?;
            let kd = KdConfig {
                temperature: a.temperature,
                alpha: a.alpha,
            };
            let h = train::train_bert_kd(
                &student,
                teacher,
                tok,
                (tr, te),
                opts,
                &kd,
                &mut progress_printer("kd"),
            )?;
            Ok((student, h))
        }
        DistillMethod::Theseus => {
            let schedule = schedule(a, tr.len(), opts)?;
            eprintln!("lithe distill: theseus replacement rate {schedule:?}");
            // Freezes the teacher's parameters (it is not trained here).
            let theseus = Theseus::new(teacher.clone(), depth)?;
            // Phase 1 (only the successor blocks learn) may take its own learning rate; phase 2
            // fine-tunes the extracted successor with the common options.
            let replacement = TrainOptions {
                lr: a.replace_lr.unwrap_or(opts.lr),
                ..opts.clone()
            };
            let fine_tune = TrainOptions {
                epochs: a.successor_epochs,
                ..opts.clone()
            };
            let run = train::train_theseus(
                &theseus,
                tok,
                tr,
                te,
                &replacement,
                schedule,
                (a.successor_epochs > 0).then_some(&fine_tune),
                &mut progress_printer("theseus"),
            )?;
            let mut history = run.replacement;
            let offset = history.epochs.len();
            history
                .epochs
                .extend(run.fine_tune.epochs.into_iter().map(|mut e| {
                    e.epoch += offset;
                    e
                }));
            Ok((run.successor, history))
        }
        other => Err(refused(other)),
    }
}

fn refused(m: DistillMethod) -> Box<dyn std::error::Error> {
    format!(
        "--method {} is for image teachers; a BERT teacher takes kd, theseus or none",
        method_name(m)
    )
    .into()
}

/// `lithe distill --teacher BERT_DIR --train TSV --test TSV --method kd|theseus|none`.
pub fn run(a: &DistillArgs) -> CliResult<()> {
    if !matches!(
        a.method,
        DistillMethod::Kd | DistillMethod::Theseus | DistillMethod::None
    ) {
        return Err(refused(a.method));
    }
    lithe::kernels::threads::set_num_threads(a.common.threads);
    let train_path = a
        .input
        .train
        .as_ref()
        .ok_or("--train TSV is required for a BERT teacher")?;
    let test_path = a
        .input
        .test
        .as_ref()
        .ok_or("--test TSV is required for a BERT teacher")?;
    let (teacher, tok) = load_teacher(&a.teacher)?;
    let depth = student_depth(&a.student, teacher.blocks().len())?;
    if a.input.max_len > teacher.config.max_position_embeddings {
        return Err(format!(
            "--max-len {} exceeds the teacher's {} positions",
            a.input.max_len, teacher.config.max_position_embeddings
        )
        .into());
    }
    let tr = text_set(train_path, a.input.max_len)?;
    let te = text_set(test_path, a.input.max_len)?;
    let opts = a.common.options(5e-5);
    if a.method == DistillMethod::Theseus {
        // Before the teacher's evaluation: a bad grouping or rate fails at once.
        let teacher_depth = teacher.blocks().len();
        if !teacher_depth.is_multiple_of(depth) {
            return Err(format!(
                "--student depth={depth}: theseus needs a depth dividing the teacher's {teacher_depth} blocks"
            )
            .into());
        }
        schedule(a, tr.len(), &opts)?;
    }
    let teacher_acc = train::evaluate_bert(&teacher, &tok, &te)?;
    eprintln!(
        "lithe distill: teacher {} blocks, {} params, test accuracy {teacher_acc:.4}; \
         {} train / {} test texts",
        teacher.blocks().len(),
        teacher.num_params(),
        tr.len(),
        te.len()
    );
    let start = Instant::now();
    let (student, history) = train_student(a, &teacher, depth, &tok, (&tr, &te), &opts)?;
    let seconds = start.elapsed().as_secs_f64();
    train::save_run(&a.common.out, &student, &student.config, Some(&history))?;
    tok.save(&a.common.out.join("tokenizer.json"))?;
    eprintln!(
        "lithe distill: student saved to {} ({seconds:.1} s with evaluations)",
        a.common.out.display()
    );
    let method = method_name(a.method);
    let rows = [
        row(
            "teacher",
            &teacher,
            teacher_acc,
            teacher_seconds(&a.teacher),
        ),
        row(
            &method,
            &student,
            history.final_accuracy(),
            Some(history.train_seconds()),
        ),
    ];
    crate::table::print_rows(&rows, a.common.json);
    Ok(())
}
