//! Distilling a ViT teacher into a smaller ViT student on images
//! ([`crate::compress::distill`] has the losses).
//!
//! The teacher runs on its own inference graph each step and enters the student's graph as
//! constants; with [`ImageDistill::Sparse`] no teacher runs at all: the student reads the
//! teacher's top-k probabilities from a [`SparseLogits`] store written once by
//! [`sparse_teacher_logits`].

use super::images::check_images;
use super::{Event, History, ImageSet, TrainOptions, evaluate_vit, fit};
use crate::autograd::{CrossEntropyOptions, Graph, Param, Var};
use crate::compress::distill::{
    DeitTarget, KdConfig, LayerOutputs, SparseLogits, TinyBertConfig, WidthProjection,
    attention_scores, deit_loss, kd_loss, sparse_kd, tinybert_loss,
};
use crate::error::{Error, Result};
use crate::nn::{Module, Vit, VitConfig};
use crate::optim::is_bias_or_norm;
use crate::tensor::{Rng, Tensor};

/// How the student learns.
#[derive(Clone, Debug)]
pub enum ImageDistill<'a> {
    /// The labels only (the baseline every method is compared with).
    Labels,
    /// Soft-label KD mixed with the labels.
    Kd(KdConfig),
    /// DeiT: the student has a distillation token and head (its config's
    /// `distillation_token`) trained on the teacher.
    Deit(DeitTarget),
    /// KD from stored top-k teacher probabilities, `(1 - alpha) CE + alpha KD_T`, with
    /// `store` written by [`sparse_teacher_logits`] on the *training* set in its order.
    Sparse {
        /// The teacher's top-k probabilities, one row per training image.
        store: &'a SparseLogits,
        /// Share of the stored-target term, in `[0, 1]`.
        alpha: f32,
    },
    /// TinyBERT's layer losses (embedding, hidden states, attention scores) and prediction KD,
    /// plus the label cross-entropy, with a width projection trained alongside when the widths
    /// differ.
    TinyBert(TinyBertConfig),
}

impl ImageDistill<'_> {
    /// Whether the teacher must run during training.
    pub fn needs_teacher(&self) -> bool {
        !matches!(self, ImageDistill::Labels | ImageDistill::Sparse { .. })
    }

    /// A short name for tables: `labels`, `kd`, `deit`, `deit-hard`, `sparse-top{k}`, `tinybert`.
    pub fn name(&self) -> String {
        match self {
            ImageDistill::Labels => "labels".into(),
            ImageDistill::Kd(_) => "kd".into(),
            ImageDistill::Deit(DeitTarget::Soft { .. }) => "deit".into(),
            ImageDistill::Deit(DeitTarget::Hard) => "deit-hard".into(),
            ImageDistill::Sparse { store, .. } => format!("sparse-top{}", store.k()),
            ImageDistill::TinyBert(_) => "tinybert".into(),
        }
    }
}

/// A student of `config` whose parameters are copied from `teacher` wherever names and shapes
/// agree: the embeddings, the first blocks (`encoder.layer.{i}` for the student's depth), the
/// final LayerNorm and the head. A DeiT student of a plain teacher also gets its distillation
/// token, head and position from the teacher's class token, head and position. Returns the
/// student and the names it did *not* copy (freshly initialised from `rng`).
///
/// Errors as [`Vit::new`].
pub fn vit_student_from_teacher(
    teacher: &Vit,
    config: &VitConfig,
    rng: &mut Rng,
) -> Result<(Vit, Vec<String>)> {
    let student = Vit::new(config, rng)?;
    let from: std::collections::HashMap<String, Param> =
        teacher.named_params().into_iter().collect();
    let mut fresh = Vec::new();
    let dist_token_added = config.distillation_token && !teacher.config.distillation_token;
    for (name, p) in student.named_params() {
        let source = match name.as_str() {
            "embeddings.distillation_token" if dist_token_added => "embeddings.cls_token".into(),
            n if dist_token_added && n.starts_with("distillation_classifier.") => {
                n.replacen("distillation_classifier", "classifier", 1)
            }
            n => n.to_string(),
        };
        let Some(src) = from.get(&source) else {
            fresh.push(name);
            continue;
        };
        let value = src.value();
        if value.shape() == p.shape().as_slice() {
            p.set_value(value)?;
        } else if name == "embeddings.position_embeddings" && dist_token_added {
            // [1, T, H] -> [1, T + 1, H]: the distillation token's position is the class token's.
            let h = value.shape()[2];
            let d = value.data();
            let mut v = Vec::with_capacity(d.len() + h);
            v.extend_from_slice(&d[..h]);
            v.extend_from_slice(d);
            p.set_value(Tensor::from_vec(v, &p.shape())?)?;
        } else {
            fresh.push(name);
        }
    }
    Ok((student, fresh))
}

/// The teacher's top-`k` probabilities at `temperature` for every image of `data`, in order,
/// from inference passes of 256 images.
pub fn sparse_teacher_logits(
    teacher: &Vit,
    data: &ImageSet,
    k: usize,
    temperature: f32,
) -> Result<SparseLogits> {
    let mut store = SparseLogits::new(teacher.config.num_labels, k, temperature)?;
    let rows: Vec<usize> = (0..data.len()).collect();
    for chunk in rows.chunks(256) {
        let (x, _) = data.batch(chunk)?;
        store.push_logits(teacher_logits(teacher, &x)?.data())?;
    }
    Ok(store)
}

/// The teacher's logits `[B, C]` of `images[B, C, S, S]` on an inference graph.
fn teacher_logits(teacher: &Vit, images: &Tensor) -> Result<Tensor> {
    let g = Graph::inference();
    let logits = teacher.forward_logits(&g, g.constant(images.clone()))?;
    g.value(logits)
}

/// A ViT's TinyBERT view of a batch: embedding output, block outputs, attention scores and
/// logits.
fn layer_outputs(g: &Graph, vit: &Vit, images: Var) -> Result<LayerOutputs> {
    let (embedding, traces) = vit.forward_traced(g, images, None)?;
    let last = traces.last().map_or(embedding, |t| t.output);
    let logits = vit.logits_from_hidden(g, last)?;
    Ok(LayerOutputs {
        embedding,
        hidden: traces.iter().map(|t| t.output).collect(),
        attention: traces
            .iter()
            .map(|t| attention_scores(g, &t.attention))
            .collect::<Result<_>>()?,
        logits,
    })
}

/// The teacher's [`layer_outputs`] as constants on the student's graph `g`.
fn teacher_layer_outputs(g: &Graph, teacher: &Vit, images: &Tensor) -> Result<LayerOutputs> {
    let tg = Graph::inference();
    let t = layer_outputs(&tg, teacher, tg.constant(images.clone()))?;
    let c = |v: Var| -> Result<Var> { Ok(g.constant(tg.value(v)?)) };
    Ok(LayerOutputs {
        embedding: c(t.embedding)?,
        hidden: t.hidden.into_iter().map(c).collect::<Result<_>>()?,
        attention: t.attention.into_iter().map(c).collect::<Result<_>>()?,
        logits: c(t.logits)?,
    })
}

/// Trains `student` on `train` by `method` from `teacher` (needed unless the method is
/// [`ImageDistill::Labels`] or [`ImageDistill::Sparse`]), evaluating on `test` after each
/// epoch (DeiT students average their two heads).
///
/// Errors: [`Error::InvalidArgument`] when a needed teacher is missing, the images do not fit
/// either model, the teacher's classes differ from the student's, a DeiT method meets a
/// student without a distillation token (or another method a student with one), or a sparse
/// store does not hold one row per training image of the student's class count.
pub fn train_vit_distill(
    student: &Vit,
    teacher: Option<&Vit>,
    method: &ImageDistill,
    train: &ImageSet,
    test: &ImageSet,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    const OP: &str = "train_vit_distill";
    check_images(OP, &student.config, train, test)?;
    let classes = student.config.num_labels;
    if method.needs_teacher() {
        let t = teacher.ok_or_else(|| {
            Error::invalid(OP, format!("method {} needs a teacher", method.name()))
        })?;
        check_images(OP, &t.config, train, test)?;
        if t.config.num_labels != classes {
            return Err(Error::invalid(
                OP,
                format!(
                    "teacher has {} classes, student {classes}",
                    t.config.num_labels
                ),
            ));
        }
    }
    let deit = matches!(method, ImageDistill::Deit(_));
    if deit != student.config.distillation_token {
        return Err(Error::invalid(
            OP,
            format!(
                "method {} with a student {} a distillation token",
                method.name(),
                if deit { "without" } else { "with" }
            ),
        ));
    }
    if let ImageDistill::Sparse { store, alpha } = method {
        if store.len() != train.len() || store.classes() != classes {
            return Err(Error::invalid(
                OP,
                format!(
                    "the sparse store holds {} rows of {} classes; the training set has {} \
                     images of {classes} classes",
                    store.len(),
                    store.classes(),
                    train.len()
                ),
            ));
        }
        KdConfig {
            temperature: store.temperature(),
            alpha: *alpha,
        }
        .validate()?;
    }
    let projection = match (method, teacher) {
        (ImageDistill::TinyBert(_), Some(t)) => WidthProjection::new(
            student.config.hidden_size,
            t.config.hidden_size,
            &mut Rng::new(opts.seed ^ 0x7137),
        ),
        _ => WidthProjection { linear: None },
    };
    let mut named = student.named_params();
    named.extend(projection.named_params());
    let ce = CrossEntropyOptions {
        label_smoothing: opts.label_smoothing,
        ..CrossEntropyOptions::default()
    };
    fit(
        &named,
        &is_bias_or_norm,
        train.len(),
        opts,
        progress,
        &mut |g, rows| {
            let (x, y) = train.batch(rows)?;
            // The teacher's logits of the images, as a constant on the student's graph.
            let teacher_out = |g: &Graph, x: &Tensor| -> Result<Var> {
                let t = teacher.expect("checked above");
                Ok(g.constant(teacher_logits(t, x)?))
            };
            match method {
                ImageDistill::Labels => {
                    let logits = student.forward_logits(g, g.constant(x))?;
                    g.cross_entropy(logits, &y, &ce)
                }
                ImageDistill::Kd(kd) => {
                    let t = teacher_out(g, &x)?;
                    let logits = student.forward_logits(g, g.constant(x))?;
                    kd_loss(g, logits, t, &y, kd, &ce)
                }
                ImageDistill::Deit(target) => {
                    let t = teacher_out(g, &x)?;
                    let (cls, dist) = student.forward_heads(g, g.constant(x))?;
                    let dist = dist.expect("a DeiT student has a distillation head");
                    deit_loss(g, cls, dist, t, &y, target, &ce)
                }
                ImageDistill::Sparse { store, alpha } => {
                    let logits = student.forward_logits(g, g.constant(x))?;
                    let hard = g.cross_entropy(logits, &y, &ce)?;
                    let soft = sparse_kd(g, logits, store.targets(rows)?, store.temperature())?;
                    g.add(
                        g.mul_scalar(hard, 1.0 - alpha)?,
                        g.mul_scalar(soft, *alpha)?,
                    )
                }
                ImageDistill::TinyBert(config) => {
                    let t = teacher.expect("checked above");
                    let t_out = teacher_layer_outputs(g, t, &x)?;
                    let s_out = layer_outputs(g, student, g.constant(x))?;
                    let hard = g.cross_entropy(s_out.logits, &y, &ce)?;
                    let distill = tinybert_loss(g, &s_out, &t_out, &projection, config)?;
                    g.add(hard, distill)
                }
            }
        },
        &mut || evaluate_vit(student, test),
    )
}
