//! DeiT's distillation token (Touvron et al. 2021): the student carries a second token whose
//! head learns from the teacher while the class token's head learns from the labels; at
//! inference the two heads' logits are averaged ([`crate::nn::deit_logits`]).

use super::kd::soft_kd;
use crate::autograd::{CrossEntropyOptions, Graph, Var};
use crate::error::{Error, Result};

/// What the distillation head is trained on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DeitTarget {
    /// The teacher's tempered distribution: `(1 - alpha) CE(cls, y) + alpha KD_T(dist, teacher)`.
    Soft {
        /// Temperature T.
        temperature: f32,
        /// Share of the distillation head's term, in `[0, 1]`.
        alpha: f32,
    },
    /// The teacher's argmax as a label: `CE(cls, y) / 2 + CE(dist, argmax teacher) / 2` (the
    /// paper's better variant).
    Hard,
}

impl DeitTarget {
    /// [`Error::InvalidArgument`] for a temperature that is not finite and positive, or an
    /// `alpha` outside `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if let DeitTarget::Soft { temperature, alpha } = *self {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(Error::invalid(
                    "DeitTarget",
                    format!("temperature = {temperature} must be finite and positive"),
                ));
            }
            if !(0.0..=1.0).contains(&alpha) {
                return Err(Error::invalid(
                    "DeitTarget",
                    format!("alpha = {alpha} is not in [0, 1]"),
                ));
            }
        }
        Ok(())
    }
}

/// The class of each row of `logits[n, C]` (the first on ties).
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks_exact(classes.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (c, &v)| {
                    if v > best.1 { (c, v) } else { best }
                })
                .0
        })
        .collect()
}

/// DeiT's loss for the class head's logits `cls[B, C]` and the distillation head's `dist[B, C]`
/// against the labels and the teacher's logits `teacher[B, C]` (a constant, usually). `ce` sets
/// label smoothing of the label term (the teacher's hard labels are never smoothed, as in the
/// paper).
///
/// Errors: [`Error::Shape`] unless the three logits share one `[B, C]` shape with `B` labels;
/// as [`DeitTarget::validate`] and [`Graph::cross_entropy`].
pub fn deit_loss(
    g: &Graph,
    cls: Var,
    dist: Var,
    teacher: Var,
    labels: &[usize],
    target: &DeitTarget,
    ce: &CrossEntropyOptions,
) -> Result<Var> {
    const OP: &str = "deit_loss";
    target.validate()?;
    let shape = g.shape(cls)?;
    let [_, classes] = shape[..] else {
        return Err(Error::shape(
            OP,
            format!("logits must be [B, C], got {shape:?}"),
        ));
    };
    for (name, v) in [("distillation", dist), ("teacher", teacher)] {
        let s = g.shape(v)?;
        if s != shape {
            return Err(Error::shape(
                OP,
                format!("{name} logits are {s:?}, class logits {shape:?}"),
            ));
        }
    }
    let hard = g.cross_entropy(cls, labels, ce)?;
    match *target {
        DeitTarget::Soft { temperature, alpha } => {
            let soft = soft_kd(g, dist, teacher, temperature)?;
            g.add(g.mul_scalar(hard, 1.0 - alpha)?, g.mul_scalar(soft, alpha)?)
        }
        DeitTarget::Hard => {
            let teacher_labels = argmax_rows(g.value(teacher)?.data(), classes);
            let plain = CrossEntropyOptions::default();
            let distilled = g.cross_entropy(dist, &teacher_labels, &plain)?;
            g.mul_scalar(g.add(hard, distilled)?, 0.5)
        }
    }
}
