//! Token-dropping stages in the int8 model file: each predictor's f32 tensors under DynamicViT's
//! names (`score_predictor.{s}.in_conv.0`, `.in_conv.1`, `.out_conv.0`, `.out_conv.2`,
//! `.out_conv.4`), and a `token_drop` metadata field listing each stage's block, keep count and
//! LayerNorm eps.

use super::{DropStage, F32Linear, TokenPredictor};
use crate::error::{Error, Result};
use crate::int8::io::{Reader, Writer, f32_entry};
use safetensors::Dtype;
use serde_json::{Value, json};

/// Metadata key of the stages: a JSON list of `{"block", "keep", "norm_eps_bits"}`.
pub(crate) const TOKEN_DROP: &str = "token_drop";

/// Names of stage `s`'s parts: LayerNorm, then the Linears in order.
fn stage_names(s: usize) -> [String; 5] {
    [
        "in_conv.0",
        "in_conv.1",
        "out_conv.0",
        "out_conv.2",
        "out_conv.4",
    ]
    .map(|part| format!("score_predictor.{s}.{part}"))
}

/// Adds every stage's predictor tensors to `w`; returns the metadata value.
pub(crate) fn write_stages(w: &mut Writer, stages: &[DropStage]) -> Value {
    let mut meta = Vec::with_capacity(stages.len());
    for (s, stage) in stages.iter().enumerate() {
        let p = &stage.predictor;
        let [norm, names @ ..] = stage_names(s);
        w.norm(&norm, &p.norm);
        for (name, l) in names
            .iter()
            .zip([&p.in_proj, &p.hidden, &p.narrow, &p.score])
        {
            let shape = vec![l.out_features(), l.in_features];
            w.entries
                .push(f32_entry(format!("{name}.weight"), shape, &l.weight));
            if let Some(b) = &l.bias {
                w.entries
                    .push(f32_entry(format!("{name}.bias"), vec![b.len()], b));
            }
        }
        meta.push(json!({
            "block": stage.block,
            "keep": stage.keep,
            "norm_eps_bits": p.norm.eps.to_bits(),
        }));
    }
    Value::Array(meta)
}

/// The stages the metadata value `text` lists, with their predictors of width `c` read from
/// `r`. Shapes are checked here; [`Int8Model::with_token_drop`] checks the rest.
pub(crate) fn read_stages(r: &mut Reader<'_>, text: &str, c: usize) -> Result<Vec<DropStage>> {
    let list: Vec<Value> = serde_json::from_str(text)
        .map_err(|e| r.malformed(format!("metadata `{TOKEN_DROP}` is not a JSON list: {e}")))?;
    let mut stages = Vec::with_capacity(list.len());
    for (s, v) in list.iter().enumerate() {
        let field = |key: &str| v.get(key).and_then(Value::as_u64);
        let (Some(block), Some(keep), Some(bits)) =
            (field("block"), field("keep"), field("norm_eps_bits"))
        else {
            return Err(r.malformed(format!(
                "metadata `{TOKEN_DROP}` stage {s}: {v} lacks a block, keep or norm_eps_bits"
            )));
        };
        let eps = u32::try_from(bits)
            .map(f32::from_bits)
            .map_err(|_| r.malformed(format!("stage {s}: norm_eps_bits {bits} is not a u32")))?;
        let [norm, in_conv, hidden, narrow, score] = stage_names(s);
        let norm = r.norm(&norm, c, eps)?;
        let in_proj = read_linear(r, &in_conv, c, Some(c))?;
        let hidden = read_linear(r, &hidden, c, None)?;
        let narrow = read_linear(r, &narrow, hidden.out_features(), None)?;
        let score = read_linear(r, &score, narrow.out_features(), Some(2))?;
        stages.push(DropStage {
            block: usize::try_from(block).unwrap_or(usize::MAX),
            keep: usize::try_from(keep).unwrap_or(usize::MAX),
            predictor: TokenPredictor {
                norm,
                in_proj,
                hidden,
                narrow,
                score,
            },
        });
    }
    Ok(stages)
}

/// F32 Linear `name` with `k` inputs and, when given, `n` outputs (else as many as stored).
fn read_linear(r: &mut Reader<'_>, name: &str, k: usize, n: Option<usize>) -> Result<F32Linear> {
    let wname = format!("{name}.weight");
    let shape = r.view(&wname, Dtype::F32)?.shape().to_vec();
    let rows = match (shape.as_slice(), n) {
        (&[rows, cols], None) if cols == k && rows > 0 => rows,
        (&[rows, cols], Some(n)) if cols == k && rows == n => rows,
        _ => {
            return Err(Error::TensorShape {
                name: wname,
                expected: vec![n.unwrap_or(shape.first().copied().unwrap_or(1)), k],
                found: shape,
            });
        }
    };
    let weight = r.f32(&wname, &[rows, k])?;
    let bname = format!("{name}.bias");
    let bias = match r.st.tensor(&bname) {
        Ok(_) => Some(r.f32(&bname, &[rows])?),
        Err(_) => None,
    };
    Ok(F32Linear {
        weight,
        bias,
        in_features: k,
    })
}
