//! The int8 model: Bert (post-LN, pooler) and Vit (pre-LN, class/distillation tokens) forwards on
//! a [`Workspace`].
//!
//! Legend: B = batch, T = tokens, H = hidden width, V = vocabulary, C = classes,
//! Ch = image channels, S = image side, p = patch side, N = patches, P = Ch * p * p.

use std::path::Path;

use super::block::{Batch, BlockScratch, Int8Block, add_into};
use super::parts::{Arch, embed_images, embed_tokens};
use super::tokendrop::{DropScratch, DropStage};
use super::workspace::Widths;
use super::{Int8Linear, QuantPlan, Workspace};
use crate::embed::Pooling;
use crate::error::{Error, Result};
use crate::nn::NormPlacement;
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

/// A Bert or Vit with every Linear in int8 (see the module docs of [`super`]); a Vit may drop
/// tokens as DynamicViT does ([`Int8Model::from_dynamic_vit`]).
#[derive(Clone)]
pub struct Int8Model {
    pub(crate) arch: Arch,
    pub(crate) blocks: Vec<Int8Block>,
    pub(crate) gelu: GeluKind,
    /// Token-dropping stages, in block order (empty: every token runs through every block).
    pub(crate) drops: Vec<DropStage>,
}

impl Int8Model {
    /// Lowers a Vit; each Linear's input is quantized as `plan` says. [`Error::NonFinite`] if a
    /// parameter holds NaN or infinity.
    pub fn from_vit(vit: &crate::nn::Vit, plan: &QuantPlan) -> Result<Self> {
        super::lower::vit(vit, plan)
    }

    /// Lowers a Bert; each Linear's input is quantized as `plan` says. [`Error::NonFinite`] if a
    /// parameter holds NaN or infinity.
    pub fn from_bert(bert: &crate::nn::Bert, plan: &QuantPlan) -> Result<Self> {
        super::lower::bert(bert, plan)
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
            head_dim: self
                .blocks
                .iter()
                .map(Int8Block::head_dim)
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
            drop_width: self
                .drops
                .iter()
                .map(|s| {
                    let p = &s.predictor;
                    let widest = [p.width(), p.hidden.out_features(), p.narrow.out_features()];
                    widest.into_iter().max().unwrap_or(0).max(2)
                })
                .max()
                .unwrap_or(0),
            drop_stages: self.drops.len(),
        }
    }

    /// Allocates every buffer a forward of up to `max_batch` samples of up to `max_seq` tokens
    /// needs (a Vit always runs [`Int8Model::max_seq`] tokens, so its `max_seq` is ignored).
    /// [`Error::InvalidArgument`] for a zero batch, a Bert `max_seq` of 0 or beyond the
    /// position table, or a workspace larger than
    /// [`MAX_WORKSPACE_BYTES`](super::MAX_WORKSPACE_BYTES) (or than the allocator can
    /// provide): an error, not an out-of-memory abort.
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
        Workspace::new(self.widths(), max_batch, seq)
    }

    /// Logits [B, classes] (Vit: class-token head (DeiT: mean of both heads); Bert:
    /// pooler+classifier).
    pub fn forward<'w>(&self, ws: &'w mut Workspace, input: Input<'_>) -> Result<&'w [f32]> {
        // The heads read only the leading tokens (class, and DeiT's distillation token), so the
        // last block computes its output for those alone.
        let leading = match &self.arch {
            Arch::Bert(_) => 1,
            Arch::Vit(p) => p.prefix(),
        };
        let geo = self.run_blocks(ws, input, leading)?;
        // Rows of x per sample: `leading` after a last block, all T without blocks.
        let t = if self.blocks.is_empty() {
            geo.seq
        } else {
            leading
        };
        let (b, h, c) = (geo.batch, self.hidden_size(), self.num_classes());
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
                    .forward_into(pooled, h, pooled_in, b, none, q8, row_scales)?;
                pooled.iter_mut().for_each(|v| *v = v.tanh());
                p.classifier
                    .forward_into(logits, c, pooled, b, none, q8, row_scales)?;
            }
            Arch::Vit(p) => {
                // The final LayerNorm is per token: only the tokens the heads read need it.
                gather(pooled_in, 0);
                p.norm.forward(pooled, pooled_in, b, mean, rstd)?;
                p.classifier
                    .forward_into(logits, c, pooled, b, none, q8, row_scales)?;
                if let Some(dist) = &p.distillation_classifier {
                    gather(pooled_in, 1);
                    p.norm.forward(pooled, pooled_in, b, mean, rstd)?;
                    dist.forward_into(logits2, c, pooled, b, none, q8, row_scales)?;
                    for (l, &d) in logits.iter_mut().zip(&*logits2) {
                        *l = (*l + d) * 0.5;
                    }
                }
            }
        }
        Ok(logits)
    }

    /// Final hidden states [B, T, H] (Bert: after the last block; Vit: after the final
    /// LayerNorm). A Vit that drops tokens returns the tokens its last stage kept,
    /// `[B, P + k_last, H]`: the prefix tokens, then the kept patch tokens in their original
    /// order (as [`crate::compress::tokendrop::DynamicVit::forward_gather`]'s features;
    /// [`Int8Model::kept_positions`] says which they are).
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
        let geo = self.run_blocks(ws, input, usize::MAX)?;
        if let Arch::Vit(p) = &self.arch {
            let rows = geo.rows();
            p.norm
                .forward(&mut ws.tmp, &ws.x, rows, &mut ws.mean, &mut ws.rstd)?;
        }
        Ok(geo)
    }

    /// Sentence embeddings [B, H], pooled (mean over real tokens, or CLS) and L2-normalized.
    /// On a Vit that drops tokens the mean is over the tokens [`Int8Model::hidden`] returns.
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
    /// The last block computes only the first `last_queries` tokens of each sample (all of
    /// them when `last_queries >= T`); see [`Int8Block::forward`].
    fn run_blocks<'i>(
        &self,
        ws: &mut Workspace,
        input: Input<'i>,
        last_queries: usize,
    ) -> Result<Batch<'i>> {
        self.run_blocks_observed(ws, input, last_queries, &mut |_, _| {})
    }

    /// [`Int8Model::run_blocks`], showing `observe` the hidden states `[B, T, H]` after the
    /// embeddings (`None`) and after each block (`Some(i)`); see [`Int8Model::trace`].
    pub(crate) fn run_blocks_observed<'i>(
        &self,
        ws: &mut Workspace,
        input: Input<'i>,
        last_queries: usize,
        observe: &mut dyn FnMut(Option<usize>, &[f32]),
    ) -> Result<Batch<'i>> {
        let geo = self.check(ws, &input)?;
        match (&self.arch, input) {
            (Arch::Bert(p), Input::Tokens { ids, .. }) => embed_tokens(p, ws, ids, geo)?,
            (Arch::Vit(p), Input::Images { pixels, .. }) => embed_images(p, ws, pixels, geo)?,
            _ => unreachable!("checked by `check`"),
        }
        let h = self.hidden_size();
        observe(None, &ws.x[..geo.rows() * h]);
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
            head_ctx: &mut ws.head_ctx,
            q8: &mut ws.q8,
            row_scales: &mut ws.row_scales,
            mean: &mut ws.mean,
            rstd: &mut ws.rstd,
        };
        let prefix = match &self.arch {
            Arch::Vit(p) => p.prefix(),
            Arch::Bert(_) => 0,
        };
        let mut geo = geo;
        let mut stages = self.drops.iter().enumerate().peekable();
        let last = self.blocks.len().saturating_sub(1);
        for (i, block) in self.blocks.iter().enumerate() {
            if let Some((index, stage)) = stages.next_if(|(_, st)| st.block == i) {
                let mut d = DropScratch {
                    a: &mut ws.drop_a,
                    b: &mut ws.drop_b,
                    global: &mut ws.drop_global,
                    scores: &mut ws.keep_scores,
                    order: &mut ws.order,
                    kept: &mut ws.kept,
                    mean: &mut *s.mean,
                    rstd: &mut *s.rstd,
                };
                geo = stage.apply(index, &mut ws.x, geo, prefix, &mut d)?;
                ws.dropped_batch = geo.batch;
            }
            let queries = if i == last {
                last_queries.min(geo.seq)
            } else {
                geo.seq
            };
            let (x, tmp) = (&mut ws.x, &mut ws.tmp);
            block.forward(x, tmp, geo, queries, norm, self.gelu, &mut s)?;
            observe(Some(i), &x[..geo.batch * queries * h]);
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
                if seq > self.max_seq() {
                    return Err(Error::shape(
                        OP,
                        format!("{seq} tokens, the position table has {}", self.max_seq()),
                    ));
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
    /// embeddings and LayerNorms, and the configuration and activation modes in the metadata;
    /// a token-dropping Vit adds its f32 predictors and its stages.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        super::io::save(self, path.as_ref())
    }

    /// Reads a model [`Int8Model::save`] wrote, validating every tensor: [`Error::Format`] for a
    /// truncated file, bad metadata or a wrong dtype, [`Error::MissingTensor`],
    /// [`Error::UnexpectedTensor`], [`Error::TensorShape`]; [`Error::InvalidArgument`] for
    /// token-dropping stages that do not fit the model (see [`Int8Model::from_dynamic_vit`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        super::io::load(path.as_ref())
    }

    /// [`Int8Model::load`] from the bytes of a model file already in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        super::io::load_bytes(bytes, "int8 model buffer")
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
        blocks + head + self.drop_bytes()
    }
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

impl std::fmt::Debug for Int8Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Int8Model")
            .field("kind", &self.kind())
            .field("layers", &self.blocks.len())
            .field("hidden_size", &self.hidden_size())
            .field("num_classes", &self.num_classes())
            .field("max_seq", &self.max_seq())
            .field("drop_stages", &self.drop_stages())
            .finish_non_exhaustive()
    }
}
