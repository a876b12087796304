//! Soft-label knowledge distillation (Hinton et al.): the student's tempered distribution is
//! pulled towards the teacher's.

use crate::autograd::{CrossEntropyOptions, Graph, Var};
use crate::error::{Error, Result};

/// Soft-label KD loss between `student_logits[..., C]` and `teacher_logits[..., C]` (same
/// shape, seen as `N x C` rows: `[B, C]` for classifiers, `[B, T, C]` per token):
///
/// `loss = T^2 / N * sum_rows KL(p || q)`, with `p = softmax(teacher / T)`,
/// `q = softmax(student / T)` and `KL(p || q) = sum_c p_c (ln p_c - ln q_c)`.
///
/// This is the KL form (PyTorch's `F.kl_div(log_softmax(s / T), softmax(t / T),
/// reduction="batchmean") * T^2`), 0 when the student equals the teacher; it differs from the
/// soft cross-entropy `-sum p ln q` by the teacher's entropy, a constant for the student, so
/// the student's gradient is the same: `dstudent = T / N * (q - p)`. The `T^2` keeps that
/// gradient's scale independent of the temperature.
///
/// Errors: [`Error::InvalidArgument`] unless `temperature` is finite and positive;
/// [`Error::Shape`] for different shapes or a scalar; [`Error::Empty`] for no row or no class.
pub fn soft_kd(
    g: &Graph,
    student_logits: Var,
    teacher_logits: Var,
    temperature: f32,
) -> Result<Var> {
    const OP: &str = "soft_kd";
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::invalid(
            OP,
            format!("temperature = {temperature} must be finite and positive"),
        ));
    }
    let (s_shape, t_shape) = (g.shape(student_logits)?, g.shape(teacher_logits)?);
    if s_shape != t_shape {
        return Err(Error::shape(
            OP,
            format!("student logits {s_shape:?}, teacher logits {t_shape:?}"),
        ));
    }
    let Some(&classes) = s_shape.last() else {
        return Err(Error::shape(OP, "logits must be [..., C], got a scalar"));
    };
    let rows = s_shape[..s_shape.len() - 1].iter().product::<usize>();
    if classes == 0 || rows == 0 {
        return Err(Error::empty(OP, format!("logits of shape {s_shape:?}")));
    }
    let tempered = |x: Var| -> Result<Var> {
        let x = if temperature == 1.0 {
            x
        } else {
            g.mul_scalar(x, 1.0 / temperature)?
        };
        g.reshape(x, &[rows, classes]) // [N, C]
    };
    let log_q = g.log_softmax(tempered(student_logits)?)?; // [N, C]
    let p = g.softmax(tempered(teacher_logits)?)?; // [N, C]
    let kl = g.kl_div(log_q, p)?; // sum over rows / N
    g.mul_scalar(kl, temperature * temperature)
}

/// Soft-label KD mixed with the hard labels: `(1 - alpha) CE(student, labels) + alpha KD_T`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KdConfig {
    /// Temperature T of the soft targets (Hinton et al. use 1 to 20; 4 is common).
    pub temperature: f32,
    /// Share alpha of the soft term, in `[0, 1]`: 0 trains on the labels only, 1 on the
    /// teacher only.
    pub alpha: f32,
}

impl Default for KdConfig {
    fn default() -> Self {
        KdConfig {
            temperature: 4.0,
            alpha: 0.5,
        }
    }
}

impl KdConfig {
    /// [`Error::InvalidArgument`] unless the temperature is finite and positive and `alpha` is
    /// in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::invalid(
                "KdConfig",
                format!(
                    "temperature = {} must be finite and positive",
                    self.temperature
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::invalid(
                "KdConfig",
                format!("alpha = {} is not in [0, 1]", self.alpha),
            ));
        }
        Ok(())
    }
}

/// `(1 - alpha) CE(student_logits, labels) + alpha soft_kd(student_logits, teacher_logits, T)`
/// for `[B, C]` logits; `ce` sets label smoothing of the hard term. A term whose weight is 0 is
/// not built, so `alpha = 0` needs no teacher values beyond their shape.
///
/// Errors: as [`KdConfig::validate`], [`soft_kd`] and [`Graph::cross_entropy`].
pub fn kd_loss(
    g: &Graph,
    student_logits: Var,
    teacher_logits: Var,
    labels: &[usize],
    config: &KdConfig,
    ce: &CrossEntropyOptions,
) -> Result<Var> {
    config.validate()?;
    let hard = g.cross_entropy(student_logits, labels, ce)?;
    if config.alpha == 0.0 {
        return Ok(hard);
    }
    let soft = soft_kd(g, student_logits, teacher_logits, config.temperature)?;
    if config.alpha == 1.0 {
        return Ok(soft);
    }
    g.add(
        g.mul_scalar(hard, 1.0 - config.alpha)?,
        g.mul_scalar(soft, config.alpha)?,
    )
}
