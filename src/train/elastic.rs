//! Training an elastic supernet (OFA / DynaBERT, [`crate::compress::elastic`]): each step the
//! full model learns from the labels, and sub-networks learn from the full model's predictions
//! of the same batch (in-place self-distillation, the full model's logits entering as
//! constants): the smallest every step and one drawn at random (the sandwich rule).

use super::images::check_images;
use super::text::{Batch, check_text};
use super::{Event, History, ImageSet, TextSet, TrainOptions, evaluate_bert, evaluate_vit, fit};
use crate::autograd::{CrossEntropyOptions, Graph, Var};
use crate::compress::distill::{KdConfig, kd_loss};
use crate::compress::elastic::{ElasticConfig, Subnet, subnet_runs};
use crate::data::Tokenizer;
use crate::error::Result;
use crate::nn::{Bert, Module, Vit};
use crate::optim::is_bias_or_norm;
use crate::tensor::Rng;

/// The sub-networks step `step` trains besides the full model, by the sandwich rule (BigNAS,
/// US-Nets): the smallest of `config`'s grid every step, since the narrow end is the hardest
/// to keep good, and one other drawn uniformly from the rest (seeded by the run's seed and the
/// step, so runs repeat). Empty when the grid holds only the full model.
fn step_subnets(config: &ElasticConfig, seed: u64, step: usize) -> Vec<Subnet> {
    let grid: Vec<Subnet> = config
        .subnets()
        .into_iter()
        .filter(|s| *s != Subnet::FULL)
        .collect();
    let Some(smallest) = grid.iter().copied().min_by(|a, b| {
        (a.width * a.depth)
            .total_cmp(&(b.width * b.depth))
            .then(a.width.total_cmp(&b.width))
    }) else {
        return Vec::new();
    };
    let others: Vec<Subnet> = grid.into_iter().filter(|s| *s != smallest).collect();
    let mut picked = vec![smallest];
    if !others.is_empty() {
        let mut rng = Rng::new(seed ^ (step as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        let i = (rng.next_f32() * others.len() as f32) as usize;
        picked.push(others[i.min(others.len() - 1)]);
    }
    picked
}

/// `CE(full, labels) + sum_s T^2 KL(full / T || sub_s / T)` for one batch: `full` is the full
/// model's logits on `g`, `sub_of(g, s)` sub-network `s`'s; the full model's logits are the
/// targets as constants, so no gradient flows through them.
fn elastic_loss(
    g: &Graph,
    full: Var,
    labels: &[usize],
    subnets: &[Subnet],
    temperature: f32,
    mut sub_of: impl FnMut(Subnet) -> Result<Var>,
) -> Result<Var> {
    let ce = CrossEntropyOptions::default();
    let mut loss = g.cross_entropy(full, labels, &ce)?;
    if subnets.is_empty() {
        return Ok(loss);
    }
    let target = g.constant(g.value(full)?);
    let kd = KdConfig {
        temperature,
        alpha: 1.0,
    };
    for &s in subnets {
        let soft = kd_loss(g, sub_of(s)?, target, labels, &kd, &ce)?;
        loss = g.add(loss, soft)?;
    }
    Ok(loss)
}

/// Trains the elastic `vit` (its heads and neurons already sorted by
/// [`crate::compress::elastic::reorder_by_importance`]); evaluates the full model on `test`
/// after each epoch. Sub-networks are then cut out with
/// [`crate::compress::elastic::extract_vit`].
pub fn train_vit_ofa(
    vit: &Vit,
    train: &ImageSet,
    test: &ImageSet,
    opts: &TrainOptions,
    config: &ElasticConfig,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    check_images("train_vit_ofa", &vit.config, train, test)?;
    config.validate()?;
    let mut step = 0usize;
    fit(
        &vit.named_params(),
        &is_bias_or_norm,
        train.len(),
        opts,
        progress,
        &mut |g, rows| {
            let subnets = step_subnets(config, opts.seed, step);
            step += 1;
            let (x, y) = train.batch(rows)?;
            let x = g.constant(x);
            let full = vit.forward_logits(g, x)?;
            elastic_loss(g, full, &y, &subnets, config.temperature, |subnet| {
                let runs = subnet_runs(g, &vit.encoder, subnet)?;
                let h = vit.embeddings.forward(g, x)?;
                let h = vit.encoder.forward_subnet(g, h, None, &runs)?;
                vit.logits_from_hidden(g, h)
            })
        },
        &mut || evaluate_vit(vit, test),
    )
}

/// [`train_vit_ofa`] for a BERT classifier on sentences.
pub fn train_bert_ofa(
    bert: &Bert,
    tok: &Tokenizer,
    (train, test): (&TextSet, &TextSet),
    opts: &TrainOptions,
    config: &ElasticConfig,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    check_text(
        "train_bert_ofa",
        bert,
        tok,
        &[("train", train), ("test", test)],
    )?;
    config.validate()?;
    let mut step = 0usize;
    fit(
        &bert.named_params(),
        &is_bias_or_norm,
        train.len(),
        opts,
        progress,
        &mut |g, rows| {
            let subnets = step_subnets(config, opts.seed, step);
            step += 1;
            let batch = Batch::new(tok, train, rows)?;
            let full = batch.logits(bert, g)?;
            elastic_loss(
                g,
                full,
                &batch.labels,
                &subnets,
                config.temperature,
                |subnet| {
                    let runs = subnet_runs(g, &bert.encoder, subnet)?;
                    let h = bert.embed(g, &batch.ids, batch.shape, Some(&batch.types))?;
                    let h = bert
                        .encoder
                        .forward_subnet(g, h, Some(&batch.mask), &runs)?;
                    bert.classify(g, h)
                },
            )
        },
        &mut || evaluate_bert(bert, tok, test),
    )
}
