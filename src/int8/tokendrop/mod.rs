//! DynamicViT token dropping in the int8 engine ([`Int8Model::from_dynamic_vit`]).
//!
//! The backbone is lowered as [`Int8Model::from_vit`] lowers a ViT. Each stage's predictor stays
//! in f32 (LayerNorm, four Linears and GELU on lithe_kernels' f32 kernels; about `1.6 C^2`
//! multiply-adds per token against a block's `12 C^2`), so its keep decisions are those of the
//! f32 model on the same features.
//! Before the stage's block the predictor scores the current patch tokens of each sample, the
//! `k_s` best are kept in ascending order behind the prefix tokens, and `ws.x` is compacted in
//! place: later blocks run on `P + k_s` tokens. Every buffer comes from the [`Workspace`].
//!
//! Tokens are ranked by `logit0 - logit1` of the predictor's last Linear: the keep
//! log-probability `logit0 - logsumexp(logit0, logit1) = -softplus(logit1 - logit0)` is
//! increasing in it, so the order is the f32 model's without computing the softmax. Ties go to
//! the lower index, as in [`DynamicVit::forward_gather`].
//!
//! Files: this one (the predictors, the stages and the model's token-dropping API), `io` (the
//! stages in the int8 model file).
//!
//! Legend: B = batch, P = prefix tokens (class, and DeiT's distillation token), N = patches,
//! n = patch tokens before a stage, k = patch tokens kept by it, C = hidden width.

mod io;

pub(crate) use io::{TOKEN_DROP, read_stages, write_stages};

use super::block::{Batch, Norm, add_into};
use super::{Int8Model, QuantPlan, ToInt8, Workspace};
use crate::compress::tokendrop::{DynamicVit, Predictor};
use crate::error::{Error, Result};
use crate::nn::Linear;
use lithe_kernels::gelu::{GeluKind, gelu_forward};
use lithe_kernels::{BSource, GemmOptions, MatMut, MatRef, sgemm_fused};

/// A Linear kept in f32.
#[derive(Clone)]
pub(crate) struct F32Linear {
    /// `[out, in]`.
    pub(crate) weight: Vec<f32>,
    /// `[out]`.
    pub(crate) bias: Option<Vec<f32>>,
    pub(crate) in_features: usize,
}

impl F32Linear {
    fn from_nn(l: &Linear) -> F32Linear {
        F32Linear {
            weight: l.weight.value().data().to_vec(),
            bias: l.bias.as_ref().map(|b| b.value().data().to_vec()),
            in_features: l.in_features(),
        }
    }

    pub(crate) fn out_features(&self) -> usize {
        self.weight.len() / self.in_features.max(1)
    }

    /// `out[rows, out] = inp[rows, in] W^T + b`, the bias added in the GEMM's epilogue.
    fn forward(&self, out: &mut [f32], inp: &[f32], rows: usize) -> Result<()> {
        let (k, n) = (self.in_features, self.out_features());
        let a = MatRef::row_major(&inp[..rows * k], rows, k)?;
        let w_t = MatRef::row_major(&self.weight, n, k)?.t(); // [in, out]
        let c = MatMut::row_major(&mut out[..rows * n], rows, n)?;
        let opts = GemmOptions::default();
        sgemm_fused(
            &opts,
            1.0,
            a,
            BSource::View(w_t),
            0.0,
            self.bias.as_deref(),
            c,
        )?;
        Ok(())
    }
}

/// DynamicViT's [`Predictor`] in f32, scoring tokens with an all-ones policy (every current
/// token is kept so far, so the global half is the plain mean over them).
#[derive(Clone)]
pub(crate) struct TokenPredictor {
    /// `in_conv.0`.
    pub(crate) norm: Norm,
    /// `in_conv.1`: `[C, C]`.
    pub(crate) in_proj: F32Linear,
    /// `out_conv.0`: `[C/2, C]`.
    pub(crate) hidden: F32Linear,
    /// `out_conv.2`: `[C/4, C/2]`.
    pub(crate) narrow: F32Linear,
    /// `out_conv.4`: `[2, C/4]`.
    pub(crate) score: F32Linear,
}

impl TokenPredictor {
    fn from_nn(p: &Predictor) -> TokenPredictor {
        TokenPredictor {
            norm: Norm::from_nn(&p.norm),
            in_proj: F32Linear::from_nn(&p.in_proj),
            hidden: F32Linear::from_nn(&p.hidden),
            narrow: F32Linear::from_nn(&p.narrow),
            score: F32Linear::from_nn(&p.score),
        }
    }

    /// Width C it reads.
    pub(crate) fn width(&self) -> usize {
        self.norm.width()
    }

    /// Values stored (every weight and bias, all f32).
    fn params(&self) -> usize {
        let lin = |l: &F32Linear| l.weight.len() + l.bias.as_ref().map_or(0, Vec::len);
        2 * self.width()
            + lin(&self.in_proj)
            + lin(&self.hidden)
            + lin(&self.narrow)
            + lin(&self.score)
    }

    /// [`Error::Shape`] unless `C = width` is even and the Linears chain `C -> C -> C1 -> C2 ->
    /// 2` (DynamicViT's `C1 = C/2`, `C2 = C/4`), every bias fitting its Linear.
    fn check(&self, width: usize) -> Result<()> {
        let c = self.width();
        let chain = [&self.in_proj, &self.hidden, &self.narrow, &self.score];
        let fits = c == width
            && c > 0
            && c.is_multiple_of(2)
            && (self.in_proj.in_features, self.in_proj.out_features()) == (c, c)
            && self.hidden.in_features == c
            && self.narrow.in_features == self.hidden.out_features()
            && self.score.in_features == self.narrow.out_features()
            && self.score.out_features() == 2
            && chain.iter().all(|l| {
                l.weight.len() == l.in_features * l.out_features()
                    && l.bias.as_ref().is_none_or(|b| b.len() == l.out_features())
            });
        if !fits {
            return Err(Error::shape(
                "Int8Model token predictor",
                format!(
                    "widths do not fit C = {width}: norm {c}, in_conv.1 [{}, {}], out_conv.0 \
                     [{}, {}], out_conv.2 [{}, {}], out_conv.4 [{}, {}]",
                    self.in_proj.out_features(),
                    self.in_proj.in_features,
                    self.hidden.out_features(),
                    self.hidden.in_features,
                    self.narrow.out_features(),
                    self.narrow.in_features,
                    self.score.out_features(),
                    self.score.in_features,
                ),
            ));
        }
        Ok(())
    }

    /// `s.scores[B*n]` = `logit0 - logit1` of every patch token of `x[B, P+n, C]`.
    fn score_tokens(
        &self,
        x: &[f32],
        geo: Batch<'_>,
        prefix: usize,
        s: &mut DropScratch<'_>,
    ) -> Result<()> {
        let (c, half) = (self.width(), self.width() / 2);
        let (b, n) = (geo.batch, geo.seq - prefix);
        let rows = b * n;
        let (a_buf, b_buf) = (&mut *s.a, &mut *s.b);
        // a[B*n, C] = the patch rows of x
        for bi in 0..b {
            let from = (bi * geo.seq + prefix) * c;
            a_buf[bi * n * c..][..n * c].copy_from_slice(&x[from..from + n * c]);
        }
        // h = GELU(in_proj(LN(a))): b[B*n, C]
        self.norm.forward(b_buf, a_buf, rows, s.mean, s.rstd)?;
        self.in_proj.forward(a_buf, b_buf, rows)?;
        let gelu = GeluKind::Erf;
        gelu_forward(&mut b_buf[..rows * c], &a_buf[..rows * c], gelu)?;
        // a = [local half of h | the sample's mean of the other half], the mean divided by
        // `n + 1e-6` as the f32 predictor divides by the policy's sum plus its floor.
        let global = &mut s.global[..half];
        for bi in 0..b {
            let h = &b_buf[bi * n * c..][..n * c];
            global.fill(0.0);
            for row in h.chunks_exact(c) {
                add_into(global, &row[half..]);
            }
            let count = n as f32 + 1e-6;
            global.iter_mut().for_each(|v| *v /= count);
            let joined = &mut a_buf[bi * n * c..][..n * c];
            for (dst, src) in joined.chunks_exact_mut(c).zip(h.chunks_exact(c)) {
                dst[..half].copy_from_slice(&src[..half]);
                dst[half..].copy_from_slice(global);
            }
        }
        // MLP: C -> C/2 -> C/4 -> 2, GELU between.
        let (w1, w2) = (self.hidden.out_features(), self.narrow.out_features());
        self.hidden.forward(b_buf, a_buf, rows)?;
        gelu_forward(&mut a_buf[..rows * w1], &b_buf[..rows * w1], gelu)?;
        self.narrow.forward(b_buf, a_buf, rows)?;
        gelu_forward(&mut a_buf[..rows * w2], &b_buf[..rows * w2], gelu)?;
        self.score.forward(b_buf, a_buf, rows)?; // [B*n, 2]
        for (out, logits) in s.scores[..rows].iter_mut().zip(b_buf.chunks_exact(2)) {
            *out = logits[0] - logits[1];
        }
        Ok(())
    }
}

/// One token-dropping stage: before block `block`, keep `keep` patch tokens per sample.
#[derive(Clone)]
pub(crate) struct DropStage {
    pub(crate) block: usize,
    pub(crate) keep: usize,
    pub(crate) predictor: TokenPredictor,
}

/// Scratch of a stage, borrowed from the workspace.
pub(crate) struct DropScratch<'a> {
    /// `[B*N, C]` each: the predictor's activations.
    pub(crate) a: &'a mut [f32],
    pub(crate) b: &'a mut [f32],
    /// `[C/2]`: one sample's global mean.
    pub(crate) global: &'a mut [f32],
    /// `[B*N]`: scores of the current patch tokens.
    pub(crate) scores: &'a mut [f32],
    /// `[N]`: one sample's token order.
    pub(crate) order: &'a mut [usize],
    /// `[stages, B*N]`: per stage, the kept tokens' original positions `[B, k_s]`.
    pub(crate) kept: &'a mut [usize],
    /// `[B*N]` each: LayerNorm statistics.
    pub(crate) mean: &'a mut [f32],
    pub(crate) rstd: &'a mut [f32],
}

impl DropStage {
    /// Stage `index` on `x[B, P+n, C]`: scores the patch tokens, keeps the best `k` of each
    /// sample (ties to the lower index) in ascending order behind the prefix tokens, compacts
    /// `x` in place into `[B, P+k, C]` and records the kept tokens' original positions. Returns
    /// the new geometry.
    pub(crate) fn apply<'i>(
        &self,
        index: usize,
        x: &mut [f32],
        geo: Batch<'i>,
        prefix: usize,
        s: &mut DropScratch<'_>,
    ) -> Result<Batch<'i>> {
        let (c, t, n) = (self.predictor.width(), geo.seq, geo.seq - prefix);
        let k = self.keep.min(n);
        self.predictor.score_tokens(x, geo, prefix, s)?;
        let per_stage = s.scores.len(); // B_max * N
        let (before, rest) = s.kept.split_at_mut(index * per_stage);
        let kept = &mut rest[..per_stage];
        let previous = index.checked_sub(1).map(|p| &before[p * per_stage..]);
        for bi in 0..geo.batch {
            let scores = &s.scores[bi * n..][..n];
            let order = &mut s.order[..n];
            order.iter_mut().enumerate().for_each(|(j, o)| *o = j);
            // Best first: higher score, then lower index. A total order, so the kept set does
            // not depend on the selection algorithm.
            let best_first =
                |i: &usize, j: &usize| scores[*j].total_cmp(&scores[*i]).then(i.cmp(j));
            if k < n {
                order.select_nth_unstable_by(k, best_first);
            }
            let chosen = &mut order[..k];
            chosen.sort_unstable();
            // Rows only move to lower indices (bi (P+k) + i <= bi (P+n) + chosen[i]), and in
            // ascending order: every row is read before anything overwrites it.
            for j in 0..prefix {
                let (from, to) = ((bi * t + j) * c, (bi * (prefix + k) + j) * c);
                x.copy_within(from..from + c, to);
            }
            for (i, &j) in chosen.iter().enumerate() {
                let (from, to) = (
                    (bi * t + prefix + j) * c,
                    (bi * (prefix + k) + prefix + i) * c,
                );
                x.copy_within(from..from + c, to);
                kept[bi * k + i] = match previous {
                    Some(prev) => prev[bi * n + j],
                    None => j,
                };
            }
        }
        Ok(Batch {
            batch: geo.batch,
            seq: prefix + k,
            lengths: None,
        })
    }
}

impl Int8Model {
    /// Lowers a DynamicViT: the backbone as [`Int8Model::from_vit`] lowers it (each Linear
    /// quantized as `plan` says), and each stage's predictor in f32 with its block and keep
    /// count ([`DynamicVit::keep_counts`]). [`Int8Model::forward`] then drops tokens as
    /// [`DynamicVit::forward_gather`] does; [`Int8Model::hidden`] and [`Int8Model::embed`]
    /// return and pool the tokens kept after the last stage (`[B, P + k_last, H]`).
    /// The plan's entries for the predictors' Linears are unused, and a predictor Linear's
    /// quantization-aware-training state is ignored: the predictors compute in plain f32.
    /// Errors: the config's ([`crate::compress::tokendrop::TokenDropConfig::validate`]), a
    /// predictor count other than the stage count, a non-finite parameter, and
    /// [`Int8Model::from_vit`]'s.
    pub fn from_dynamic_vit(model: &DynamicVit, plan: &QuantPlan) -> Result<Self> {
        // The predictors too: they are copied to the int8 model in f32.
        crate::int8::lower::check_finite_params("Int8Model::from_dynamic_vit", model)?;
        let td = &model.config.token_drop;
        td.validate(model.vit.blocks().len())?;
        if model.predictors.len() != td.stages.len() {
            return Err(Error::invalid(
                "Int8Model::from_dynamic_vit",
                format!(
                    "{} predictors for {} stages",
                    model.predictors.len(),
                    td.stages.len()
                ),
            ));
        }
        let stages = td
            .stages
            .iter()
            .zip(model.keep_counts())
            .zip(&model.predictors)
            .map(|((&block, keep), p)| DropStage {
                block,
                keep,
                predictor: TokenPredictor::from_nn(p),
            })
            .collect();
        super::lower::vit(&model.vit, plan)?.with_token_drop(stages)
    }

    /// The model with `stages` (lowering and loading both end here): [`Error::InvalidArgument`]
    /// unless this is a Vit and the stages' blocks are strictly increasing below the depth with
    /// keep counts in `1..=N`, never above the previous stage's; [`Error::Shape`] for a
    /// predictor of another width.
    pub(crate) fn with_token_drop(mut self, stages: Vec<DropStage>) -> Result<Self> {
        const OP: &str = "Int8Model token drop";
        let patches = self.widths().patches;
        if !stages.is_empty() && self.kind() != super::ModelKind::Vit {
            return Err(Error::invalid(OP, "only a Vit drops tokens"));
        }
        let mut prev: Option<&DropStage> = None;
        for s in &stages {
            let cap = prev.map_or(patches, |p| p.keep);
            if s.block >= self.blocks.len() || prev.is_some_and(|p| p.block >= s.block) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "stage blocks must increase strictly below the depth {}",
                        self.blocks.len()
                    ),
                ));
            }
            if s.keep == 0 || s.keep > cap {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "stage before block {} keeps {} of {cap} tokens",
                        s.block, s.keep
                    ),
                ));
            }
            s.predictor.check(self.hidden_size())?;
            prev = Some(s);
        }
        self.drops = stages;
        Ok(self)
    }

    /// The token-dropping stages as `(block, kept patch tokens)`: the stage runs before that
    /// block and keeps that many tokens per sample. Empty for a model that drops none.
    pub fn drop_stages(&self) -> Vec<(usize, usize)> {
        self.drops.iter().map(|s| (s.block, s.keep)).collect()
    }

    /// The kept patch tokens' original positions (in `0..N`, ascending per sample) after
    /// token-dropping stage `stage` in the last forward that ran on `ws`: `[B, k_stage]` for
    /// that forward's batch B (whichever model of the same widths ran it).
    /// [`Error::InvalidArgument`] for a stage the model does not have or a workspace no
    /// token-dropping forward has run on.
    pub fn kept_positions<'w>(&self, ws: &'w Workspace, stage: usize) -> Result<&'w [usize]> {
        const OP: &str = "Int8Model::kept_positions";
        let Some(s) = self.drops.get(stage) else {
            return Err(Error::invalid(
                OP,
                format!("stage {stage} of a model with {}", self.drops.len()),
            ));
        };
        if ws.widths != self.widths() || ws.dropped_batch == 0 {
            return Err(Error::invalid(
                OP,
                "no forward of this model has run on the workspace",
            ));
        }
        let per_stage = ws.keep_scores.len();
        Ok(&ws.kept[stage * per_stage..][..ws.dropped_batch * s.keep])
    }

    /// Stored bytes of the predictors (all f32).
    pub(crate) fn drop_bytes(&self) -> usize {
        self.drops.iter().map(|s| 4 * s.predictor.params()).sum()
    }
}

impl ToInt8 for DynamicVit {
    fn to_int8(&self, plan: &QuantPlan) -> Result<Int8Model> {
        Int8Model::from_dynamic_vit(self, plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::Graph;
    use crate::nn::Module;
    use crate::tensor::{Rng, Tensor};

    /// A predictor of width `c` with every parameter drawn from N(0, 0.3^2): scores far apart.
    fn predictor(c: usize, seed: u64) -> Predictor {
        let mut rng = Rng::new(seed);
        let p = Predictor::new(c, &mut rng).unwrap();
        for (_, param) in p.named_params() {
            let shape = param.shape();
            param
                .set_value(Tensor::randn(&shape, 0.0, 0.3, &mut rng))
                .unwrap();
        }
        p
    }

    /// The f32 model's `log p(keep) - log p(drop)` for each of the `n` tokens `x[b, n, c]` (all
    /// kept so far), and its top `k` by keep log-probability per sample, ascending (ties to the
    /// lower index).
    fn f32_top_k(p: &Predictor, x: &[f32], shape: [usize; 3], k: usize) -> (Vec<f32>, Vec<usize>) {
        let [b, n, _] = shape;
        let g = Graph::inference();
        let tokens = g.constant(Tensor::from_vec(x.to_vec(), &shape).unwrap());
        let ones = g.constant(Tensor::ones(&[b, n]));
        let lp = g.value(p.forward(&g, tokens, ones).unwrap()).unwrap();
        let diff: Vec<f32> = lp.data().chunks_exact(2).map(|r| r[0] - r[1]).collect();
        let mut kept = Vec::new();
        for bi in 0..b {
            let keep = |j: usize| lp.data()[(bi * n + j) * 2];
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&i, &j| keep(j).total_cmp(&keep(i)).then(i.cmp(&j)));
            order.truncate(k);
            order.sort_unstable();
            kept.extend(order);
        }
        (diff, kept)
    }

    /// Two stages on `x[B, P+n, C]`: the scores are the f32 predictor's `log p(keep) -
    /// log p(drop)` (= `logit0 - logit1`) to float rounding, the kept positions its top k, and
    /// the compacted rows the kept rows, bit for bit.
    #[test]
    fn stages_keep_the_f32_predictors_top_k() {
        let (b, pre, n, c) = (3, 2, 10, 16);
        let x = Tensor::randn(&[b, pre + n, c], 0.0, 1.0, &mut Rng::new(7));
        let stages = [(6, predictor(c, 8)), (3, predictor(c, 9))];
        let (mut a, mut bb) = (vec![0.0; b * n * c], vec![0.0; b * n * c]);
        let (mut global, mut scores) = (vec![0.0; c / 2], vec![0.0; b * n]);
        let (mut order, mut kept) = (vec![0; n], vec![0; 2 * b * n]);
        let (mut mean, mut rstd) = (vec![0.0; b * n], vec![0.0; b * n]);
        let mut s = DropScratch {
            a: &mut a,
            b: &mut bb,
            global: &mut global,
            scores: &mut scores,
            order: &mut order,
            kept: &mut kept,
            mean: &mut mean,
            rstd: &mut rstd,
        };
        let mut ours = x.data().to_vec();
        let mut rows = x.data().to_vec(); // [B, P+n, C]: the f32 side's tokens
        let mut positions: Vec<Vec<usize>> = vec![(0..n).collect(); b];
        // Stages record with the stride of the first stage's tokens: `[stages, B*N]`.
        let per_stage = b * n;
        let mut geo = Batch {
            batch: b,
            seq: pre + n,
            lengths: None,
        };
        for (index, (k, p)) in stages.iter().enumerate() {
            let n = geo.seq - pre;
            let patches: Vec<f32> = rows
                .chunks_exact((pre + n) * c)
                .flat_map(|sample| sample[pre * c..].to_vec())
                .collect();
            let (want_scores, want) = f32_top_k(p, &patches, [b, n, c], *k);
            let stage = DropStage {
                block: index,
                keep: *k,
                predictor: TokenPredictor::from_nn(p),
            };
            geo = stage.apply(index, &mut ours, geo, pre, &mut s).unwrap();
            assert_eq!(geo.seq, pre + k);
            for (got, want) in s.scores.iter().zip(&want_scores) {
                let close = (got - want).abs() <= 1e-4 * (1.0 + want.abs());
                assert!(close, "stage {index}: score {got} vs {want}");
            }
            // The f32 side gathers the prefix rows, then the chosen rows in order.
            let mut next = Vec::new();
            for bi in 0..b {
                let sample = &rows[bi * (pre + n) * c..][..(pre + n) * c];
                next.extend_from_slice(&sample[..pre * c]);
                let chosen = &want[bi * k..(bi + 1) * k];
                for &j in chosen {
                    next.extend_from_slice(&sample[(pre + j) * c..][..c]);
                }
                positions[bi] = chosen.iter().map(|&j| positions[bi][j]).collect();
            }
            rows = next;
            let recorded = &s.kept[index * per_stage..][..b * k];
            assert_eq!(recorded, &positions.concat()[..], "stage {index}");
            assert_eq!(
                &ours[..rows.len()],
                &rows[..],
                "stage {index}: compacted rows"
            );
        }
    }
}
