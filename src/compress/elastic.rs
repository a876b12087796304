//! Elastic width and depth (OFA, DynaBERT): one supernet from which sub-networks of several
//! widths and depths can be cut without retraining.
//!
//! 1. [`reorder_by_importance`] sorts each layer's heads and MLP neurons by importance
//!    ([`crate::compress::prune::importance()`]), most important first. This changes nothing the
//!    model computes; it puts the units every narrower network keeps at the front.
//! 2. Training ([`crate::train::train_vit_ofa`]) runs sub-networks ([`Subnet`]) beside the
//!    full model each step: the first `round(w * nh)` heads and `round(w * I)` neurons of the
//!    layers [`subnet_layers`] keeps, run by [`crate::nn::Encoder::forward_subnet`] under
//!    masks. The full model learns from the labels; the smallest sub-network and one drawn at
//!    random (the sandwich rule) learn from the full model's predictions of the same batch
//!    (in-place self-distillation).
//! 3. [`extract_vit`] / [`extract_bert`] cut any sub-network out as a standalone, smaller model
//!    that computes what the supernet computes at that width and depth.

use crate::autograd::Graph;
use crate::compress::prune::shrink::{bert_with_encoder, vit_with_encoder};
use crate::compress::prune::{Importance, PrunePlan, shrink_block, shrink_encoder};
use crate::error::{Error, Result};
use crate::nn::{Bert, Encoder, LayerRun, Vit};

/// A sub-network: a width and a depth multiplier, each in `(0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Subnet {
    /// Fraction of heads and of MLP neurons kept in each layer.
    pub width: f32,
    /// Fraction of layers kept.
    pub depth: f32,
}

impl Subnet {
    /// The whole model.
    pub const FULL: Subnet = Subnet {
        width: 1.0,
        depth: 1.0,
    };

    /// [`Error::InvalidArgument`] unless both multipliers are in `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        let ok = |x: f32| x > 0.0 && x <= 1.0;
        if ok(self.width) && ok(self.depth) {
            Ok(())
        } else {
            Err(Error::invalid("Subnet", format!("{self:?} not in (0, 1]")))
        }
    }

    /// How many of `n` units a multiplier `m` keeps: `round(m * n)`, at least 1.
    pub fn count(m: f32, n: usize) -> usize {
        ((m * n as f32).round() as usize).clamp(1, n)
    }

    /// `w{width}-d{depth}`, e.g. `w0.5-d1`.
    pub fn name(&self) -> String {
        format!("w{}-d{}", self.width, self.depth)
    }
}

/// The widths and depths training samples from.
#[derive(Clone, Debug, PartialEq)]
pub struct ElasticConfig {
    /// Width multipliers (DynaBERT: 1, 3/4, 1/2).
    pub widths: Vec<f32>,
    /// Depth multipliers (DynaBERT: 1, 3/4, 1/2).
    pub depths: Vec<f32>,
    /// Temperature of the self-distillation.
    pub temperature: f32,
}

impl Default for ElasticConfig {
    fn default() -> Self {
        ElasticConfig {
            widths: vec![1.0, 0.75, 0.5],
            depths: vec![1.0, 0.75, 0.5],
            temperature: 1.0,
        }
    }
}

impl ElasticConfig {
    /// Every (width, depth) pair, widest and deepest first.
    pub fn subnets(&self) -> Vec<Subnet> {
        self.depths
            .iter()
            .flat_map(|&depth| {
                self.widths
                    .iter()
                    .map(move |&width| Subnet { width, depth })
            })
            .collect()
    }

    /// [`Error::InvalidArgument`] for an empty list, a multiplier outside `(0, 1]` or a
    /// temperature that is not positive.
    pub fn validate(&self) -> Result<()> {
        if self.widths.is_empty() || self.depths.is_empty() {
            return Err(Error::invalid("ElasticConfig", "no widths or no depths"));
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return Err(Error::invalid("ElasticConfig", "temperature must be > 0"));
        }
        self.subnets().iter().try_for_each(Subnet::validate)
    }
}

/// The layers a depth multiplier keeps out of `layers`: DynaBERT's rule, which drops
/// `D = layers - round(depth * layers)` layers spread evenly, the `i`-th dropped being
/// `floor((i + 1) * layers / D) - 1` (every other layer at depth 1/2, the last kept always
/// the last one only at full depth).
pub fn subnet_layers(layers: usize, depth: f32) -> Vec<usize> {
    let keep = Subnet::count(depth, layers);
    let drop = layers - keep;
    let dropped: Vec<usize> = (0..drop).map(|i| (i + 1) * layers / drop - 1).collect();
    (0..layers).filter(|l| !dropped.contains(l)).collect()
}

/// Sorts every layer's heads and MLP neurons by decreasing importance (in place: the layers
/// are replaced by permuted copies). The model computes the same function afterwards.
/// [`Error::InvalidArgument`] if the scores do not fit the encoder.
pub fn reorder_by_importance(encoder: &mut Encoder, importance: &Importance) -> Result<()> {
    let order = |s: &[f32]| -> Vec<usize> {
        let mut o: Vec<usize> = (0..s.len()).collect();
        o.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
        o
    };
    let plan = PrunePlan::new(
        importance.heads.iter().map(|s| order(s)).collect(),
        importance.neurons.iter().map(|s| order(s)).collect(),
    )?;
    plan.check(encoder)?;
    for (l, block) in encoder.layers.iter_mut().enumerate() {
        if plan.heads(l).len() != block.attention.heads
            || plan.neurons(l).len() != block.mlp.fc1.out_features()
        {
            return Err(Error::invalid(
                "reorder_by_importance",
                format!("layer {l}: scores do not cover every head and neuron"),
            ));
        }
        *block = shrink_block(block, plan.heads(l), plan.neurons(l))?;
    }
    Ok(())
}

/// The layers `subnet` runs and the plan of what each keeps (the first heads and neurons).
fn subnet_plan(encoder: &Encoder, subnet: Subnet) -> Result<(Vec<usize>, PrunePlan)> {
    subnet.validate()?;
    let first = encoder
        .layers
        .first()
        .ok_or_else(|| Error::invalid("Subnet", "the encoder has no layers"))?;
    let layers = subnet_layers(encoder.layers.len(), subnet.depth);
    let plan = PrunePlan::first(
        layers.len(),
        Subnet::count(subnet.width, first.attention.heads),
        Subnet::count(subnet.width, first.mlp.fc1.out_features()),
    )?;
    Ok((layers, plan))
}

/// The [`LayerRun`]s of `subnet` on graph `g`: its layers, with masks keeping the first
/// heads and neurons (no masks at full width). Every layer keeps the same counts, so the two
/// masks are built once and shared by all layers (this runs every training step).
pub fn subnet_runs(g: &Graph, encoder: &Encoder, subnet: Subnet) -> Result<Vec<LayerRun>> {
    let (layers, plan) = subnet_plan(encoder, subnet)?;
    let first = &encoder.layers[0];
    let prefix = |n: usize, kept: usize| {
        let mut t = crate::tensor::Tensor::zeros(&[n]);
        t.data_mut()[..kept].fill(1.0);
        g.constant(t)
    };
    let (heads, neurons) = if subnet.width >= 1.0 {
        (None, None)
    } else {
        (
            Some(prefix(first.attention.heads, plan.heads_kept())),
            Some(prefix(first.mlp.fc1.out_features(), plan.neurons_kept())),
        )
    };
    Ok(layers
        .into_iter()
        .map(|layer| LayerRun {
            layer,
            heads,
            neurons,
        })
        .collect())
}

/// The encoder of `subnet` as standalone blocks.
fn extract_encoder(encoder: &Encoder, subnet: Subnet) -> Result<Encoder> {
    let (layers, plan) = subnet_plan(encoder, subnet)?;
    let kept = Encoder {
        layers: layers.iter().map(|&l| encoder.layers[l].clone()).collect(),
    };
    shrink_encoder(&kept, &plan)
}

/// `subnet` of the elastic `vit` as a standalone [`Vit`] (its own parameters).
pub fn extract_vit(vit: &Vit, subnet: Subnet) -> Result<Vit> {
    vit_with_encoder(vit, extract_encoder(&vit.encoder, subnet)?)
}

/// `subnet` of the elastic `bert` as a standalone [`Bert`] (its own parameters).
pub fn extract_bert(bert: &Bert, subnet: Subnet) -> Result<Bert> {
    bert_with_encoder(bert, extract_encoder(&bert.encoder, subnet)?)
}
