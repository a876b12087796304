//! Lowering a trained f32 [`Bert`] or [`Vit`] into an [`Int8Model`]: every Linear quantized with
//! the mode the plan gives its name (as [`crate::nn::Module::visit_linears`] names it).
//!
//! Layers that share a block (ALBERT's `num_hidden_groups`) are lowered once per layer under
//! their group's name (`encoder.layer.{g}`, the name their shared Linears and quantization state
//! have), so the int8 model holds one independent block per layer. ALBERT's factorized embedding
//! (`embedding_size`) has no int8 form: lowering such a model is refused.

use super::Int8Model;
use super::block::{Int8Block, Norm};
use super::parts::{Arch, BertParts, VitParts};
use super::{Int8Linear, QuantPlan};
use crate::error::{Error, Result};
use crate::nn::{Bert, BertConfig, Block, Encoder, Linear, Module, Vit};
use lithe_kernels::gelu::GeluKind;

/// [`Error::NonFinite`] naming the first parameter of `m` that holds NaN or infinity: the int8
/// file format refuses such values on load, so lowering refuses them too (a Linear's weight
/// would fail to quantize; LayerNorms, embeddings and tokens would be copied as they are).
pub(crate) fn check_finite_params(op: &'static str, m: &(impl Module + ?Sized)) -> Result<()> {
    for (name, p) in m.named_params() {
        let v = p.value();
        if let Some(x) = v.data().iter().find(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                op,
                msg: format!("parameter `{name}` holds {x}"),
            });
        }
    }
    Ok(())
}

/// The Linear at `name`, quantized with the plan's mode for that name.
fn linear(lin: &Linear, name: &str, plan: &QuantPlan) -> Result<Int8Linear> {
    Int8Linear::from_linear(lin, plan.get(name))
}

/// The block of group `g` of an encoder (`encoder.layer.{g}`).
fn block(b: &Block, g: usize, plan: &QuantPlan) -> Result<Int8Block> {
    let prefix = format!("encoder.layer.{g}");
    let att = &b.attention;
    let qkv = format!("{prefix}.attention.{}", att.self_name);
    let qkv = [
        linear(&att.query, &format!("{qkv}.query"), plan)?,
        linear(&att.key, &format!("{qkv}.key"), plan)?,
        linear(&att.value, &format!("{qkv}.value"), plan)?,
    ];
    Int8Block::new(
        att.heads,
        qkv,
        linear(
            &att.dense,
            &format!("{prefix}.attention.output.dense"),
            plan,
        )?,
        Norm::from_nn(&b.attn_norm),
        linear(&b.mlp.fc1, &format!("{prefix}.intermediate.dense"), plan)?,
        linear(&b.mlp.fc2, &format!("{prefix}.output.dense"), plan)?,
        Norm::from_nn(&b.mlp_norm),
    )
}

/// One int8 block per layer of `encoder`, each named by its group.
fn blocks(encoder: &Encoder, plan: &QuantPlan) -> Result<(Vec<Int8Block>, GeluKind)> {
    let layers = &encoder.layers;
    let act = layers.first().map_or(GeluKind::Erf, |b| b.mlp.act);
    if layers.iter().any(|b| b.mlp.act != act) {
        return Err(Error::invalid(
            "Int8Model",
            "the blocks use different GELU kinds",
        ));
    }
    let blocks = layers
        .iter()
        .zip(encoder.groups())
        .map(|(b, g)| block(b, g, plan))
        .collect::<Result<_>>()?;
    Ok((blocks, act))
}

/// See [`Int8Model::from_bert`].
pub(crate) fn bert(m: &Bert, plan: &QuantPlan) -> Result<Int8Model> {
    check_finite_params("Int8Model::from_bert", m)?;
    if m.embedding_mapping.is_some() || m.config.embedding_size.is_some() {
        return Err(Error::invalid(
            "Int8Model::from_bert",
            "ALBERT's factorized embedding (embedding_size) has no int8 form",
        ));
    }
    let (blocks, gelu) = blocks(&m.encoder, plan)?;
    let e = &m.embeddings;
    let parts = BertParts {
        // Every layer has its own int8 block: the lowered model shares nothing.
        config: BertConfig {
            num_hidden_groups: None,
            ..m.config.clone()
        },
        word: e.word_embeddings.weight.value().data().to_vec(),
        position: e.position_embeddings.weight.value().data().to_vec(),
        token_type: e.token_type_embeddings.weight.value().data().to_vec(),
        norm: Norm::from_nn(&e.layer_norm),
        pooler: linear(&m.pooler, "pooler.dense", plan)?,
        classifier: linear(&m.classifier, "classifier", plan)?,
    };
    Int8Model::assemble(Arch::Bert(parts), blocks, gelu)
}

/// See [`Int8Model::from_vit`].
pub(crate) fn vit(m: &Vit, plan: &QuantPlan) -> Result<Int8Model> {
    check_finite_params("Int8Model::from_vit", m)?;
    let (blocks, gelu) = blocks(&m.encoder, plan)?;
    let e = &m.embeddings;
    let distillation_classifier = match &m.distillation_classifier {
        Some(d) => Some(linear(d, "distillation_classifier", plan)?),
        None => None,
    };
    let parts = VitParts {
        config: m.config.clone(),
        projection: linear(
            &e.projection,
            "embeddings.patch_embeddings.projection",
            plan,
        )?,
        cls_token: e.cls_token.value().data().to_vec(),
        distillation_token: e
            .distillation_token
            .as_ref()
            .map(|d| d.value().data().to_vec()),
        position: e.position_embeddings.value().data().to_vec(),
        norm: Norm::from_nn(&m.layernorm),
        classifier: linear(&m.classifier, "classifier", plan)?,
        distillation_classifier,
    };
    Int8Model::assemble(Arch::Vit(parts), blocks, gelu)
}
