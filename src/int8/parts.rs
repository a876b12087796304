//! The f32 parts around the blocks (embeddings, final LayerNorm, pooler and heads), the check
//! that a model's parts fit together, and the embedding step of a forward.
//!
//! Legend: B = batch, T = tokens, H = hidden width, V = vocabulary, Ch = image channels,
//! S = image side, p = patch side, N = patches, P = Ch * p * p.

use super::block::{Batch, Int8Block, Norm, add_into};
use super::{Int8Linear, Int8Model, Workspace};
use crate::error::{Error, Result};
use crate::nn::{BertConfig, VitConfig};
use lithe_kernels::gelu::GeluKind;
use lithe_kernels::gemm_i8::Activation;

/// The f32 parts around the blocks of a Bert.
#[derive(Clone)]
pub(crate) struct BertParts {
    pub(crate) config: BertConfig,
    /// `[V, H]`.
    pub(crate) word: Vec<f32>,
    /// `[max_position_embeddings, H]`.
    pub(crate) position: Vec<f32>,
    /// `[type_vocab_size, H]`; row 0 is added to every token.
    pub(crate) token_type: Vec<f32>,
    pub(crate) norm: Norm,
    /// `[H, H]`, then tanh on `[CLS]`.
    pub(crate) pooler: Int8Linear,
    /// `[C, H]`.
    pub(crate) classifier: Int8Linear,
}

/// The parts around the blocks of a Vit.
#[derive(Clone)]
pub(crate) struct VitParts {
    pub(crate) config: VitConfig,
    /// `[H, P]`: the patch projection.
    pub(crate) projection: Int8Linear,
    /// `[H]`.
    pub(crate) cls_token: Vec<f32>,
    /// `[H]` (DeiT).
    pub(crate) distillation_token: Option<Vec<f32>>,
    /// `[T, H]`.
    pub(crate) position: Vec<f32>,
    /// The final LayerNorm.
    pub(crate) norm: Norm,
    /// `[C, H]` on the class token.
    pub(crate) classifier: Int8Linear,
    /// `[C, H]` on the distillation token (DeiT).
    pub(crate) distillation_classifier: Option<Int8Linear>,
}

impl VitParts {
    /// Tokens in front of the patches: class (and distillation).
    pub(crate) fn prefix(&self) -> usize {
        1 + usize::from(self.distillation_token.is_some())
    }

    pub(crate) fn side(&self) -> usize {
        self.config.image_size / self.config.patch_size
    }

    pub(crate) fn num_patches(&self) -> usize {
        self.side() * self.side()
    }
}

/// Bert or Vit parts.
#[derive(Clone)]
pub(crate) enum Arch {
    Bert(BertParts),
    Vit(VitParts),
}

impl Int8Model {
    /// A model from its parts, checked for consistent widths (lowering and loading both end
    /// here).
    pub(crate) fn assemble(arch: Arch, blocks: Vec<Int8Block>, gelu: GeluKind) -> Result<Self> {
        let bad = |msg: String| Err(Error::shape("Int8Model", msg));
        let (h, heads_in) = match &arch {
            Arch::Bert(p) => {
                let (h, c) = (p.norm.width(), &p.config);
                let tables = [
                    (p.word.len(), c.vocab_size),
                    (p.position.len(), c.max_position_embeddings),
                    (p.token_type.len(), c.type_vocab_size),
                ];
                if h == 0 || c.hidden_size != h || tables.iter().any(|&(len, rows)| len != rows * h)
                {
                    return bad(format!(
                        "embedding tables do not fit H = {h} and the config"
                    ));
                }
                if c.type_vocab_size == 0 || c.max_position_embeddings == 0 {
                    return bad("empty position or token-type table".into());
                }
                let pooler = (p.pooler.in_features(), p.pooler.out_features());
                if pooler != (h, h) {
                    return bad(format!("pooler {pooler:?} is not [{h}, {h}]"));
                }
                (h, vec![p.classifier.in_features()])
            }
            Arch::Vit(p) => {
                let (h, c) = (p.norm.width(), &p.config);
                if h == 0 || c.hidden_size != h || c.patch_size == 0 {
                    return bad(format!("config does not fit H = {h}"));
                }
                let tokens = p.num_patches() + p.prefix();
                let patch = c.num_channels * c.patch_size * c.patch_size;
                let fits = p.cls_token.len() == h
                    && p.distillation_token.as_ref().is_none_or(|d| d.len() == h)
                    && p.distillation_token.is_some() == c.distillation_token
                    && p.distillation_classifier.is_some() == c.distillation_token
                    && p.position.len() == tokens * h
                    && (p.projection.in_features(), p.projection.out_features()) == (patch, h);
                if !fits {
                    return bad(format!(
                        "tokens, position table or patch projection do not fit H = {h}, \
                         {tokens} tokens and patches of {patch}"
                    ));
                }
                let mut ins = vec![p.classifier.in_features()];
                if let Some(d) = &p.distillation_classifier {
                    ins.push(d.in_features());
                    if d.out_features() != p.classifier.out_features() {
                        return bad("the two heads have different class counts".into());
                    }
                }
                (h, ins)
            }
        };
        if heads_in.iter().any(|&k| k != h) {
            return bad(format!("a classifier does not take H = {h} inputs"));
        }
        if let Some(i) = blocks.iter().position(|b| b.attn_norm.width() != h) {
            return bad(format!("block {i} is not of width H = {h}"));
        }
        Ok(Int8Model {
            arch,
            blocks,
            gelu,
            drops: Vec::new(),
        })
    }
}

/// `ws.x[B*T, H] = LN(word[id] + position[t] + token_type[0])`.
pub(crate) fn embed_tokens(
    p: &BertParts,
    ws: &mut Workspace,
    ids: &[u32],
    geo: Batch<'_>,
) -> Result<()> {
    let (h, t, rows) = (p.norm.width(), geo.seq, geo.rows());
    let type0 = &p.token_type[..h];
    for (r, row) in ws.tmp[..rows * h].chunks_exact_mut(h).enumerate() {
        let word = &p.word[ids[r] as usize * h..][..h];
        let pos = &p.position[(r % t) * h..][..h];
        for (((o, &w), &q), &ty) in row.iter_mut().zip(word).zip(pos).zip(type0) {
            *o = (w + q) + ty;
        }
    }
    p.norm
        .forward(&mut ws.x, &ws.tmp, rows, &mut ws.mean, &mut ws.rstd)
}

/// `ws.x[B, T, H] = [cls, (dist), projection(patches)] + position`.
pub(crate) fn embed_images(
    p: &VitParts,
    ws: &mut Workspace,
    pixels: &[f32],
    geo: Batch<'_>,
) -> Result<()> {
    let c = &p.config;
    let (ch, s, ps, side) = (c.num_channels, c.image_size, c.patch_size, p.side());
    let (n, pd, h, t, pre) = (
        p.num_patches(),
        ch * ps * ps,
        p.norm.width(),
        geo.seq,
        p.prefix(),
    );
    // [B, Ch, S, S] -> [B, N, Ch*p*p]: patch (gy, gx) flattened as (channel, row, column).
    for b in 0..geo.batch {
        let image = &pixels[b * ch * s * s..][..ch * s * s];
        for gy in 0..side {
            for gx in 0..side {
                let patch = &mut ws.patches[(b * n + gy * side + gx) * pd..][..pd];
                for (k, dst) in patch.chunks_exact_mut(ps).enumerate() {
                    let (chan, py) = (k / ps, k % ps);
                    let src = (chan * s + gy * ps + py) * s + gx * ps;
                    dst.copy_from_slice(&image[src..src + ps]);
                }
            }
        }
        // The projection writes each sample's patch rows straight after its prefix tokens.
        let out = &mut ws.x[(b * t + pre) * h..];
        let patches = &ws.patches[b * n * pd..];
        p.projection.forward_into(
            out,
            h,
            patches,
            n,
            Activation::None,
            &mut ws.q8,
            &mut ws.row_scales,
        )?;
        let sample = &mut ws.x[b * t * h..][..t * h];
        sample[..h].copy_from_slice(&p.cls_token);
        if let Some(d) = &p.distillation_token {
            sample[h..2 * h].copy_from_slice(d);
        }
        add_into(sample, &p.position);
    }
    Ok(())
}
