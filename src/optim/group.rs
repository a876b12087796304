//! Parameter groups: which parameters share a weight decay and a learning-rate scale.

use crate::autograd::Param;
use crate::error::{Error, Result};

/// A set of parameters with their own weight decay and learning-rate scale, like one entry of
/// PyTorch's `param_groups`.
///
/// `weight_decay: None` takes the optimizer's default; `lr_scale` multiplies the optimizer's
/// (scheduled) learning rate for this group (1 by default; e.g. layer-wise learning-rate decay).
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// The parameters of the group.
    pub params: Vec<Param>,
    /// The group's weight decay, or `None` for the optimizer's default.
    pub weight_decay: Option<f64>,
    /// Factor on the optimizer's learning rate for this group.
    pub lr_scale: f64,
}

impl ParamGroup {
    /// A group with the optimizer's default weight decay and learning rate.
    pub fn new(params: Vec<Param>) -> Self {
        ParamGroup {
            params,
            weight_decay: None,
            lr_scale: 1.0,
        }
    }

    /// The same group with its own weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = Some(weight_decay);
        self
    }

    /// The same group with a learning-rate factor.
    pub fn with_lr_scale(mut self, lr_scale: f64) -> Self {
        self.lr_scale = lr_scale;
        self
    }

    /// Splits named parameters (e.g. [`crate::nn::Module::named_params`]) into two groups, in
    /// their original order: `[decay, no_decay]`, where `no_decay(name, param)` selects the
    /// parameters that get no weight decay (weight decay 0); the others take the optimizer's
    /// default. [`is_bias_or_norm`] is the usual predicate for BERT and ViT.
    pub fn split_decay<'a>(
        named: impl IntoIterator<Item = &'a (String, Param)>,
        no_decay: impl Fn(&str, &Param) -> bool,
    ) -> [ParamGroup; 2] {
        let (mut decay, mut keep) = (Vec::new(), Vec::new());
        for (name, p) in named {
            if no_decay(name, p) {
                keep.push(p.clone());
            } else {
                decay.push(p.clone());
            }
        }
        [
            ParamGroup::new(decay),
            ParamGroup::new(keep).with_weight_decay(0.0),
        ]
    }
}

/// The usual "no weight decay" rule for Transformers (Hugging Face's `["bias",
/// "LayerNorm.weight"]`, widened to ViT's names): the parameter's last name segment is `bias`,
/// or the module holding it has `norm` in its name, in any case (`LayerNorm`, `layernorm_before`,
/// `norm`, ...).
///
/// ```
/// use lithe::optim::is_bias_or_norm;
/// assert!(is_bias_or_norm("encoder.layer.0.attention.self.query.bias"));
/// assert!(is_bias_or_norm("embeddings.LayerNorm.weight"));
/// assert!(is_bias_or_norm("vit.encoder.layer.3.layernorm_before.weight"));
/// assert!(!is_bias_or_norm("encoder.layer.0.attention.self.query.weight"));
/// ```
pub fn is_bias_or_norm(name: &str) -> bool {
    let mut segments = name.rsplit('.');
    let last = segments.next().unwrap_or("");
    let owner = segments.next().unwrap_or("");
    last == "bias" || owner.to_ascii_lowercase().contains("norm")
}

/// One parameter as an optimizer holds it: the handle, its group's settings, its state.
#[derive(Debug)]
pub(super) struct Slot<S> {
    pub param: Param,
    pub weight_decay: f64,
    pub lr_scale: f64,
    pub state: Option<S>,
}

/// Flattens groups into slots, rejecting a parameter that appears twice (as PyTorch does) and a
/// negative or non-finite group setting.
pub(super) fn slots<S>(
    op: &'static str,
    groups: Vec<ParamGroup>,
    default_weight_decay: f64,
) -> Result<Vec<Slot<S>>> {
    let mut out: Vec<Slot<S>> = Vec::new();
    for (gi, g) in groups.into_iter().enumerate() {
        let weight_decay = g.weight_decay.unwrap_or(default_weight_decay);
        check_non_negative(op, &format!("group {gi} weight_decay"), weight_decay)?;
        check_non_negative(op, &format!("group {gi} lr_scale"), g.lr_scale)?;
        for param in g.params {
            if out.iter().any(|s| s.param.same_as(&param)) {
                return Err(Error::invalid(
                    op,
                    format!("a parameter appears more than once (again in group {gi})"),
                ));
            }
            out.push(Slot {
                param,
                weight_decay,
                lr_scale: g.lr_scale,
                state: None,
            });
        }
    }
    Ok(out)
}

/// [`Error::InvalidArgument`] unless `value` is finite and `>= 0`.
pub(super) fn check_non_negative(op: &'static str, what: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(Error::invalid(
            op,
            format!("{what} must be finite and >= 0, got {value}"),
        ));
    }
    Ok(())
}

/// [`Error::Shape`] unless the optimizer state still has one element per value element (a
/// changed parameter shape would silently misapply the state otherwise).
pub(super) fn check_state_len(op: &'static str, state: usize, value: usize) -> Result<()> {
    if state != value {
        return Err(Error::shape(
            op,
            format!("optimizer state has {state} elements, the parameter {value}"),
        ));
    }
    Ok(())
}
