//! `lithe distill`: train a smaller student from a trained teacher; the teacher's
//! `config.json` (`model_type`) picks the image or the text path.

use crate::train::CliResult;
use std::path::PathBuf;

/// `lithe distill`: train a smaller student from a trained teacher.
#[derive(clap::Args)]
pub struct DistillArgs {
    /// Teacher folder written by `lithe train` (config.json says vit or bert).
    #[arg(long)]
    pub teacher: PathBuf,
    /// Student: a config.json file, or `depth=N` (the teacher's config with N blocks). Students
    /// whose shapes match the teacher's start from its embeddings, head and first N blocks.
    #[arg(long, default_value = "depth=3")]
    pub student: String,
    /// kd | tinybert | deit | deit-hard | sparse-logits | theseus | none (labels only).
    #[arg(long, value_enum)]
    pub method: DistillMethod,
    /// Images: IDX folder or `digits` (ViT teachers).
    #[arg(long)]
    pub data: Option<String>,
    /// Text: training TSV `label<TAB>text` (BERT teachers).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Text: test TSV.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Text: longest token sequence.
    #[arg(long, default_value_t = 64)]
    pub max_len: usize,
    /// KD temperature T.
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f32,
    /// KD share alpha: loss = (1 - alpha) CE(labels) + alpha KD.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Theseus: constant replacement rate p (default: the linear schedule below).
    #[arg(long)]
    pub replace_rate: Option<f64>,
    /// Theseus: p(t) = min(1, k t + b) with t the step; k.
    #[arg(long)]
    pub replace_slope: Option<f64>,
    /// Theseus: b of the schedule.
    #[arg(long, default_value_t = 0.3)]
    pub replace_base: f64,
    /// Theseus: epochs of the successor fine-tuned alone after module replacement.
    #[arg(long, default_value_t = 1)]
    pub successor_epochs: usize,
    #[command(flatten)]
    pub common: crate::train::CommonArgs,
}

/// The distillation method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DistillMethod {
    /// Soft-label KD plus the labels' cross-entropy.
    Kd,
    /// TinyBERT: hidden states and attention maps, then KD.
    Tinybert,
    /// DeiT: a distillation token trained on the teacher's soft labels.
    Deit,
    /// DeiT with the teacher's hard labels.
    DeitHard,
    /// TinyViT-style stored sparse teacher logits.
    SparseLogits,
    /// BERT-of-Theseus progressive module replacement.
    Theseus,
    /// The student trained on labels only (no teacher signal).
    None,
}

/// `lithe distill ...`: BERT teachers go to the text path.
pub fn run(a: DistillArgs) -> CliResult<()> {
    let config_path = a.teacher.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not JSON: {e}", config_path.display()))?;
    match config["model_type"].as_str() {
        Some("bert") => crate::distill_text::run(&a),
        other => Err(format!(
            "{}: model_type {other:?}: only \"bert\" teachers can be distilled here",
            config_path.display()
        )
        .into()),
    }
}
