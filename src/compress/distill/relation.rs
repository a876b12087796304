//! MiniLMv2 / MiniViT relation distillation.
//!
//! Legend: B = batch, T = tokens, W = width of a projection or hidden state (the student's Ws
//! and the teacher's Wt may differ), r = relation heads, d_r = W / r (per model), nh and d =
//! the attention layer's own heads and head width.
//!
//! A relation compares tokens with tokens, so it is `[T, T]` whatever the width: the student
//! learns the teacher's relations without a projection between their widths.

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::nn::{AttentionMask, AttentionParts, l2_normalize};

/// The raw projections of one attention layer, unscaled, heads merged: each `[B, T, W]`
/// (what the layer's query, key and value Linears output).
#[derive(Clone, Copy, Debug)]
pub struct Qkv {
    /// `[B, T, W]` query projection `x W_q^T + b_q`.
    pub query: Var,
    /// `[B, T, W]` key projection.
    pub key: Var,
    /// `[B, T, W]` value projection.
    pub value: Var,
}

impl Qkv {
    /// From the traced parts of [`crate::nn::MultiHeadAttention::forward_parts`], where
    /// `query` is `[B, nh, T, d]` already scaled by `1 / sqrt(d)` and `key`, `value` are
    /// `[B, nh, T, d]`: undoes the scale (`query * sqrt(d)`) and merges the heads back,
    /// `[B, nh, T, d] -> [B, T, nh * d]`. On the graph, so gradients flow back into the layer.
    ///
    /// Errors: [`Error::Shape`] unless the three parts are rank 4 and of one shape.
    pub fn from_attention_parts(g: &Graph, parts: &AttentionParts) -> Result<Qkv> {
        const OP: &str = "Qkv::from_attention_parts";
        let shape = g.shape(parts.query)?;
        let [b, nh, t, d] = shape[..] else {
            return Err(Error::shape(
                OP,
                format!("query must be [B, nh, T, d], got {shape:?}"),
            ));
        };
        for (name, v) in [("key", parts.key), ("value", parts.value)] {
            let s = g.shape(v)?;
            if s != shape {
                return Err(Error::shape(
                    OP,
                    format!("{name} is {s:?}, query is {shape:?}"),
                ));
            }
        }
        // [B, nh, T, d] -> [B, T, nh, d] -> [B, T, nh * d]
        let merge = |v: Var| -> Result<Var> {
            let v = g.permute(v, &[0, 2, 1, 3])?;
            g.reshape(v, &[b, t, nh * d])
        };
        let query = g.mul_scalar(merge(parts.query)?, (d as f32).sqrt())?;
        Ok(Qkv {
            query,
            key: merge(parts.key)?,
            value: merge(parts.value)?,
        })
    }

    /// The projection named by `part`.
    pub fn part(&self, part: QkvPart) -> Var {
        match part {
            QkvPart::Query => self.query,
            QkvPart::Key => self.key,
            QkvPart::Value => self.value,
        }
    }
}

/// One of the three projections of a self-attention layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QkvPart {
    /// The query projection.
    Query,
    /// The key projection.
    Key,
    /// The value projection.
    Value,
}

impl QkvPart {
    /// Query, key, value.
    pub const ALL: [QkvPart; 3] = [QkvPart::Query, QkvPart::Key, QkvPart::Value];

    fn index(self) -> usize {
        self as usize
    }
}

/// What [`attention_relation_loss`] compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationConfig {
    /// Number of relation heads r: each model's width is split into r slices of `W / r`
    /// (independent of the models' own attention heads). Must divide both widths.
    pub relation_heads: usize,
    /// The relations `(i, j)`, each `softmax(X_i X_j^T / sqrt(d_r))`; the default is all 9 of
    /// `{q, k, v}^2`.
    pub pairs: Vec<(QkvPart, QkvPart)>,
}

impl RelationConfig {
    /// All 9 pairs of `{q, k, v}^2` with `relation_heads` heads (MiniViT).
    pub fn new(relation_heads: usize) -> Self {
        RelationConfig {
            relation_heads,
            pairs: Self::all_pairs(),
        }
    }

    /// Only q-q, k-k and v-v, as MiniLMv2 distils.
    pub fn diagonal(relation_heads: usize) -> Self {
        RelationConfig {
            relation_heads,
            pairs: QkvPart::ALL.iter().map(|&p| (p, p)).collect(),
        }
    }

    /// The 9 pairs of `{q, k, v}^2`, row-major: (q, q), (q, k), (q, v), (k, q), ...
    pub fn all_pairs() -> Vec<(QkvPart, QkvPart)> {
        QkvPart::ALL
            .iter()
            .flat_map(|&i| QkvPart::ALL.iter().map(move |&j| (i, j)))
            .collect()
    }
}

impl Default for RelationConfig {
    /// One relation head (divides every width) and all 9 pairs.
    fn default() -> Self {
        Self::new(1)
    }
}

/// `[B, T, W]` of `v`, or [`Error::Shape`] naming `what`.
fn btw(g: &Graph, op: &'static str, what: &str, v: Var) -> Result<[usize; 3]> {
    let shape = g.shape(v)?;
    match shape[..] {
        [b, t, w] if w > 0 => Ok([b, t, w]),
        _ => Err(Error::shape(
            op,
            format!("{what} must be [B, T, W] with W > 0, got {shape:?}"),
        )),
    }
}

/// `[B, T, W]` shared by a layer's three projections.
fn qkv_shape(g: &Graph, op: &'static str, who: &str, layer: usize, x: &Qkv) -> Result<[usize; 3]> {
    let shape = btw(g, op, &format!("{who} layer {layer} query"), x.query)?;
    for (name, v) in [("key", x.key), ("value", x.value)] {
        let s = btw(g, op, &format!("{who} layer {layer} {name}"), v)?;
        if s != shape {
            return Err(Error::shape(
                op,
                format!("{who} layer {layer}: {name} is {s:?}, query is {shape:?}"),
            ));
        }
    }
    Ok(shape)
}

/// [`Error::Shape`] unless student and teacher agree on B and T (and the mask, if any).
fn same_tokens(
    op: &'static str,
    layer: usize,
    student: [usize; 3],
    teacher: [usize; 3],
    mask: Option<&AttentionMask>,
) -> Result<()> {
    if student[..2] != teacher[..2] {
        return Err(Error::shape(
            op,
            format!(
                "layer {layer}: student is [B, T] = {:?}, teacher {:?}",
                &student[..2],
                &teacher[..2]
            ),
        ));
    }
    match mask {
        Some(m) => m.expect(op, student[0], student[1]),
        None => Ok(()),
    }
}

fn check_layers(op: &'static str, student: usize, teacher: usize) -> Result<()> {
    if student != teacher {
        return Err(Error::invalid(
            op,
            format!("{student} student layers paired with {teacher} teacher layers"),
        ));
    }
    if student == 0 {
        return Err(Error::empty(op, "no layer to distil"));
    }
    Ok(())
}

/// One model's relation logits for one layer: the projections split into relation heads,
/// `[B, r, T, d_r]`, and the left operands pre-scaled by `1 / sqrt(d_r)` (3 scalings of
/// `[B, r, T, d_r]` rather than one per pair on `[B, r, T, T]`).
struct RelationHeads {
    split: [Option<Var>; 3],
    scaled: [Option<Var>; 3],
    bias: Option<Var>, // [B, 1, 1, T]
}

impl RelationHeads {
    fn new(
        g: &Graph,
        x: &Qkv,
        [b, t, w]: [usize; 3],
        r: usize,
        pairs: &[(QkvPart, QkvPart)],
        bias: Option<Var>,
    ) -> Result<Self> {
        let dr = w / r;
        let mut heads = RelationHeads {
            split: [None; 3],
            scaled: [None; 3],
            bias,
        };
        for &(i, j) in pairs {
            for p in [i, j] {
                if heads.split[p.index()].is_none() {
                    // [B, T, W] -> [B, T, r, d_r] -> [B, r, T, d_r]
                    let v = g.reshape(x.part(p), &[b, t, r, dr])?;
                    heads.split[p.index()] = Some(g.permute(v, &[0, 2, 1, 3])?);
                }
            }
            if heads.scaled[i.index()].is_none() {
                let v = heads.split[i.index()].expect("split above");
                heads.scaled[i.index()] = Some(g.mul_scalar(v, 1.0 / (dr as f32).sqrt())?);
            }
        }
        Ok(heads)
    }

    /// `X_i X_j^T / sqrt(d_r)` (+ the key padding bias): `[B, r, T, T]`.
    fn logits(&self, g: &Graph, i: QkvPart, j: QkvPart) -> Result<Var> {
        let left = self.scaled[i.index()].expect("pair was prepared");
        let right = self.split[j.index()].expect("pair was prepared");
        let logits = g.matmul_t(left, right)?;
        match self.bias {
            Some(bias) => g.add(logits, bias),
            None => Ok(logits),
        }
    }
}

/// MiniLMv2 / MiniViT self-attention relation loss, averaged over the configured pairs and
/// over the layer pairs (`student[l]` distils from `teacher[l]`).
///
/// For each layer and pair `(i, j)` of projections `X_i, X_j` (`[B, T, W]`, split into
/// `r = config.relation_heads` slices of `d_r = W / r` per model):
///
/// `R_ij = softmax(X_i X_j^T / sqrt(d_r))` per relation head, `[B, r, T, T]`, and
/// `loss_ij = 1 / (r * Q) * sum_{b, h, valid query t} KL(R^t_ij[b, h, t] || R^s_ij[b, h, t])`
/// with `KL(p || q) = sum_k p_k (ln p_k - ln q_k)` and `Q` the number of valid query rows
/// (`B * T` without a mask). This is the KL form of MiniLMv2's teacher-to-student soft
/// cross-entropy `-sum p ln q`: they differ by the teacher's entropy, a constant for the
/// student, so the student's gradient is the same and a perfect student scores 0.
///
/// `mask` (`[B, T]`): padded keys are left out of both softmaxes and padded query rows out of
/// the average, so padding does not change the loss.
///
/// Errors: [`Error::InvalidArgument`] for different layer counts, `relation_heads == 0` or not
/// dividing a width, or no pair; [`Error::Empty`] for no layer or no valid token;
/// [`Error::Shape`] for a projection that is not `[B, T, W]`, projections of one layer with
/// different shapes, student and teacher with different B or T, or a mask of another shape.
pub fn attention_relation_loss(
    g: &Graph,
    student: &[Qkv],
    teacher: &[Qkv],
    config: &RelationConfig,
    mask: Option<&AttentionMask>,
) -> Result<Var> {
    const OP: &str = "attention_relation_loss";
    check_layers(OP, student.len(), teacher.len())?;
    let r = config.relation_heads;
    if r == 0 {
        return Err(Error::invalid(OP, "relation_heads must be positive"));
    }
    if config.pairs.is_empty() {
        return Err(Error::invalid(OP, "no (i, j) pair to distil"));
    }
    let mut terms = Vec::with_capacity(student.len() * config.pairs.len());
    for (layer, (s, t)) in student.iter().zip(teacher).enumerate() {
        let s_shape = qkv_shape(g, OP, "student", layer, s)?;
        let t_shape = qkv_shape(g, OP, "teacher", layer, t)?;
        same_tokens(OP, layer, s_shape, t_shape, mask)?;
        for (who, w) in [("student", s_shape[2]), ("teacher", t_shape[2])] {
            if !w.is_multiple_of(r) {
                return Err(Error::invalid(
                    OP,
                    format!("{r} relation heads do not divide the {who} width {w}"),
                ));
            }
        }
        let [b, tokens, _] = s_shape;
        let rows = query_rows(mask, b, r, tokens);
        if rows.as_ref().map_or(b * tokens, Vec::len) == 0 {
            return Err(Error::empty(OP, "no valid token"));
        }
        let bias = mask.map(|m| g.constant(m.additive_bias()));
        let s_heads = RelationHeads::new(g, s, s_shape, r, &config.pairs, bias)?;
        let t_heads = RelationHeads::new(g, t, t_shape, r, &config.pairs, bias)?;
        // [B, r, T, T] -> [B * r * T, T] rows, then only the valid query rows
        let to_rows = |x: Var| -> Result<Var> {
            let x = g.reshape(x, &[b * r * tokens, tokens])?;
            match &rows {
                Some(rows) => g.index_select(x, 0, rows),
                None => Ok(x),
            }
        };
        for &(i, j) in &config.pairs {
            let log_q = to_rows(g.log_softmax(s_heads.logits(g, i, j)?)?)?;
            let p = to_rows(g.softmax(t_heads.logits(g, i, j)?)?)?;
            terms.push(g.kl_div(log_q, p)?); // mean over the selected rows
        }
    }
    mean_of(g, &terms)
}

/// With a mask, the indices of the valid query rows of `[B, r, T]` flattened: row
/// `(b * r + h) * T + t` for every head `h` and unpadded token `t` of sample `b`.
fn query_rows(mask: Option<&AttentionMask>, b: usize, r: usize, t: usize) -> Option<Vec<usize>> {
    let flags = mask?.flags();
    let rows = (0..b)
        .flat_map(|bi| (0..r).map(move |h| (bi, h)))
        .flat_map(|(bi, h)| {
            (0..t)
                .filter(move |&ti| flags[bi * t + ti])
                .map(move |ti| (bi * r + h) * t + ti)
        })
        .collect();
    Some(rows)
}

/// The mean of one-element values, as one node per term plus one scaling.
fn mean_of(g: &Graph, terms: &[Var]) -> Result<Var> {
    let mut total = terms[0];
    for &term in &terms[1..] {
        total = g.add(total, term)?;
    }
    if terms.len() == 1 {
        return Ok(total);
    }
    g.mul_scalar(total, 1.0 / terms.len() as f32)
}

/// Hidden-state relation loss (MiniViT's hidden relation), averaged over the layer pairs
/// (`student[l]` distils from `teacher[l]`):
///
/// `R = n(H) n(H)^T`, `[B, T, T]`, where `n` L2-normalizes each token's row of `H[B, T, W]`
/// (the cosine similarity of every pair of tokens), and
/// `loss = 1 / N * sum_{b, i, j} (R^s[b, i, j] - R^t[b, i, j])^2`, the MSE over the `N` entries
/// whose tokens `i` and `j` are both valid (`N = B * T * T` without a mask). The widths may
/// differ.
///
/// Errors: [`Error::InvalidArgument`] for different layer counts; [`Error::Empty`] for no
/// layer or no valid token; [`Error::Shape`] for a state that is not `[B, T, W]`, student and
/// teacher with different B or T, or a mask of another shape.
pub fn hidden_relation_loss(
    g: &Graph,
    student: &[Var],
    teacher: &[Var],
    mask: Option<&AttentionMask>,
) -> Result<Var> {
    const OP: &str = "hidden_relation_loss";
    check_layers(OP, student.len(), teacher.len())?;
    let mut terms = Vec::with_capacity(student.len());
    for (layer, (&s, &t)) in student.iter().zip(teacher).enumerate() {
        let s_shape = btw(g, OP, &format!("student layer {layer}"), s)?;
        let t_shape = btw(g, OP, &format!("teacher layer {layer}"), t)?;
        same_tokens(OP, layer, s_shape, t_shape, mask)?;
        let [b, tokens, _] = s_shape;
        // Padded rows of n(H) are zeroed, so every relation entry that touches a padded token
        // is 0 on both sides and adds nothing; the mean is then rescaled to the valid entries.
        let weights = mask.map(|m| g.constant(m.weights())); // [B, T, 1]
        let valid_entries: usize = match mask {
            Some(m) => m
                .flags()
                .chunks(tokens.max(1))
                .map(|f| f.iter().filter(|&&v| v).count().pow(2))
                .sum(),
            None => b * tokens * tokens,
        };
        if valid_entries == 0 {
            return Err(Error::empty(OP, "no valid token"));
        }
        let relation = |h: Var| -> Result<Var> {
            let mut n = l2_normalize(g, h)?; // [B, T, W]
            if let Some(w) = weights {
                n = g.mul(n, w)?;
            }
            g.matmul_t(n, n) // [B, T, T]
        };
        let mse = g.mse(relation(s)?, relation(t)?)?; // mean over B * T * T
        let all_entries = b * tokens * tokens;
        terms.push(if valid_entries == all_entries {
            mse
        } else {
            g.mul_scalar(mse, all_entries as f32 / valid_entries as f32)?
        });
    }
    mean_of(g, &terms)
}
