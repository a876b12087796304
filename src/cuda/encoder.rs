//! [`CudaEncoder`]: the fp16 forward of a whole post-LN BERT encoder on the GPU, from a CPU
//! [`Bert`] (weights uploaded once as fp16).
//!
//! Per forward, all on the device's stream: `bert_embed_ln_f16` (word + position + token-type
//! gather, sum and LayerNorm in one kernel), then per block: one fused QKV GEMM (`[3H, H]`
//! weight, bias epilogue), `qkv_split_heads_f16` into `[B, nh, T, d]`, the fused attention with
//! key padding (`lens`), `merge_heads_f16`, the output GEMM + bias, `add_layernorm_f16`
//! (residual + LN), the FFN GEMM with the bias + GELU epilogue, the second FFN GEMM + bias and
//! residual + LN again. Pooling and L2 normalisation run on the host
//! ([`CudaEncoder::embed_mean`]).
//!
//! The activations live in a workspace allocated for one `[B, T]` shape and reused while the
//! shape repeats; a forward of another shape reallocates it once (the launchers take exactly
//! sized tensors).

use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use std::sync::Arc;

use super::device::{CudaDevice, DeviceTensor};
use super::error::{Result, ensure};
use super::gemm::{BLayout, Epilogue, gemm};
use super::ptx::KernelSource;
use super::{attention, f16};
use crate::nn::Bert;
use lithe_kernels::gelu::GeluKind;

fn to_f16(x: &[f32]) -> Vec<f16> {
    x.iter().map(|&v| f16::from_f32(v)).collect()
}

fn up(dev: &CudaDevice, p: &crate::autograd::Param) -> Result<DeviceTensor> {
    let v = p.value();
    dev.upload(&to_f16(v.data()), v.shape())
}

struct Layer {
    w_qkv: DeviceTensor, // [3H, H]
    b_qkv: DeviceTensor, // [3H]
    w_o: DeviceTensor,   // [H, H]
    b_o: DeviceTensor,
    ln1_g: DeviceTensor,
    ln1_b: DeviceTensor,
    w_1: DeviceTensor, // [I, H]
    b_1: DeviceTensor,
    w_2: DeviceTensor, // [H, I]
    b_2: DeviceTensor,
    ln2_g: DeviceTensor,
    ln2_b: DeviceTensor,
    eps1: f32,
    eps2: f32,
}

/// Activations of one `[B, T]` shape.
struct Workspace {
    batch: usize,
    seq: usize,
    ids: CudaSlice<u32>,
    types: CudaSlice<u32>,
    lens: CudaSlice<i32>,
    x: DeviceTensor,     // [B*T, H], the hidden state (block input / output)
    y: DeviceTensor,     // [B*T, H], after the attention sub-block
    qkv: DeviceTensor,   // [B*T, 3A], A = nh * d (H unless heads were pruned)
    q: DeviceTensor,     // [B, nh, T, d]
    k: DeviceTensor,     // [B, nh, T, d]
    v: DeviceTensor,     // [B, nh, T, d]
    o: DeviceTensor,     // [B, nh, T, d]
    ctx: DeviceTensor,   // [B*T, A]
    t: DeviceTensor,     // [B*T, H], GEMM output before residual + LN
    inter: DeviceTensor, // [B*T, I]
}

/// A BERT encoder (post-LN, `Bert::forward_hidden`) in fp16 on one GPU.
pub struct CudaEncoder {
    hidden: usize,
    heads: usize,
    head_dim: usize,
    inner: usize,
    vocab: usize,
    max_pos: usize,
    n_types: usize,
    act: Epilogue,
    word: DeviceTensor,
    pos: DeviceTensor,
    types: DeviceTensor,
    emb_g: DeviceTensor,
    emb_b: DeviceTensor,
    emb_eps: f32,
    layers: Vec<Layer>,
    ws: Option<Workspace>,
}

impl std::fmt::Debug for CudaEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaEncoder")
            .field("hidden", &self.hidden)
            .field("heads", &self.heads)
            .field("head_dim", &self.head_dim)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl CudaEncoder {
    /// Uploads `bert`'s embeddings and encoder as fp16 (the pooler and classifier are not
    /// used). Errors if the head dim is not 32, 64 or 128 (the attention kernels' dims) or the
    /// widths are not multiples of 8 (the tensor-core GEMMs), or for ALBERT's factorized
    /// embedding (`embedding_size`), which has no fp16 form. Layers sharing a block (ALBERT's
    /// `num_hidden_groups`) are uploaded once per layer.
    pub fn from_bert(dev: &CudaDevice, bert: &Bert) -> Result<Self> {
        let c = &bert.config;
        ensure!(
            bert.embedding_mapping.is_none() && c.embedding_size.is_none(),
            "CudaEncoder: ALBERT's factorized embedding (embedding_size) is not supported"
        );
        let (h, nh, inner) = (c.hidden_size, c.num_attention_heads, c.intermediate_size);
        let d = c
            .head_dim()
            .map_err(|e| super::CudaError::Invalid(format!("CudaEncoder: {e}")))?;
        ensure!(
            matches!(d, 32 | 64 | 128),
            "CudaEncoder: head dim {d} must be 32, 64 or 128"
        );
        // Q/K/V width; less than H in a model whose heads were pruned.
        let qkv_width = nh * d;
        ensure!(
            h % 8 == 0 && inner % 8 == 0,
            "CudaEncoder: hidden {h} and intermediate {inner} must be multiples of 8"
        );
        let act = match c.gelu_kind() {
            Ok(GeluKind::Erf) => Epilogue::BiasGeluErf,
            Ok(GeluKind::Tanh) => Epilogue::BiasGeluTanh,
            Err(e) => {
                ensure!(false, "CudaEncoder: {e}");
                unreachable!()
            }
        };
        let e = &bert.embeddings;
        let mut layers = Vec::new();
        for blk in bert.blocks() {
            ensure!(
                blk.norm == crate::nn::NormPlacement::Post,
                "CudaEncoder: only post-LN (BERT) blocks are supported"
            );
            let a = &blk.attention;
            let bias = |l: &crate::nn::Linear| -> Result<Vec<f32>> {
                match &l.bias {
                    Some(b) => Ok(b.value().data().to_vec()),
                    None => Ok(vec![0.0; l.out_features()]),
                }
            };
            let mut wq = a.query.weight.value().data().to_vec();
            wq.extend_from_slice(a.key.weight.value().data());
            wq.extend_from_slice(a.value.weight.value().data());
            let mut bq = bias(&a.query)?;
            bq.extend(bias(&a.key)?);
            bq.extend(bias(&a.value)?);
            let upb = |l: &crate::nn::Linear| -> Result<DeviceTensor> {
                let b = bias(l)?;
                dev.upload(&to_f16(&b), &[b.len()])
            };
            layers.push(Layer {
                w_qkv: dev.upload(&to_f16(&wq), &[3 * qkv_width, h])?,
                b_qkv: dev.upload(&to_f16(&bq), &[3 * qkv_width])?,
                w_o: up(dev, &a.dense.weight)?,
                b_o: upb(&a.dense)?,
                ln1_g: up(dev, &blk.attn_norm.weight)?,
                ln1_b: up(dev, &blk.attn_norm.bias)?,
                w_1: up(dev, &blk.mlp.fc1.weight)?,
                b_1: upb(&blk.mlp.fc1)?,
                w_2: up(dev, &blk.mlp.fc2.weight)?,
                b_2: upb(&blk.mlp.fc2)?,
                ln2_g: up(dev, &blk.mlp_norm.weight)?,
                ln2_b: up(dev, &blk.mlp_norm.bias)?,
                eps1: blk.attn_norm.eps,
                eps2: blk.mlp_norm.eps,
            });
        }
        Ok(CudaEncoder {
            hidden: h,
            heads: nh,
            head_dim: d,
            inner,
            vocab: c.vocab_size,
            max_pos: e.position_embeddings.rows(),
            n_types: e.token_type_embeddings.rows(),
            act,
            word: up(dev, &e.word_embeddings.weight)?,
            pos: up(dev, &e.position_embeddings.weight)?,
            types: up(dev, &e.token_type_embeddings.weight)?,
            emb_g: up(dev, &e.layer_norm.weight)?,
            emb_b: up(dev, &e.layer_norm.bias)?,
            emb_eps: e.layer_norm.eps,
            layers,
            ws: None,
        })
    }

    /// Hidden width H.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Allocates the workspace for `[batch, seq]` now (a later forward of that shape then
    /// allocates no device memory; the host side still allocates a few small vectors per
    /// kernel launch, in cudarc's launch builder).
    pub fn reserve(&mut self, dev: &CudaDevice, batch: usize, seq: usize) -> Result<()> {
        if self
            .ws
            .as_ref()
            .is_some_and(|w| w.batch == batch && w.seq == seq)
        {
            return Ok(());
        }
        ensure!(batch > 0 && seq > 0, "CudaEncoder: empty batch");
        let (h, nh, d) = (self.hidden, self.heads, self.head_dim);
        let a = nh * d;
        let n = batch * seq;
        let s = dev.stream();
        let heads = [batch, nh, seq, d];
        self.ws = None; // free the old one first
        self.ws = Some(Workspace {
            batch,
            seq,
            ids: s.alloc_zeros::<u32>(n)?,
            types: s.alloc_zeros::<u32>(n)?,
            lens: s.alloc_zeros::<i32>(batch)?,
            x: dev.zeros(&[n, h])?,
            y: dev.zeros(&[n, h])?,
            qkv: dev.zeros(&[n, 3 * a])?,
            q: dev.zeros(&heads)?,
            k: dev.zeros(&heads)?,
            v: dev.zeros(&heads)?,
            o: dev.zeros(&heads)?,
            ctx: dev.zeros(&[n, a])?,
            t: dev.zeros(&[n, h])?,
            inter: dev.zeros(&[n, self.inner])?,
        });
        Ok(())
    }

    /// The last hidden state `[B*T, H]` (fp16, on the device) of `ids` (flat `[B, T]`),
    /// `token_types` (default 0) and per-sequence valid `lengths` (keys `t >= lengths[b]`
    /// are masked; default: all `T`). Queued on the device's stream (no synchronisation).
    pub fn forward(
        &mut self,
        dev: &CudaDevice,
        ids: &[u32],
        shape: [usize; 2],
        token_types: Option<&[u32]>,
        lengths: Option<&[usize]>,
    ) -> Result<&DeviceTensor> {
        let [b, t] = shape;
        ensure!(
            ids.len() == b * t && b > 0 && t > 0,
            "CudaEncoder: {} ids for [{b}, {t}]",
            ids.len()
        );
        ensure!(
            t <= self.max_pos,
            "CudaEncoder: {t} tokens, position table has {} rows",
            self.max_pos
        );
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.vocab) {
            ensure!(false, "CudaEncoder: id {bad} >= vocab {}", self.vocab);
        }
        if let Some(tt) = token_types {
            ensure!(tt.len() == ids.len(), "CudaEncoder: token_types length");
            if let Some(bad) = tt.iter().find(|&&i| i as usize >= self.n_types) {
                ensure!(false, "CudaEncoder: token type {bad} >= {}", self.n_types);
            }
        }
        let lens: Vec<i32> = match lengths {
            Some(l) => {
                ensure!(l.len() == b, "CudaEncoder: {} lengths for B = {b}", l.len());
                ensure!(
                    l.iter().all(|&x| x <= t),
                    "CudaEncoder: a length exceeds T = {t}"
                );
                l.iter().map(|&x| x as i32).collect()
            }
            None => vec![t as i32; b],
        };
        self.reserve(dev, b, t)?;
        let (h, nh, d) = (self.hidden, self.heads, self.head_dim);
        let a = nh * d;
        let ws = self.ws.as_mut().expect("reserved");
        let s = dev.stream();
        s.memcpy_htod(ids, &mut ws.ids)?;
        s.memcpy_htod(&lens, &mut ws.lens)?;
        let has_types = token_types.is_some();
        if let Some(tt) = token_types {
            s.memcpy_htod(tt, &mut ws.types)?;
        }
        let rows = (b * t) as i32;
        let row_cfg = LaunchConfig {
            grid_dim: ((b * t).div_ceil(8) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        {
            let f = dev.function(KernelSource::Elementwise, "bert_embed_ln_f16", 0)?;
            let (ti, hi, vi, ni) = (t as i32, h as i32, self.vocab as i32, self.n_types as i32);
            let null: u64 = 0;
            let mut lb = s.launch_builder(&f);
            lb.arg(&mut ws.x.buf)
                .arg(&self.word.buf)
                .arg(&self.pos.buf)
                .arg(&self.types.buf);
            lb.arg(&ws.ids);
            if has_types {
                lb.arg(&ws.types);
            } else {
                lb.arg(&null);
            }
            lb.arg(&self.emb_g.buf)
                .arg(&self.emb_b.buf)
                .arg(&rows)
                .arg(&ti)
                .arg(&hi)
                .arg(&vi)
                .arg(&ni)
                .arg(&self.emb_eps);
            // SAFETY: matches `bert_embed_ln_f16(f16* out, const f16* word, const f16* pos,
            // const f16* typ, const unsigned* ids, const unsigned* types, const f16* gamma,
            // const f16* beta, int rows, int T, int H, int vocab, int n_types, float eps)`; out
            // holds rows*H, word vocab*H, pos >= T*H (T <= max_pos checked), typ n_types*H, ids
            // and types rows entries (types may be NULL); ids and types were checked in range
            // and the kernel clamps them anyway.
            unsafe { lb.launch(row_cfg) }?;
        }
        let split = dev.function(KernelSource::Elementwise, "qkv_split_heads_f16", 0)?;
        let merge = dev.function(KernelSource::Elementwise, "merge_heads_f16", 0)?;
        let addln = dev.function(KernelSource::Elementwise, "add_layernorm_f16", 0)?;
        let (bi, ti, nhi, di) = (b as i32, t as i32, nh as i32, d as i32);
        let stride_cfg = |n: usize| LaunchConfig {
            grid_dim: (n.div_ceil(256).min(1 << 16) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        for l in &self.layers {
            gemm(
                dev,
                &ws.x,
                &l.w_qkv,
                BLayout::Nt,
                Some(&l.b_qkv),
                Epilogue::Bias,
                &mut ws.qkv,
            )?;
            {
                let mut lb = s.launch_builder(&split);
                lb.arg(&mut ws.q.buf)
                    .arg(&mut ws.k.buf)
                    .arg(&mut ws.v.buf)
                    .arg(&ws.qkv.buf)
                    .arg(&bi)
                    .arg(&ti)
                    .arg(&nhi)
                    .arg(&di);
                // SAFETY: matches `qkv_split_heads_f16(f16* q, f16* k, f16* v, const f16* qkv,
                // int B, int T, int nh, int d)`; qkv holds B*T*3A (A = nh*d) and q, k, v
                // B*nh*T*d elements each (allocated for this shape); all distinct buffers.
                unsafe { lb.launch(stride_cfg(b * t * 3 * a)) }?;
            }
            attention(dev, &ws.q, &ws.k, &ws.v, Some(&ws.lens), &mut ws.o)?;
            {
                let mut lb = s.launch_builder(&merge);
                lb.arg(&mut ws.ctx.buf)
                    .arg(&ws.o.buf)
                    .arg(&bi)
                    .arg(&ti)
                    .arg(&nhi)
                    .arg(&di);
                // SAFETY: matches `merge_heads_f16(f16* out, const f16* o, int B, int T,
                // int nh, int d)`; out holds B*T*A and o B*nh*T*d elements; distinct buffers.
                unsafe { lb.launch(stride_cfg(b * t * a)) }?;
            }
            gemm(
                dev,
                &ws.ctx,
                &l.w_o,
                BLayout::Nt,
                Some(&l.b_o),
                Epilogue::Bias,
                &mut ws.t,
            )?;
            // y = LN1(t + x)
            add_layernorm(
                s,
                &addln,
                row_cfg,
                &mut ws.y,
                &ws.t,
                &ws.x,
                (&l.ln1_g, &l.ln1_b, l.eps1),
            )?;
            gemm(
                dev,
                &ws.y,
                &l.w_1,
                BLayout::Nt,
                Some(&l.b_1),
                self.act,
                &mut ws.inter,
            )?;
            gemm(
                dev,
                &ws.inter,
                &l.w_2,
                BLayout::Nt,
                Some(&l.b_2),
                Epilogue::Bias,
                &mut ws.t,
            )?;
            // x = LN2(t + y)
            add_layernorm(
                s,
                &addln,
                row_cfg,
                &mut ws.x,
                &ws.t,
                &ws.y,
                (&l.ln2_g, &l.ln2_b, l.eps2),
            )?;
        }
        Ok(&ws.x)
    }

    /// [`CudaEncoder::forward`], downloaded as f32 `[B*T*H]` (synchronises).
    pub fn forward_f32(
        &mut self,
        dev: &CudaDevice,
        ids: &[u32],
        shape: [usize; 2],
        token_types: Option<&[u32]>,
        lengths: Option<&[usize]>,
    ) -> Result<Vec<f32>> {
        let x = self.forward(dev, ids, shape, token_types, lengths)?;
        Ok(dev.download(x)?.iter().map(|v| v.to_f32()).collect())
    }

    /// Sentence embeddings: mean over the first `lengths[b]` tokens (all `T` by default) of
    /// the last hidden state, then L2 normalisation (on the host, in f32), `[B][H]`.
    pub fn embed_mean(
        &mut self,
        dev: &CudaDevice,
        ids: &[u32],
        shape: [usize; 2],
        token_types: Option<&[u32]>,
        lengths: Option<&[usize]>,
    ) -> Result<Vec<Vec<f32>>> {
        let [b, t] = shape;
        let h = self.hidden;
        let hid = self.forward_f32(dev, ids, shape, token_types, lengths)?;
        Ok((0..b)
            .map(|i| {
                let n = lengths.map_or(t, |l| l[i]);
                let mut v = vec![0.0f32; h];
                for tok in 0..n {
                    let row = &hid[(i * t + tok) * h..(i * t + tok + 1) * h];
                    v.iter_mut().zip(row).for_each(|(a, &x)| *a += x);
                }
                let inv = 1.0 / (n as f32).max(1e-9);
                v.iter_mut().for_each(|a| *a *= inv);
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
                v
            })
            .collect())
    }
}

/// `out = LayerNorm(a + r)` with `(gamma, beta, eps)`, over rows of the last dimension: one
/// launch of `add_layernorm_f16`. `out`, `a` and `r` are `[rows, H]`, gamma and beta `[H]`;
/// `out` is a distinct buffer (`&mut` borrow), so it aliases neither input.
fn add_layernorm(
    s: &Arc<CudaStream>,
    f: &CudaFunction,
    cfg: LaunchConfig,
    out: &mut DeviceTensor,
    a: &DeviceTensor,
    r: &DeviceTensor,
    (gamma, beta, eps): (&DeviceTensor, &DeviceTensor, f32),
) -> Result<()> {
    let cols = *gamma.shape().last().unwrap_or(&0);
    ensure!(
        cols > 0
            && beta.shape() == gamma.shape()
            && [&a.shape(), &r.shape()]
                .iter()
                .all(|sh| sh.iter().product::<usize>() == out.shape().iter().product::<usize>()),
        "add_layernorm: operand shapes disagree"
    );
    let (rows, cols) = (
        (out.shape().iter().product::<usize>() / cols) as i32,
        cols as i32,
    );
    let mut lb = s.launch_builder(f);
    lb.arg(&mut out.buf)
        .arg(&a.buf)
        .arg(&r.buf)
        .arg(&gamma.buf)
        .arg(&beta.buf)
        .arg(&rows)
        .arg(&cols)
        .arg(&eps);
    // SAFETY: matches `add_layernorm_f16(f16* out, const f16* a, const f16* r, const f16* gamma,
    // const f16* beta, int rows, int cols, float eps)`; out, a, r hold rows*cols elements and
    // gamma, beta cols (checked above); out aliases neither input.
    unsafe { lb.launch(cfg) }?;
    Ok(())
}
