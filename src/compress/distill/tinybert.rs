//! TinyBERT's layer-wise distillation (Jiao et al. 2020): the student's embedding output,
//! hidden states and attention maps are pulled towards those of mapped teacher layers by MSE,
//! through a learned projection where the widths differ, next to prediction KD.
//!
//! Legend: B = batch, T = tokens, Hs / Ht = student / teacher width, nh = heads.
//!
//! ```text
//! L = w_e MSE(E_s W, E_t) + w_h mean_i MSE(H_s[i] W, H_t[map[i]])
//!   + w_a mean_i MSE(A_s[i], A_t[map[i]]) + w_p KD_T(z_s, z_t)
//! ```
//!
//! with `W` `[Hs -> Ht]` one learned Linear shared by the embedding and every layer (as the
//! reference code's `fit_dense`), absent when the widths agree, and `A` the unnormalised
//! attention scores `Q K^T / sqrt(d)` per head ([`attention_scores`]): the paper found them a
//! better target than the softmax.

use super::kd::soft_kd;
use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::nn::{AttentionParts, INIT_STD, Init, Linear, Module, join};
use crate::tensor::Rng;

/// The student layer `i`'s teacher layer for depths `student` and `teacher`: spread evenly,
/// the student's last layer always on the teacher's last (TinyBERT's `g(m) = m * N / M`,
/// 0-based). Empty when either depth is 0.
pub fn uniform_layer_map(student: usize, teacher: usize) -> Vec<usize> {
    if teacher == 0 {
        return Vec::new();
    }
    (0..student)
        .map(|i| ((i + 1) * teacher).div_ceil(student).max(1) - 1)
        .collect()
}

/// The unnormalised attention scores `[B, nh, T, T]` of a traced attention layer: its query
/// (already scaled by `1 / sqrt(d)`) times its key transposed, before the mask and softmax.
pub fn attention_scores(g: &Graph, parts: &AttentionParts) -> Result<Var> {
    g.matmul_t(parts.query, parts.key) // [B, nh, T, T]
}

/// What TinyBERT compares, for one model on one batch: the embedding output `[B, T, H]`, each
/// block's output `[B, T, H]` and attention scores `[B, nh, T, T]`, and the logits `[B, C]`.
#[derive(Clone, Debug)]
pub struct LayerOutputs {
    /// The embedding layer's output (the first block's input).
    pub embedding: Var,
    /// Every block's output, first to last.
    pub hidden: Vec<Var>,
    /// Every block's attention scores ([`attention_scores`]), first to last.
    pub attention: Vec<Var>,
    /// The prediction logits.
    pub logits: Var,
}

/// The weights of TinyBERT's terms and its layer map.
#[derive(Clone, Debug, PartialEq)]
pub struct TinyBertConfig {
    /// Weight of the embedding MSE.
    pub embedding_weight: f32,
    /// Weight of the hidden-state MSE.
    pub hidden_weight: f32,
    /// Weight of the attention-score MSE.
    pub attention_weight: f32,
    /// Weight of the prediction KD.
    pub prediction_weight: f32,
    /// Temperature of the prediction KD.
    pub temperature: f32,
    /// Teacher block of each student block; `None` is [`uniform_layer_map`].
    pub layer_map: Option<Vec<usize>>,
}

impl Default for TinyBertConfig {
    fn default() -> Self {
        TinyBertConfig {
            embedding_weight: 1.0,
            hidden_weight: 1.0,
            attention_weight: 1.0,
            prediction_weight: 1.0,
            temperature: 1.0,
            layer_map: None,
        }
    }
}

/// TinyBERT's learned map from the student's width to the teacher's (`fit_dense`): a Linear
/// `[Ht, Hs]` when the widths differ, nothing when they agree. Trained with the student, not
/// part of it.
#[derive(Clone, Debug)]
pub struct WidthProjection {
    /// `[Ht, Hs]` weight and `[Ht]` bias; `None` when `Hs == Ht`.
    pub linear: Option<Linear>,
}

impl WidthProjection {
    /// A projection from `student` to `teacher` width, drawn from a truncated `N(0, 0.02^2)`.
    pub fn new(student: usize, teacher: usize, rng: &mut Rng) -> Self {
        WidthProjection {
            linear: (student != teacher)
                .then(|| Linear::new(student, teacher, true, Init::TruncNormal(INIT_STD), rng)),
        }
    }

    /// `x[..., Hs] -> [..., Ht]`, or `x` itself.
    pub fn forward(&self, g: &Graph, x: Var) -> Result<Var> {
        match &self.linear {
            Some(l) => l.forward(g, x),
            None => Ok(x),
        }
    }
}

impl Module for WidthProjection {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        if let Some(l) = &self.linear {
            l.named_params_with_prefix(&join(prefix, "fit_dense"), out);
        }
    }
}

/// Mean over the pairs of `MSE(proj(student[i]), teacher[i])`.
/// [`Error::Shape`] for lists of different lengths, an empty list, or a pair whose shapes differ
/// after the projection.
pub fn hidden_mse(
    g: &Graph,
    student: &[Var],
    teacher: &[Var],
    projection: &WidthProjection,
) -> Result<Var> {
    pairwise_mean(g, "hidden_mse", student, teacher, |s, t| {
        let s = projection.forward(g, s)?;
        g.mse(s, t)
    })
}

/// Mean over the pairs of `MSE(student[i], teacher[i])` of attention maps `[B, nh, T, T]`; the
/// head counts must agree. Errors as [`hidden_mse`].
pub fn attention_mse(g: &Graph, student: &[Var], teacher: &[Var]) -> Result<Var> {
    pairwise_mean(g, "attention_mse", student, teacher, |s, t| g.mse(s, t))
}

fn pairwise_mean(
    g: &Graph,
    op: &'static str,
    student: &[Var],
    teacher: &[Var],
    mut loss: impl FnMut(Var, Var) -> Result<Var>,
) -> Result<Var> {
    if student.len() != teacher.len() || student.is_empty() {
        return Err(Error::shape(
            op,
            format!(
                "{} student and {} teacher layers (need equal, non-zero counts)",
                student.len(),
                teacher.len()
            ),
        ));
    }
    let mut total = None;
    for (&s, &t) in student.iter().zip(teacher) {
        let (ss, ts) = (g.shape(s)?, g.shape(t)?);
        let l = loss(s, t).map_err(|e| match e {
            Error::Shape { .. } => Error::shape(op, format!("student {ss:?}, teacher {ts:?}")),
            e => e,
        })?;
        total = Some(match total {
            None => l,
            Some(acc) => g.add(acc, l)?,
        });
    }
    let total = total.expect("at least one pair");
    g.mul_scalar(total, 1.0 / student.len() as f32)
}

/// TinyBERT's loss (see the module docs) between `student` and `teacher` (the teacher's values
/// usually constants). Terms of weight 0 are not built.
///
/// Errors: [`Error::InvalidArgument`] for a negative weight, a non-positive temperature, or a
/// layer map that is not one teacher block per student block; [`Error::Shape`] as
/// [`hidden_mse`] and [`attention_mse`].
pub fn tinybert_loss(
    g: &Graph,
    student: &LayerOutputs,
    teacher: &LayerOutputs,
    projection: &WidthProjection,
    config: &TinyBertConfig,
) -> Result<Var> {
    const OP: &str = "tinybert_loss";
    let c = config;
    let weights = [
        c.embedding_weight,
        c.hidden_weight,
        c.attention_weight,
        c.prediction_weight,
    ];
    if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
        || !(c.temperature.is_finite() && c.temperature > 0.0)
    {
        return Err(Error::invalid(OP, format!("invalid weights {c:?}")));
    }
    let (s_depth, t_depth) = (student.hidden.len(), teacher.hidden.len());
    if student.attention.len() != s_depth || teacher.attention.len() != t_depth {
        return Err(Error::invalid(
            OP,
            "one attention map per block is needed in the student and the teacher",
        ));
    }
    let map = c
        .layer_map
        .clone()
        .unwrap_or_else(|| uniform_layer_map(s_depth, t_depth));
    if map.len() != s_depth || map.iter().any(|&t| t >= t_depth) {
        return Err(Error::invalid(
            OP,
            format!("layer map {map:?} for {s_depth} student and {t_depth} teacher blocks"),
        ));
    }
    let pick = |xs: &[Var]| -> Vec<Var> { map.iter().map(|&t| xs[t]).collect() };
    let mut terms = Vec::new();
    if c.embedding_weight > 0.0 {
        let e = hidden_mse(g, &[student.embedding], &[teacher.embedding], projection)?;
        terms.push((e, c.embedding_weight));
    }
    if c.hidden_weight > 0.0 && s_depth > 0 {
        let h = hidden_mse(g, &student.hidden, &pick(&teacher.hidden), projection)?;
        terms.push((h, c.hidden_weight));
    }
    if c.attention_weight > 0.0 && s_depth > 0 {
        let a = attention_mse(g, &student.attention, &pick(&teacher.attention))?;
        terms.push((a, c.attention_weight));
    }
    if c.prediction_weight > 0.0 {
        let p = soft_kd(g, student.logits, teacher.logits, c.temperature)?;
        terms.push((p, c.prediction_weight));
    }
    let mut total = None;
    for (term, w) in terms {
        let term = g.mul_scalar(term, w)?;
        total = Some(match total {
            None => term,
            Some(acc) => g.add(acc, term)?,
        });
    }
    total.ok_or_else(|| Error::invalid(OP, "every weight is 0"))
}
