//! Which heads and MLP neurons each layer keeps ([`PrunePlan`]), the masks that switch the others
//! off, and the physical shrink that deletes them: the pruned model is a smaller dense model.
//!
//! Legend: L = layers, H = hidden width, nh = heads, d = head width, A = nh * d, I = MLP width.
//! Head `h` owns rows `h*d .. (h+1)*d` of Q, K and V (`[A, H]`) and the same columns of the
//! output projection (`[H, A]`); neuron `j` owns row `j` of `fc1` (`[I, H]`) and column `j` of
//! `fc2` (`[H, I]`). Deleting a head's rows and columns computes exactly what multiplying its
//! context by 0 computes, and likewise for a neuron's activation, so the shrunk model equals the
//! masked one up to float rounding (the sums run over fewer terms).

use crate::autograd::Param;
use crate::error::{Error, Result};
use crate::nn::{Bert, Block, Encoder, Linear, Module, Vit};
use crate::tensor::{Rng, Tensor};

/// The heads and neurons each layer keeps, in the order the smaller model holds them. Every
/// layer keeps the same number of each, so the smaller model is described by one config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrunePlan {
    heads: Vec<Vec<usize>>,
    neurons: Vec<Vec<usize>>,
}

impl PrunePlan {
    /// A plan from the kept heads and neurons of each layer (`heads[l]`, `neurons[l]`).
    /// [`Error::InvalidArgument`] unless both list the same layers, every layer keeps at least
    /// one head and one neuron, the same counts in every layer, and no index repeats.
    pub fn new(heads: Vec<Vec<usize>>, neurons: Vec<Vec<usize>>) -> Result<Self> {
        const OP: &str = "PrunePlan::new";
        if heads.is_empty() || heads.len() != neurons.len() {
            return Err(Error::invalid(
                OP,
                format!(
                    "{} head lists for {} neuron lists",
                    heads.len(),
                    neurons.len()
                ),
            ));
        }
        for (what, lists) in [("heads", &heads), ("neurons", &neurons)] {
            let n = lists[0].len();
            if n == 0 || lists.iter().any(|l| l.len() != n) {
                return Err(Error::invalid(
                    OP,
                    format!("every layer must keep the same number (> 0) of {what}"),
                ));
            }
            for (l, list) in lists.iter().enumerate() {
                let mut sorted = list.clone();
                sorted.sort_unstable();
                if sorted.windows(2).any(|w| w[0] == w[1]) {
                    return Err(Error::invalid(
                        OP,
                        format!("layer {l} repeats one of its {what}"),
                    ));
                }
            }
        }
        Ok(PrunePlan { heads, neurons })
    }

    /// Keeps the first `heads` heads and `neurons` neurons of each of `layers` layers: the
    /// sub-network of an elastic model whose heads and neurons are sorted by importance.
    pub fn first(layers: usize, heads: usize, neurons: usize) -> Result<Self> {
        Self::new(
            vec![(0..heads).collect(); layers],
            vec![(0..neurons).collect(); layers],
        )
    }

    /// Keeps, in each layer, the `heads` and `neurons` with the highest scores (`scores.heads[l]`
    /// and `scores.neurons[l]`), listed in their original order. Ties go to the lower index.
    /// [`Error::NonFinite`] if a score is NaN or infinite (it has no rank).
    pub fn top(
        head_scores: &[Vec<f32>],
        neuron_scores: &[Vec<f32>],
        heads: usize,
        neurons: usize,
    ) -> Result<Self> {
        let top_k = |scores: &[f32], k: usize| -> Result<Vec<usize>> {
            if k == 0 || k > scores.len() {
                return Err(Error::invalid(
                    "PrunePlan::top",
                    format!("cannot keep {k} of {}", scores.len()),
                ));
            }
            if let Some(x) = scores.iter().find(|x| !x.is_finite()) {
                return Err(Error::NonFinite {
                    op: "PrunePlan::top",
                    msg: format!("an importance score is {x}"),
                });
            }
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            let mut kept = order[..k].to_vec();
            kept.sort_unstable();
            Ok(kept)
        };
        Self::new(
            head_scores
                .iter()
                .map(|s| top_k(s, heads))
                .collect::<Result<_>>()?,
            neuron_scores
                .iter()
                .map(|s| top_k(s, neurons))
                .collect::<Result<_>>()?,
        )
    }

    /// Layers the plan covers.
    pub fn layers(&self) -> usize {
        self.heads.len()
    }

    /// Heads kept per layer.
    pub fn heads_kept(&self) -> usize {
        self.heads[0].len()
    }

    /// Neurons kept per layer.
    pub fn neurons_kept(&self) -> usize {
        self.neurons[0].len()
    }

    /// The heads layer `l` keeps.
    pub fn heads(&self, l: usize) -> &[usize] {
        &self.heads[l]
    }

    /// The neurons layer `l` keeps.
    pub fn neurons(&self, l: usize) -> &[usize] {
        &self.neurons[l]
    }

    /// [`Error::InvalidArgument`] unless the plan fits `encoder`: one entry per layer, indices
    /// below each layer's head and neuron counts, and no shared blocks (a shared block cannot
    /// lose different heads in different layers).
    pub fn check(&self, encoder: &Encoder) -> Result<()> {
        const OP: &str = "PrunePlan";
        let layers = &encoder.layers;
        if self.layers() != layers.len() {
            return Err(Error::invalid(
                OP,
                format!(
                    "plan for {} layers, encoder has {}",
                    self.layers(),
                    layers.len()
                ),
            ));
        }
        if encoder.groups() != (0..layers.len()).collect::<Vec<_>>() {
            return Err(Error::invalid(
                OP,
                "layers that share weights cannot be pruned",
            ));
        }
        for (l, b) in layers.iter().enumerate() {
            let (nh, inner) = (b.attention.heads, b.mlp.fc1.out_features());
            if let Some(h) = self.heads[l].iter().find(|&&h| h >= nh) {
                return Err(Error::invalid(
                    OP,
                    format!("layer {l} has {nh} heads, not head {h}"),
                ));
            }
            if let Some(j) = self.neurons[l].iter().find(|&&j| j >= inner) {
                return Err(Error::invalid(
                    OP,
                    format!("layer {l} has {inner} neurons, not neuron {j}"),
                ));
            }
        }
        Ok(())
    }

    /// Per layer, `(heads[nh], neurons[I])` with 1 for what the plan keeps and 0 for the rest:
    /// the masks of [`crate::nn::LayerRun`] under which the full model computes what the shrunk
    /// one does.
    pub fn masks(&self, encoder: &Encoder) -> Result<Vec<(Tensor, Tensor)>> {
        self.check(encoder)?;
        let indicator = |n: usize, kept: &[usize]| {
            let mut t = Tensor::zeros(&[n]);
            for &i in kept {
                t.data_mut()[i] = 1.0;
            }
            t
        };
        Ok(encoder
            .layers
            .iter()
            .enumerate()
            .map(|(l, b)| {
                (
                    indicator(b.attention.heads, &self.heads[l]),
                    indicator(b.mlp.fc1.out_features(), &self.neurons[l]),
                )
            })
            .collect())
    }
}

/// Rows `rows` of `t[R, C]`, in that order.
fn gather_rows(t: &Tensor, rows: &[usize]) -> Result<Tensor> {
    let c = t.shape()[1];
    let data = rows
        .iter()
        .flat_map(|&r| t.data()[r * c..(r + 1) * c].iter().copied())
        .collect();
    Tensor::from_vec(data, &[rows.len(), c])
}

/// Columns `cols` of `t[R, C]`, in that order.
fn gather_cols(t: &Tensor, cols: &[usize]) -> Result<Tensor> {
    let (r, c) = (t.shape()[0], t.shape()[1]);
    let data = (0..r)
        .flat_map(|i| cols.iter().map(move |&j| t.data()[i * c + j]))
        .collect();
    Tensor::from_vec(data, &[r, cols.len()])
}

/// Entries `idx` of `v[N]`.
fn gather(v: &Tensor, idx: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(idx.iter().map(|&i| v.data()[i]).collect(), &[idx.len()])
}

/// A Linear keeping the output rows `rows` (and their biases).
fn keep_outputs(l: &Linear, rows: &[usize]) -> Result<Linear> {
    let bias = match &l.bias {
        Some(b) => Some(Param::new(gather(&b.value(), rows)?)),
        None => None,
    };
    Linear::from_params(Param::new(gather_rows(&l.weight.value(), rows)?), bias)
}

/// A Linear keeping the input columns `cols` (the bias is untouched).
fn keep_inputs(l: &Linear, cols: &[usize]) -> Result<Linear> {
    let bias = l.bias.as_ref().map(|b| Param::new(b.value()));
    Linear::from_params(Param::new(gather_cols(&l.weight.value(), cols)?), bias)
}

/// Block `b` with only `heads` (Q/K/V rows, output-projection columns) and `neurons` (`fc1`
/// rows, `fc2` columns); LayerNorms and the output biases are copied unchanged.
pub fn shrink_block(b: &Block, heads: &[usize], neurons: &[usize]) -> Result<Block> {
    let d = b.attention.head_dim();
    let qkv_rows: Vec<usize> = heads.iter().flat_map(|&h| h * d..(h + 1) * d).collect();
    let a = &b.attention;
    let mut out = crate::nn::copy::copy_block(b)?;
    out.attention.query = keep_outputs(&a.query, &qkv_rows)?;
    out.attention.key = keep_outputs(&a.key, &qkv_rows)?;
    out.attention.value = keep_outputs(&a.value, &qkv_rows)?;
    out.attention.dense = keep_inputs(&a.dense, &qkv_rows)?;
    out.attention.heads = heads.len();
    out.mlp.fc1 = keep_outputs(&b.mlp.fc1, neurons)?;
    out.mlp.fc2 = keep_inputs(&b.mlp.fc2, neurons)?;
    Ok(out)
}

/// A new encoder whose layer `l` keeps what `plan` says (see [`shrink_block`]).
pub fn shrink_encoder(encoder: &Encoder, plan: &PrunePlan) -> Result<Encoder> {
    plan.check(encoder)?;
    let layers = encoder
        .layers
        .iter()
        .enumerate()
        .map(|(l, b)| shrink_block(b, plan.heads(l), plan.neurons(l)))
        .collect::<Result<_>>()?;
    Ok(Encoder { layers })
}

/// Copies into `dst` the value of every parameter of `src` with the same name outside the
/// encoder (embeddings, final norm, heads); the shapes must match.
fn copy_outside_encoder(dst: &impl Module, src: &impl Module) -> Result<()> {
    let src: std::collections::HashMap<String, Param> = src.named_params().into_iter().collect();
    for (name, p) in dst.named_params() {
        if name.starts_with("encoder.layer.") {
            continue;
        }
        let s = src.get(&name).ok_or_else(|| {
            Error::invalid("prune", format!("the source model has no parameter {name}"))
        })?;
        p.set_value(s.value())?;
    }
    Ok(())
}

/// The smaller [`Vit`] `plan` describes: its config has the kept head and neuron counts (and
/// keeps the head width in `attention_head_size`), so it saves, loads and lowers to int8 like
/// any ViT. Parameters outside the encoder are copied.
pub fn prune_vit(vit: &Vit, plan: &PrunePlan) -> Result<Vit> {
    vit_with_encoder(vit, shrink_encoder(&vit.encoder, plan)?)
}

/// The smaller [`Bert`] `plan` describes (see [`prune_vit`]). Parameters outside the encoder
/// (embeddings, ALBERT's embedding mapping, pooler, classifier) are copied.
pub fn prune_bert(bert: &Bert, plan: &PrunePlan) -> Result<Bert> {
    bert_with_encoder(bert, shrink_encoder(&bert.encoder, plan)?)
}

/// `(layers, heads, head width, neurons)` of an encoder whose layers all have the same shape;
/// [`Error::InvalidArgument`] for an empty or uneven one.
fn encoder_shape(encoder: &Encoder) -> Result<(usize, usize, usize, usize)> {
    let first = encoder
        .layers
        .first()
        .ok_or_else(|| Error::invalid("prune", "the encoder has no layers"))?;
    let shape = |b: &Block| {
        (
            b.attention.heads,
            b.attention.head_dim(),
            b.mlp.fc1.out_features(),
        )
    };
    if encoder.layers.iter().any(|b| shape(b) != shape(first)) {
        return Err(Error::invalid("prune", "the layers differ in shape"));
    }
    let (nh, d, inner) = shape(first);
    Ok((encoder.layers.len(), nh, d, inner))
}

/// A [`Vit`] like `vit` around `encoder` (any depth, heads and MLP width, the same for every
/// layer), with the config to match and `vit`'s parameters outside the encoder.
pub(crate) fn vit_with_encoder(vit: &Vit, encoder: Encoder) -> Result<Vit> {
    let (layers, nh, d, inner) = encoder_shape(&encoder)?;
    let mut config = vit.config.clone();
    config.num_hidden_layers = layers;
    config.num_attention_heads = nh;
    config.intermediate_size = inner;
    config.attention_head_size = (nh * d != config.hidden_size).then_some(d);
    let mut out = Vit::new(&config, &mut Rng::new(0))?;
    out.encoder = encoder;
    copy_outside_encoder(&out, vit)?;
    Ok(out)
}

/// A [`Bert`] like `bert` around `encoder`; see [`vit_with_encoder`].
pub(crate) fn bert_with_encoder(bert: &Bert, encoder: Encoder) -> Result<Bert> {
    let (layers, nh, d, inner) = encoder_shape(&encoder)?;
    let mut config = bert.config.clone();
    config.num_hidden_layers = layers;
    config.num_hidden_groups = None;
    config.num_attention_heads = nh;
    config.intermediate_size = inner;
    config.attention_head_size = (nh * d != config.hidden_size).then_some(d);
    let mut out = Bert::new(&config, &mut Rng::new(0))?;
    out.encoder = encoder;
    copy_outside_encoder(&out, bert)?;
    Ok(out)
}
