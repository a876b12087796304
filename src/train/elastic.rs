//! Training an elastic supernet (OFA / DynaBERT, [`crate::compress::elastic`]): each step the
//! full model learns from the labels, and one sampled sub-network learns from the full model's
//! predictions of the same batch (in-place self-distillation, the full model's logits entering
//! as constants).

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

/// The sub-network step `step` trains: drawn uniformly from `config`'s grid, seeded by the
/// run's seed and the step, so runs repeat.
fn sample_subnet(config: &ElasticConfig, seed: u64, step: usize) -> Subnet {
    let grid = config.subnets();
    let mut rng = Rng::new(seed ^ (step as u64).wrapping_mul(0xA076_1D64_78BD_642F));
    let pick = (rng.next_f32() * grid.len() as f32) as usize;
    grid[pick.min(grid.len() - 1)]
}

/// `CE(full, labels) + T^2 KL(full / T || sub / T)` for one batch: `full` is the full model's
/// logits on `g`, `sub_of(g)` the sampled sub-network's; the full model's logits are the
/// sub-network's target as constants, so no gradient flows through the target.
fn elastic_loss(
    g: &Graph,
    full: Var,
    labels: &[usize],
    subnet: Subnet,
    temperature: f32,
    sub_of: impl FnOnce() -> Result<Var>,
) -> Result<Var> {
    let ce = CrossEntropyOptions::default();
    let hard = g.cross_entropy(full, labels, &ce)?;
    if subnet == Subnet::FULL {
        return Ok(hard);
    }
    let target = g.constant(g.value(full)?);
    let kd = KdConfig {
        temperature,
        alpha: 1.0,
    };
    let soft = kd_loss(g, sub_of()?, target, labels, &kd, &ce)?;
    g.add(hard, soft)
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
            let subnet = sample_subnet(config, opts.seed, step);
            step += 1;
            let (x, y) = train.batch(rows)?;
            let x = g.constant(x);
            let full = vit.forward_logits(g, x)?;
            elastic_loss(g, full, &y, subnet, config.temperature, || {
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
            let subnet = sample_subnet(config, opts.seed, step);
            step += 1;
            let batch = Batch::new(tok, train, rows)?;
            let full = batch.logits(bert, g)?;
            elastic_loss(g, full, &batch.labels, subnet, config.temperature, || {
                let runs = subnet_runs(g, &bert.encoder, subnet)?;
                let h = bert.embed(g, &batch.ids, batch.shape, Some(&batch.types))?;
                let h = bert
                    .encoder
                    .forward_subnet(g, h, Some(&batch.mask), &runs)?;
                bert.classify(g, h)
            })
        },
        &mut || evaluate_bert(bert, tok, test),
    )
}
