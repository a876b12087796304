//! `lithe ofa`: an elastic width/depth supernet (OFA, DynaBERT) from a trained ViT or BERT.
//! Heads and neurons are sorted by importance, the supernet trains with one sampled
//! sub-network per step distilled from the full model, and every sub-network of the grid is
//! then cut out and measured.
//!
//! Rows `{"subnet","params","layers","heads","ffn","accuracy","of_full","f32_ms"}`: the model
//! before elastic training first, then each sub-network; `of_full` is the accuracy over the
//! supernet's full width and depth, the latency that of a batch of 64 on one thread (this
//! run). The half-width, full-depth sub-network is also saved under `OUT/half-width`.

use crate::subject::{self, Data, DataArgs, Model, ms};
use crate::train::{CliResult, CommonArgs, progress_printer, round};
use clap::Args;
use lithe::compress::elastic::{ElasticConfig, extract_bert, extract_vit, reorder_by_importance};
use lithe::train;
use serde_json::{Map, json};
use std::path::PathBuf;

/// `lithe ofa`: train an elastic supernet and compare its sub-networks.
#[derive(Args)]
pub struct OfaArgs {
    /// Folder written by `lithe train` (config.json says vit or bert).
    #[arg(long)]
    pub model: PathBuf,
    /// Width multipliers, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1.0, 0.75, 0.5])]
    pub widths: Vec<f32>,
    /// Depth multipliers, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1.0])]
    pub depths: Vec<f32>,
    /// Temperature of the self-distillation.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Training samples the importance (which orders heads and neurons) is accumulated over.
    #[arg(long, default_value_t = 2048)]
    pub importance_samples: usize,
    #[command(flatten)]
    pub input: DataArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(a: OfaArgs) -> CliResult<()> {
    lithe::kernels::threads::set_num_threads(a.common.threads);
    let config = ElasticConfig {
        widths: a.widths.clone(),
        depths: a.depths.clone(),
        temperature: a.temperature,
    };
    config.validate()?;
    let (mut model, data) = subject::load(&a.model, &a.input)?;
    let before = model.accuracy(&data)?;
    let bs = a.common.batch;
    let history = match (&mut model, &data) {
        (Model::Vit(m), Data::Images { train, test }) => {
            let imp = train::vit_importance(m, train, bs, a.importance_samples)?;
            reorder_by_importance(&mut m.encoder, &imp)?;
            train::train_vit_ofa(
                m,
                train,
                test,
                &a.common.options(5e-4),
                &config,
                &mut progress_printer("ofa"),
            )?
        }
        (Model::Bert(m), Data::Text { tok, train, test }) => {
            let imp = train::bert_importance(m, tok, train, bs, a.importance_samples)?;
            reorder_by_importance(&mut m.encoder, &imp)?;
            train::train_bert_ofa(
                m,
                tok,
                (train, test),
                &a.common.options(5e-5),
                &config,
                &mut progress_printer("ofa"),
            )?
        }
        _ => unreachable!("subject::load pairs models with their data"),
    };
    model.save(&a.common.out, &data, Some(&history))?;
    eprintln!("lithe ofa: supernet saved to {}", a.common.out.display());
    let row =
        |name: &str, m: &Model, acc: f64, full: f64| -> CliResult<Map<String, serde_json::Value>> {
            let (layers, heads, ffn) = m.shape();
            let mut r = Map::new();
            r.insert("subnet".into(), json!(name));
            r.insert("params".into(), json!(m.num_params()));
            r.insert("layers".into(), json!(layers));
            r.insert("heads".into(), json!(heads));
            r.insert("ffn".into(), json!(ffn));
            r.insert("accuracy".into(), json!(round(acc, 4)));
            r.insert("of_full".into(), json!(round(acc / full.max(1e-12), 4)));
            r.insert("f32_ms".into(), json!(ms(m.f32_latency(&data)?)));
            Ok(r)
        };
    let full = model.accuracy(&data)?;
    let mut rows = vec![row("before elastic training", &model, before, full)?];
    for subnet in config.subnets() {
        let sub = match &model {
            Model::Vit(m) => Model::Vit(Box::new(extract_vit(m, subnet)?)),
            Model::Bert(m) => Model::Bert(Box::new(extract_bert(m, subnet)?)),
        };
        rows.push(row(&subnet.name(), &sub, sub.accuracy(&data)?, full)?);
        if subnet.width == 0.5 && subnet.depth == 1.0 {
            sub.save(&a.common.out.join("half-width"), &data, None)?;
        }
    }
    crate::table::print_rows(&rows, a.common.json);
    Ok(())
}
