//! The int8 model: Bert (post-LN, pooler) and Vit (pre-LN, class/distillation tokens) forwards on
//! a [`Workspace`].
//!
//! Legend: B = batch, T = tokens, H = hidden width, V = vocabulary, C = classes,
//! Ch = image channels, S = image side, p = patch side, N = patches, P = Ch * p * p.

use std::path::Path;

use super::block::{Batch, BlockScratch, Int8Block, Norm, add_into};
use super::workspace::Widths;
use super::{Int8Linear, QuantPlan, Workspace};
use crate::embed::Pooling;
use crate::error::{Error, Result};
use crate::nn::{BertConfig, NormPlacement, VitConfig};
use lithe_kernels::gelu::GeluKind;
use lithe_kernels::gemm_i8::Activation;

/// What a forward takes.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// [B, C, S, S] pixels, row-major.
    Images {
        /// The pixels, `batch * C * S * S` of them.
        pixels: &'a [f32],
        /// Number of images B.
        batch: usize,
    },
    /// [B, T] token ids; `lengths[b]` real tokens of sample b (the rest is padding), None = all
    /// real.
    Tokens {
        /// Token ids, `batch * seq` of them.
        ids: &'a [u32],
        /// Number of sequences B.
        batch: usize,
        /// Padded sequence length T.
        seq: usize,
        /// Real tokens per sequence (each in 1..=seq), or None when none is padded.
        lengths: Option<&'a [usize]>,
    },
}

/// Which architecture an [`Int8Model`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Post-LN text encoder with a pooler.
    Bert,
    /// Pre-LN image Transformer on patches (optionally DeiT's distillation token).
    Vit,
}

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

/// A Bert or Vit with every Linear in int8 (see the module docs of [`super`]).
#[derive(Clone)]
pub struct Int8Model {
    pub(crate) arch: Arch,
    pub(crate) blocks: Vec<Int8Block>,
    pub(crate) gelu: GeluKind,
}

impl Int8Model {
    /// Lowers a Vit; each Linear's input is quantized as `plan` says.
    pub fn from_vit(vit: &crate::nn::Vit, plan: &QuantPlan) -> Result<Self> {
        super::lower::vit(vit, plan)
    }

    /// Lowers a Bert; each Linear's input is quantized as `plan` says.
    pub fn from_bert(bert: &crate::nn::Bert, plan: &QuantPlan) -> Result<Self> {
        super::lower::bert(bert, plan)
    }

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
        Ok(Int8Model { arch, blocks, gelu })
    }

    /// The architecture.
    pub fn kind(&self) -> ModelKind {
        match self.arch {
            Arch::Bert(_) => ModelKind::Bert,
            Arch::Vit(_) => ModelKind::Vit,
        }
    }

    /// Number of logits per sample C.
    pub fn num_classes(&self) -> usize {
        match &self.arch {
            Arch::Bert(p) => p.classifier.out_features(),
            Arch::Vit(p) => p.classifier.out_features(),
        }
    }

    /// Width H of the hidden states.
    pub fn hidden_size(&self) -> usize {
        match &self.arch {
            Arch::Bert(p) => p.norm.width(),
            Arch::Vit(p) => p.norm.width(),
        }
    }

    /// Longest sequence: Bert, the position table; Vit, tokens per image.
    pub fn max_seq(&self) -> usize {
        match &self.arch {
            Arch::Bert(p) => p.config.max_position_embeddings,
            Arch::Vit(p) => p.num_patches() + p.prefix(),
        }
    }

    /// Vit: the input image shape `[C, S, S]`; Bert: None.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        match &self.arch {
            Arch::Bert(_) => None,
            Arch::Vit(p) => {
                let c = &p.config;
                Some([c.num_channels, c.image_size, c.image_size])
            }
        }
    }

    pub(crate) fn widths(&self) -> Widths {
        let (patch, patches) = match &self.arch {
            Arch::Bert(_) => (0, 0),
            Arch::Vit(p) => (p.projection.in_features(), p.num_patches()),
        };
        Widths {
            hidden: self.hidden_size(),
            attn: self
                .blocks
                .iter()
                .map(Int8Block::attn_width)
                .max()
                .unwrap_or(0),
            inner: self
                .blocks
                .iter()
                .map(Int8Block::inner_width)
                .max()
                .unwrap_or(0),
            patch,
            patches,
            classes: self.num_classes(),
        }
    }

    /// Allocates every buffer a forward of up to `max_batch` samples of up to `max_seq` tokens
    /// needs (a Vit always runs [`Int8Model::max_seq`] tokens, so its `max_seq` is ignored).
    /// [`Error::InvalidArgument`] for a zero batch, or a Bert `max_seq` of 0 or beyond the
    /// position table.
    pub fn workspace(&self, max_batch: usize, max_seq: usize) -> Result<Workspace> {
        const OP: &str = "Int8Model::workspace";
        if max_batch == 0 {
            return Err(Error::invalid(OP, "max_batch must be at least 1"));
        }
        let seq = match self.kind() {
            ModelKind::Vit => self.max_seq(),
            ModelKind::Bert if max_seq == 0 || max_seq > self.max_seq() => {
                return Err(Error::invalid(
                    OP,
                    format!("max_seq {max_seq} must be in 1..={}", self.max_seq()),
                ));
            }
            ModelKind::Bert => max_seq,
        };
        Ok(Workspace::new(self.widths(), max_batch, seq))
    }

    /// Logits [B, classes] (Vit: class-token head (DeiT: mean of both heads); Bert:
    /// pooler+classifier).
    pub fn forward<'w>(&self, ws: &'w mut Workspace, input: Input<'_>) -> Result<&'w [f32]> {
        let geo = self.run_blocks(ws, input)?;
        let (b, t, h, c) = (geo.batch, geo.seq, self.hidden_size(), self.num_classes());
        let Workspace {
            x,
            pooled_in,
            pooled,
            q8,
            row_scales,
            mean,
            rstd,
            logits,
            logits2,
            ..
        } = ws;
        let (pooled_in, pooled) = (&mut pooled_in[..b * h], &mut pooled[..b * h]);
        let (logits, logits2) = (&mut logits[..b * c], &mut logits2[..b * c]);
        // pooled_in[b] = x[b, token]
        let gather = |pooled_in: &mut [f32], token: usize| {
            for (i, row) in pooled_in.chunks_exact_mut(h).enumerate() {
                row.copy_from_slice(&x[(i * t + token) * h..][..h]);
            }
        };
        let none = Activation::None;
        match &self.arch {
            Arch::Bert(p) => {
                // classifier(tanh(pooler(hidden[:, 0])))
                gather(pooled_in, 0);
                p.pooler
                    .forward(pooled, h, pooled_in, b, none, q8, row_scales)?;
                pooled.iter_mut().for_each(|v| *v = v.tanh());
                p.classifier
                    .forward(logits, c, pooled, b, none, q8, row_scales)?;
            }
            Arch::Vit(p) => {
                // The final LayerNorm is per token: only the tokens the heads read need it.
                gather(pooled_in, 0);
                p.norm.forward(pooled, pooled_in, b, mean, rstd)?;
                p.classifier
                    .forward(logits, c, pooled, b, none, q8, row_scales)?;
                if let Some(dist) = &p.distillation_classifier {
                    gather(pooled_in, 1);
                    p.norm.forward(pooled, pooled_in, b, mean, rstd)?;
                    dist.forward(logits2, c, pooled, b, none, q8, row_scales)?;
                    for (l, &d) in logits.iter_mut().zip(&*logits2) {
                        *l = (*l + d) * 0.5;
                    }
                }
            }
        }
        Ok(logits)
    }

    /// Final hidden states [B, T, H] (Bert: after the last block; Vit: after the final
    /// LayerNorm).
    pub fn hidden<'w>(&self, ws: &'w mut Workspace, input: Input<'_>) -> Result<&'w [f32]> {
        let geo = self.final_hidden(ws, input)?;
        let n = geo.rows() * self.hidden_size();
        Ok(match self.kind() {
            ModelKind::Bert => &ws.x[..n],
            ModelKind::Vit => &ws.tmp[..n],
        })
    }

    /// Runs the model up to its final hidden states: `ws.x` (Bert) or `ws.tmp` (Vit).
    fn final_hidden<'i>(&self, ws: &mut Workspace, input: Input<'i>) -> Result<Batch<'i>> {
        let geo = self.run_blocks(ws, input)?;
        if let Arch::Vit(p) = &self.arch {
            let rows = geo.rows();
            p.norm
                .forward(&mut ws.tmp, &ws.x, rows, &mut ws.mean, &mut ws.rstd)?;
        }
        Ok(geo)
    }

    /// Sentence embeddings [B, H], pooled (mean over real tokens, or CLS) and L2-normalized.
    pub fn embed<'w>(
        &self,
        ws: &'w mut Workspace,
        input: Input<'_>,
        pooling: Pooling,
    ) -> Result<&'w [f32]> {
        let geo = self.final_hidden(ws, input)?;
        let (b, t, h) = (geo.batch, geo.seq, self.hidden_size());
        let hidden: &[f32] = match self.kind() {
            ModelKind::Bert => &ws.x,
            ModelKind::Vit => &ws.tmp,
        };
        let out = &mut ws.embeddings[..b * h];
        for (i, row) in out.chunks_exact_mut(h).enumerate() {
            let sample = &hidden[i * t * h..(i + 1) * t * h];
            match pooling {
                Pooling::Cls => row.copy_from_slice(&sample[..h]),
                Pooling::Mean => {
                    // sentence-transformers: the sum over real tokens times 1 / count.
                    let len = geo.len_of(i);
                    row.fill(0.0);
                    for tok in sample[..len * h].chunks_exact(h) {
                        add_into(row, tok);
                    }
                    let inv = 1.0 / (len as f32).max(1e-9);
                    row.iter_mut().for_each(|v| *v *= inv);
                }
            }
            // F.normalize with the floor applied smoothly: x / sqrt(|x|^2 + 1e-24).
            let norm = (row.iter().map(|v| v * v).sum::<f32>() + 1e-24).sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(out)
    }

    /// Checks `input` against the model and `ws`, embeds it into `ws.x` and runs every block.
    fn run_blocks<'i>(&self, ws: &mut Workspace, input: Input<'i>) -> Result<Batch<'i>> {
        let geo = self.check(ws, &input)?;
        match (&self.arch, input) {
            (Arch::Bert(p), Input::Tokens { ids, .. }) => embed_tokens(p, ws, ids, geo)?,
            (Arch::Vit(p), Input::Images { pixels, .. }) => embed_images(p, ws, pixels, geo)?,
            _ => unreachable!("checked by `check`"),
        }
        let norm = match self.kind() {
            ModelKind::Bert => NormPlacement::Post,
            ModelKind::Vit => NormPlacement::Pre,
        };
        let ws = &mut *ws;
        let mut s = BlockScratch {
            qkv: &mut ws.qkv,
            ctx: &mut ws.ctx,
            inner: &mut ws.inner,
            scores: &mut ws.scores,
            probs: &mut ws.probs,
            q8: &mut ws.q8,
            row_scales: &mut ws.row_scales,
            mean: &mut ws.mean,
            rstd: &mut ws.rstd,
        };
        for block in &self.blocks {
            block.forward(&mut ws.x, &mut ws.tmp, geo, norm, self.gelu, &mut s)?;
        }
        Ok(geo)
    }

    /// The batch geometry of `input`, or the error that rejects it.
    fn check<'i>(&self, ws: &Workspace, input: &Input<'i>) -> Result<Batch<'i>> {
        const OP: &str = "Int8Model::forward";
        if ws.widths != self.widths() {
            return Err(Error::invalid(
                OP,
                "the workspace was made for a model of other widths",
            ));
        }
        let geo = match (&self.arch, *input) {
            (Arch::Vit(p), Input::Images { pixels, batch }) => {
                let per_image = p.config.num_channels * p.config.image_size * p.config.image_size;
                if Some(pixels.len()) != batch.checked_mul(per_image) {
                    return Err(Error::shape(
                        OP,
                        format!(
                            "{} pixels for {batch} images of {:?}",
                            pixels.len(),
                            self.image_shape()
                        ),
                    ));
                }
                Batch {
                    batch,
                    seq: self.max_seq(),
                    lengths: None,
                }
            }
            (
                Arch::Bert(p),
                Input::Tokens {
                    ids,
                    batch,
                    seq,
                    lengths,
                },
            ) => {
                if Some(ids.len()) != batch.checked_mul(seq) {
                    return Err(Error::shape(
                        OP,
                        format!("{} ids for [{batch}, {seq}]", ids.len()),
                    ));
                }
                if seq == 0 {
                    return Err(Error::empty(OP, "sequences of 0 tokens"));
                }
                let vocab = p.config.vocab_size;
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(Error::Index {
                        op: OP,
                        index: id as usize,
                        size: vocab,
                    });
                }
                if let Some(l) = lengths {
                    if l.len() != batch {
                        return Err(Error::shape(
                            OP,
                            format!("{} lengths for a batch of {batch}", l.len()),
                        ));
                    }
                    if let Some(&bad) = l.iter().find(|&&n| n == 0 || n > seq) {
                        return Err(Error::invalid(
                            OP,
                            format!("length {bad} is not in 1..={seq}"),
                        ));
                    }
                }
                Batch {
                    batch,
                    seq,
                    lengths,
                }
            }
            (Arch::Bert(_), Input::Images { .. }) => {
                return Err(Error::invalid(OP, "a Bert model takes tokens, not images"));
            }
            (Arch::Vit(_), Input::Tokens { .. }) => {
                return Err(Error::invalid(OP, "a Vit model takes images, not tokens"));
            }
        };
        if geo.batch == 0 {
            return Err(Error::empty(OP, "a batch of 0 samples"));
        }
        if geo.batch > ws.max_batch || geo.seq > ws.max_seq {
            return Err(Error::shape(
                OP,
                format!(
                    "input [{}, {}] exceeds the workspace's [{}, {}]",
                    geo.batch, geo.seq, ws.max_batch, ws.max_seq
                ),
            ));
        }
        Ok(geo)
    }

    /// Writes the model as safetensors: int8 weights with f32 scales and biases, f32
    /// embeddings and LayerNorms, and the configuration and activation modes in the metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        super::io::save(self, path.as_ref())
    }

    /// Reads a model [`Int8Model::save`] wrote, validating every tensor: [`Error::Format`] for a
    /// truncated file, bad metadata or a wrong dtype, [`Error::MissingTensor`],
    /// [`Error::UnexpectedTensor`], [`Error::TensorShape`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        super::io::load(path.as_ref())
    }

    /// Bytes of the stored model: int8 weights, scales and the f32 parts.
    pub fn weight_bytes(&self) -> usize {
        let blocks: usize = self.blocks.iter().map(Int8Block::stored_bytes).sum();
        let head = match &self.arch {
            Arch::Bert(p) => {
                4 * (p.word.len() + p.position.len() + p.token_type.len() + 2 * p.norm.width())
                    + p.pooler.stored_bytes()
                    + p.classifier.stored_bytes()
            }
            Arch::Vit(p) => {
                4 * (p.cls_token.len()
                    + p.distillation_token.as_ref().map_or(0, Vec::len)
                    + p.position.len()
                    + 2 * p.norm.width())
                    + p.projection.stored_bytes()
                    + p.classifier.stored_bytes()
                    + p.distillation_classifier
                        .as_ref()
                        .map_or(0, Int8Linear::stored_bytes)
            }
        };
        blocks + head
    }
}

/// `ws.x[B*T, H] = LN(word[id] + position[t] + token_type[0])`.
fn embed_tokens(p: &BertParts, ws: &mut Workspace, ids: &[u32], geo: Batch<'_>) -> Result<()> {
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
fn embed_images(p: &VitParts, ws: &mut Workspace, pixels: &[f32], geo: Batch<'_>) -> Result<()> {
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
        p.projection.forward(
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

/// Lowering of a trained f32 model to the int8 engine.
pub trait ToInt8 {
    /// The int8 model, each Linear's input quantized as `plan` says.
    fn to_int8(&self, plan: &QuantPlan) -> Result<Int8Model>;
}

impl ToInt8 for crate::nn::Vit {
    fn to_int8(&self, plan: &QuantPlan) -> Result<Int8Model> {
        Int8Model::from_vit(self, plan)
    }
}

impl ToInt8 for crate::nn::Bert {
    fn to_int8(&self, plan: &QuantPlan) -> Result<Int8Model> {
        Int8Model::from_bert(self, plan)
    }
}
