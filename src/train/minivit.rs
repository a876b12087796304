//! Training a MiniViT student ([`MiniVit`]: a ViT whose blocks share weights) from its teacher.
//!
//! MiniViT's recipe: the student starts from the teacher's weights (weight multiplexing copies
//! them, see [`crate::compress::share`]) and learns from the teacher's predictions, its
//! self-attention relations and its hidden-state relations (weight distillation, after
//! MiniLMv2). With `teacher = None` the student trains on the labels alone (the ablation).
//!
//! Loss of a batch, with `s`/`t` the student/teacher:
//! `(1 - kd_weight) CE(s, y) + kd_weight KD_T(s, t) + attention_weight L_attn + hidden_weight L_hidden`,
//! where `L_attn` is the mean over the distilled layers ([`RelationLayers`]: the last, or all) of
//! the Q/K/V relation loss over all 9 pairs, and `L_hidden` that of the hidden-state relation
//! loss ([`crate::compress::distill`]).

use super::images::{check_images, evaluate_images};
use super::{Event, History, ImageSet, TrainOptions, fit};
use crate::autograd::{CrossEntropyOptions, Graph, Var};
use crate::compress::distill::{
    Qkv, RelationConfig, attention_relation_loss, hidden_relation_loss, soft_kd, uniform_layer_map,
};
use crate::compress::share::MiniVit;
use crate::error::{Error, Result};
use crate::nn::{Module, Vit, deit_logits};
use crate::optim::is_bias_or_norm;
use crate::tensor::Tensor;

/// How much each distillation term weighs; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct MiniVitDistill {
    /// Temperature of the prediction KD.
    pub temperature: f32,
    /// Share of the prediction KD against the label cross-entropy, in `[0, 1]`.
    pub kd_weight: f32,
    /// Weight of the self-attention (Q/K/V) relation loss.
    pub attention_weight: f32,
    /// Weight of the hidden-state relation loss.
    pub hidden_weight: f32,
    /// Relation heads of the attention relations (must divide both widths).
    pub relation_heads: usize,
    /// Which layers the relation losses compare.
    pub relation_layers: RelationLayers,
}

/// The student layers whose relations are distilled (each from its mapped teacher layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelationLayers {
    /// The last layer only, as MiniLMv2 distils (the cheap default: 9 relation maps per step).
    Last,
    /// Every layer (9 relation maps per layer and step).
    All,
}

impl Default for MiniVitDistill {
    fn default() -> Self {
        MiniVitDistill {
            temperature: 1.0,
            kd_weight: 0.5,
            attention_weight: 1.0,
            hidden_weight: 1.0,
            relation_heads: 4,
            relation_layers: RelationLayers::Last,
        }
    }
}

impl MiniVitDistill {
    fn check(&self) -> Result<()> {
        let ok = self.temperature > 0.0
            && (0.0..=1.0).contains(&self.kd_weight)
            && self.attention_weight >= 0.0
            && self.hidden_weight >= 0.0
            && self.relation_heads > 0;
        if !ok {
            return Err(Error::invalid(
                "train_minivit",
                format!("invalid distillation settings {self:?}"),
            ));
        }
        Ok(())
    }
}

/// What the teacher computed for a batch, as plain tensors (no tape): its logits and, for each
/// distilled teacher layer in turn, its raw Q, K, V and its output.
struct TeacherView {
    logits: Tensor,
    qkv: Vec<[Tensor; 3]>,
    hidden: Vec<Tensor>,
}

/// Runs the teacher on `images` on its own inference graph, keeping the relation inputs of the
/// teacher layers `layers` only.
fn teacher_view(teacher: &Vit, images: &Tensor, layers: &[usize]) -> Result<TeacherView> {
    let g = Graph::inference();
    let (_, traces) = teacher.forward_traced(&g, g.constant(images.clone()), None)?;
    let last = traces
        .last()
        .ok_or_else(|| Error::invalid("train_minivit", "the teacher has no blocks"))?;
    let features = teacher.layernorm.forward(&g, last.output)?;
    let (cls, dist) = teacher.heads(&g, features)?;
    let logits = deit_logits(&g, cls, dist)?;
    let mut qkv = Vec::with_capacity(layers.len());
    let mut hidden = Vec::with_capacity(layers.len());
    for &l in layers {
        let t = &traces[l];
        let p = Qkv::from_attention_parts(&g, &t.attention)?;
        qkv.push([g.value(p.query)?, g.value(p.key)?, g.value(p.value)?]);
        hidden.push(g.value(t.output)?);
    }
    Ok(TeacherView {
        logits: g.value(logits)?,
        qkv,
        hidden,
    })
}

/// Parameters trained without weight decay: biases, norms and the layers' transforms. The
/// transforms start at identity (head mixes) and zero (convolution), and decay would pull the
/// mixes away from identity.
fn no_decay(name: &str) -> bool {
    is_bias_or_norm(name) || name.contains(".transform.")
}

/// Test accuracy of a MiniViT student, in batches of 256 on an inference graph.
pub fn evaluate_minivit(student: &MiniVit, data: &ImageSet) -> Result<f64> {
    evaluate_images("evaluate_minivit", data, |g, x| {
        student.forward_logits(g, x)
    })
}

/// Trains `student` on `train` (evaluating on `test` after each epoch), distilled from `teacher`
/// with the weights of `distill` when a teacher is given, else on the labels alone.
pub fn train_minivit(
    student: &MiniVit,
    teacher: Option<(&Vit, &MiniVitDistill)>,
    train: &ImageSet,
    test: &ImageSet,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    let config = &student.config.vit;
    check_images("train_minivit", config, train, test)?;
    if let Some((t, d)) = teacher {
        d.check()?;
        check_images("train_minivit", &t.config, train, test)?;
    }
    let ce = CrossEntropyOptions {
        label_smoothing: opts.label_smoothing,
        ..CrossEntropyOptions::default()
    };
    // (student layer, teacher layer) pairs whose relations are compared.
    let pairs: Vec<(usize, usize)> = match teacher {
        Some((t, d)) => {
            let (s_depth, t_depth) = (student.encoder.layers.len(), t.blocks().len());
            if s_depth == 0 || t_depth == 0 {
                return Err(Error::invalid(
                    "train_minivit",
                    "relation distillation needs blocks in the student and the teacher",
                ));
            }
            let map = uniform_layer_map(s_depth, t_depth);
            match d.relation_layers {
                RelationLayers::All => map.into_iter().enumerate().collect(),
                RelationLayers::Last => vec![(s_depth - 1, map[s_depth - 1])],
            }
        }
        None => Vec::new(),
    };
    let teacher_layers: Vec<usize> = pairs.iter().map(|&(_, t)| t).collect();
    fit(
        &student.named_params(),
        &no_decay,
        train.len(),
        opts,
        progress,
        &mut |g, rows| {
            let (x, y) = train.batch(rows)?;
            let Some((teacher, d)) = teacher else {
                let logits = student.forward_logits(g, g.constant(x))?;
                return g.cross_entropy(logits, &y, &ce);
            };
            let view = teacher_view(teacher, &x, &teacher_layers)?;
            let (logits, traces) = student.forward_traced(g, g.constant(x))?;
            let hard = g.cross_entropy(logits, &y, &ce)?;
            let kd = soft_kd(g, logits, g.constant(view.logits), d.temperature)?;
            let mut loss = g.add(
                g.mul_scalar(hard, 1.0 - d.kd_weight)?,
                g.mul_scalar(kd, d.kd_weight)?,
            )?;
            if d.attention_weight > 0.0 {
                let (s, t): (Vec<Qkv>, Vec<Qkv>) = pairs
                    .iter()
                    .zip(&view.qkv)
                    .map(|(&(si, _), [q, k, v])| {
                        let s = &traces[si];
                        let teacher = Qkv {
                            query: g.constant(q.clone()),
                            key: g.constant(k.clone()),
                            value: g.constant(v.clone()),
                        };
                        let student = Qkv {
                            query: s.query,
                            key: s.key,
                            value: s.value,
                        };
                        (student, teacher)
                    })
                    .unzip();
                let rel = RelationConfig::new(d.relation_heads);
                let attn = attention_relation_loss(g, &s, &t, &rel, None)?;
                loss = g.add(loss, g.mul_scalar(attn, d.attention_weight)?)?;
            }
            if d.hidden_weight > 0.0 {
                let s: Vec<Var> = pairs.iter().map(|&(si, _)| traces[si].output).collect();
                let t: Vec<Var> = view.hidden.iter().map(|h| g.constant(h.clone())).collect();
                let hidden = hidden_relation_loss(g, &s, &t, None)?;
                loss = g.add(loss, g.mul_scalar(hidden, d.hidden_weight)?)?;
            }
            Ok(loss)
        },
        &mut || evaluate_minivit(student, test),
    )
}

#[cfg(test)]
mod tests {
    use super::no_decay;
    use crate::compress::share::{MiniVit, ShareConfig};
    use crate::nn::{Module, Vit, VitConfig};
    use crate::tensor::Rng;

    #[test]
    fn transforms_biases_and_norms_get_no_weight_decay() {
        let config = VitConfig {
            image_size: 8,
            patch_size: 4,
            num_channels: 1,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 16,
            num_labels: 3,
            ..VitConfig::default()
        };
        let vit = Vit::new(&config, &mut Rng::new(0)).unwrap();
        let student = MiniVit::from_vit(&vit, &ShareConfig::default()).unwrap();
        let names: Vec<String> = student.named_params().into_iter().map(|(n, _)| n).collect();
        let transforms: Vec<&String> = names.iter().filter(|n| n.contains("transform")).collect();
        assert_eq!(transforms.len(), 2 * 6, "{names:?}");
        assert!(transforms.iter().all(|n| no_decay(n)));
        let decayed: Vec<&String> = names.iter().filter(|n| !no_decay(n)).collect();
        assert!(
            decayed.iter().any(|n| n.contains("query.weight")),
            "{decayed:?}"
        );
        assert!(
            decayed
                .iter()
                .all(|n| !n.ends_with("bias") && !n.contains("norm") && !n.contains("transform")),
            "{decayed:?}"
        );
    }
}
