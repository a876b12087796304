//! DynamicViT's training objective.
//!
//! Legend: B = batch, P = prefix tokens, N = patch tokens, T = P + N, C = hidden width.

use super::vit::MaskedOutput;
use crate::autograd::{CrossEntropyOptions, Graph, Var};
use crate::compress::distill::soft_kd;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Weights of DynamicViT's loss terms (defaults: the paper's DeiT settings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenDropLoss {
    /// Weight of the keep-ratio loss `mean_s mean_b (mean_j D_s[b, j] - rho_s)^2` (2.0).
    pub ratio_weight: f32,
    /// Weight of `KL(teacher || student)` on the class logits at temperature 1 (0.5).
    pub kd_weight: f32,
    /// Weight of the MSE between the student's and the teacher's final patch tokens, over the
    /// tokens the student kept (0.5).
    pub token_weight: f32,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f32,
}

impl Default for TokenDropLoss {
    fn default() -> Self {
        TokenDropLoss {
            ratio_weight: 2.0,
            kd_weight: 0.5,
            token_weight: 0.5,
            label_smoothing: 0.0,
        }
    }
}

/// The full model's outputs on a batch, the targets of [`token_drop_loss`].
#[derive(Clone, Debug)]
pub struct TeacherTargets {
    /// Class logits `[B, classes]`.
    pub logits: Tensor,
    /// Final-LayerNormed tokens `[B, T, C]`.
    pub features: Tensor,
}

/// `CE(logits, labels) + ratio_weight L_ratio + kd_weight KL + token_weight L_tokens` for a
/// masked forward `out` of a model with `prefix` prefix tokens, whose stages aim at the
/// cumulative keep ratios `ratios`; the `teacher` targets come from the full model:
///
/// - `L_ratio = 1/S sum_s mean_b (mean_j D_s[b, j] - rho_s)^2`;
/// - `L_tokens = sum_{b,j} D[b, j] |f_s[b, P+j] - f_t[b, P+j]|^2 / (C sum_{b,j} D[b, j])` over
///   the last decision `D` (a constant here, as in DynamicViT), 0 when nothing is kept.
///
/// Errors: [`Error::Shape`] when the shapes disagree or `ratios` does not match the stages.
pub fn token_drop_loss(
    g: &Graph,
    out: &MaskedOutput,
    labels: &[usize],
    prefix: usize,
    ratios: &[f32],
    teacher: TeacherTargets,
    weights: &TokenDropLoss,
) -> Result<Var> {
    const OP: &str = "token_drop_loss";
    if ratios.len() != out.decisions.len() {
        return Err(Error::shape(
            OP,
            format!(
                "{} target ratios for {} stages",
                ratios.len(),
                out.decisions.len()
            ),
        ));
    }
    let TeacherTargets {
        logits: teacher_logits,
        features: teacher_features,
    } = teacher;
    let fs = g.shape(out.features)?;
    if teacher_features.shape() != fs.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "student features {fs:?}, teacher features {:?}",
                teacher_features.shape()
            ),
        ));
    }
    let [b, t, c] = fs[..] else {
        return Err(Error::shape(
            OP,
            format!("features must be [B, T, C], got {fs:?}"),
        ));
    };
    let ce = CrossEntropyOptions {
        label_smoothing: weights.label_smoothing,
        ..CrossEntropyOptions::default()
    };
    let mut loss = g.cross_entropy(out.logits, labels, &ce)?;
    if !out.decisions.is_empty() && weights.ratio_weight != 0.0 {
        let mut ratio_loss = None;
        for (&d, &rho) in out.decisions.iter().zip(ratios) {
            let kept = g.add_scalar(g.mean(d, &[1], false)?, -rho)?; // [B]
            let term = g.mean_all(g.mul(kept, kept)?)?;
            ratio_loss = Some(match ratio_loss {
                None => term,
                Some(acc) => g.add(acc, term)?,
            });
        }
        let scale = weights.ratio_weight / out.decisions.len() as f32;
        let ratio_loss = ratio_loss.expect("at least one stage");
        loss = g.add(loss, g.mul_scalar(ratio_loss, scale)?)?;
    }
    if weights.kd_weight != 0.0 {
        let kd = soft_kd(g, out.logits, g.constant(teacher_logits), 1.0)?;
        loss = g.add(loss, g.mul_scalar(kd, weights.kd_weight)?)?;
    }
    if weights.token_weight != 0.0 {
        let n = t - prefix;
        let mask = match out.decisions.last() {
            Some(&d) => g.value(d)?,
            None => Tensor::ones(&[b, n]),
        };
        let kept: f32 = mask.data().iter().sum();
        if kept > 0.0 {
            let student = g.slice(out.features, 1, prefix, t)?; // [B, N, C]
            let teacher = g.constant(teacher_features);
            let teacher = g.slice(teacher, 1, prefix, t)?;
            let diff = g.sub(student, teacher)?;
            let mask = g.constant(mask.reshape(&[b, n, 1])?);
            let sq = g.mul(g.mul(diff, diff)?, mask)?;
            let mse = g.mul_scalar(g.sum_all(sq)?, 1.0 / (kept * c as f32))?;
            loss = g.add(loss, g.mul_scalar(mse, weights.token_weight)?)?;
        }
    }
    Ok(loss)
}
