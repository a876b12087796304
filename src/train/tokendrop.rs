//! Training a [`DynamicVit`]: its predictors learn which tokens to drop while its backbone
//! adapts (at a smaller learning rate) under the supervision of the full model it came from.
//!
//! Each step runs the masked forward with hard Gumbel-softmax decisions
//! ([`KeepRule::Gumbel`]) and the teacher's inference forward, and minimises
//! [`token_drop_loss`]. Evaluation uses the gathered forward, the one that runs faster.

use super::images::{check_images, evaluate_images};
use super::{Event, History, ImageSet, TrainOptions, fit_groups};
use crate::autograd::Graph;
use crate::compress::tokendrop::{
    DynamicVit, KeepRule, TeacherTargets, TokenDropLoss, token_drop_loss,
};
use crate::error::{Error, Result};
use crate::nn::{Module, Vit};
use crate::optim::{ParamGroup, is_bias_or_norm};

/// Settings of [`train_dynamic_vit`] beyond [`TrainOptions`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenDropTraining {
    /// The loss terms' weights.
    pub loss: TokenDropLoss,
    /// Factor on the learning rate of the backbone's parameters (DynamicViT: 0.01); the
    /// predictors train at the full rate.
    pub backbone_lr_scale: f64,
    /// Temperature of the Gumbel-softmax.
    pub tau: f32,
}

impl Default for TokenDropTraining {
    fn default() -> Self {
        TokenDropTraining {
            loss: TokenDropLoss::default(),
            backbone_lr_scale: 0.01,
            tau: 1.0,
        }
    }
}

/// Test accuracy of `model`'s gathered (inference) forward on `data`, batches of 256.
pub fn evaluate_dynamic_vit(model: &DynamicVit, data: &ImageSet) -> Result<f64> {
    evaluate_images("evaluate_dynamic_vit", data, |g, x| {
        model.forward_logits(g, x)
    })
}

/// Trains `student` on `train` against `teacher` (the full model, frozen: only its outputs
/// are used), evaluating the gathered forward on `test` after each epoch. Errors: images that
/// do not fit, a teacher of another shape (its tokens must line up with the student's),
/// invalid settings, and the training loop's.
pub fn train_dynamic_vit(
    student: &DynamicVit,
    teacher: &Vit,
    train: &ImageSet,
    test: &ImageSet,
    opts: &TrainOptions,
    settings: &TokenDropTraining,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    const OP: &str = "train_dynamic_vit";
    check_images(OP, &student.config.vit, train, test)?;
    let (s, t) = (&student.config.vit, &teacher.config);
    if (
        s.hidden_size,
        s.patch_size,
        s.image_size,
        s.distillation_token,
    ) != (
        t.hidden_size,
        t.patch_size,
        t.image_size,
        t.distillation_token,
    ) || s.num_labels != t.num_labels
    {
        return Err(Error::invalid(
            OP,
            "the teacher must have the student's width, patches, tokens and classes",
        ));
    }
    if !(settings.backbone_lr_scale >= 0.0 && settings.tau > 0.0) {
        return Err(Error::invalid(OP, format!("invalid settings {settings:?}")));
    }
    // Four groups: backbone / predictors (named `score_predictor.*` by `DynamicVit`), each with
    // and without weight decay.
    let (predictors, backbone): (Vec<_>, Vec<_>) = student
        .named_params()
        .into_iter()
        .partition(|(name, _)| name.starts_with("score_predictor."));
    let mut groups = Vec::new();
    for (named, scale) in [(backbone, settings.backbone_lr_scale), (predictors, 1.0)] {
        for mut group in ParamGroup::split_decay(&named, |n, _| is_bias_or_norm(n)) {
            group.lr_scale = scale;
            groups.push(group);
        }
    }
    let ratios = student.config.token_drop.stage_ratios();
    let prefix = student.prefix();
    let rule = KeepRule::Gumbel { tau: settings.tau };
    fit_groups(
        groups,
        train.len(),
        opts,
        progress,
        &mut |g, rows| {
            let (x, y) = train.batch(rows)?;
            let teacher = {
                let tg = Graph::inference();
                let xt = tg.constant(x.clone());
                let features = teacher.forward_features(&tg, xt)?;
                let (cls, dist) = teacher.heads(&tg, features)?;
                let logits = crate::nn::deit_logits(&tg, cls, dist)?;
                TeacherTargets {
                    logits: tg.value(logits)?,
                    features: tg.value(features)?,
                }
            };
            let out = student.forward_masked(g, g.constant(x), rule)?;
            token_drop_loss(g, &out, &y, prefix, &ratios, teacher, &settings.loss)
        },
        &mut || evaluate_dynamic_vit(student, test),
    )
}
