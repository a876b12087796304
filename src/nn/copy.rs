//! Deep copies of layers: new parameters holding the same values. A [`Param`] clone shares its
//! storage (that is how weights are tied); these copies do not, so training one side leaves the
//! other as it was. Each copy keeps its source's trainability; [`unfreeze`] makes a whole
//! module trainable.

use super::{Block, Embedding, LayerNorm, Linear, Mlp, Module, MultiHeadAttention};
use crate::autograd::Param;
use crate::error::Result;

/// A parameter with its own copy of `p`'s value and `p`'s trainability.
pub(crate) fn copy_param(p: &Param) -> Param {
    let copy = Param::new(p.value());
    copy.set_requires_grad(p.requires_grad());
    copy
}

/// A Linear with its own copies of `l`'s parameters (no quantization-aware-training state).
pub(crate) fn copy_linear(l: &Linear) -> Result<Linear> {
    Linear::from_params(copy_param(&l.weight), l.bias.as_ref().map(copy_param))
}

/// A LayerNorm with its own copies of `n`'s parameters.
pub(crate) fn copy_layernorm(n: &LayerNorm) -> LayerNorm {
    LayerNorm {
        weight: copy_param(&n.weight),
        bias: copy_param(&n.bias),
        eps: n.eps,
    }
}

/// An embedding table with its own copy of `e`'s weight.
pub(crate) fn copy_embedding(e: &Embedding) -> Embedding {
    Embedding {
        weight: copy_param(&e.weight),
    }
}

/// Self-attention with its own copies of `a`'s projections.
pub(crate) fn copy_attention(a: &MultiHeadAttention) -> Result<MultiHeadAttention> {
    Ok(MultiHeadAttention {
        query: copy_linear(&a.query)?,
        key: copy_linear(&a.key)?,
        value: copy_linear(&a.value)?,
        dense: copy_linear(&a.dense)?,
        ..a.clone()
    })
}

/// An MLP with its own copies of `m`'s Linears.
pub(crate) fn copy_mlp(m: &Mlp) -> Result<Mlp> {
    Ok(Mlp {
        fc1: copy_linear(&m.fc1)?,
        fc2: copy_linear(&m.fc2)?,
        ..m.clone()
    })
}

/// A block with its own copies of `b`'s parameters.
pub(crate) fn copy_block(b: &Block) -> Result<Block> {
    Ok(Block {
        attention: copy_attention(&b.attention)?,
        attn_norm: copy_layernorm(&b.attn_norm),
        mlp: copy_mlp(&b.mlp)?,
        mlp_norm: copy_layernorm(&b.mlp_norm),
        ..b.clone()
    })
}

/// Makes every parameter of `m` trainable.
pub(crate) fn unfreeze(m: &impl Module) {
    for (_, p) in m.named_params() {
        p.set_requires_grad(true);
    }
}
