//! Int8 models as safetensors: I8 weights `[out, in]` with F32 `weight_scale` `[out]` and `bias`
//! `[out]` per Linear (Hugging Face names), F32 embeddings and LayerNorms; the configuration,
//! per-layer head counts and each Linear's activation mode in `__metadata__`, marked with a
//! format name and version. A token-dropping Vit adds its predictors in F32
//! (`score_predictor.{s}.*`, DynamicViT's names) and a `token_drop` metadata field listing each
//! stage's block and keep count. Loading checks every tensor's dtype and shape and every metadata
//! field, and rejects tensors it does not know.

use super::Int8Model;
use super::block::{Int8Block, Norm, Qkv};
use super::parts::{Arch, BertParts, VitParts};
use super::tokendrop::{TOKEN_DROP, read_stages, write_stages};
use super::{ActQuant, Int8Linear};
use crate::error::{Error, Result};
use crate::io::{file_error, parse_safetensors, write_atomically};
use crate::nn::{BertConfig, VitConfig};
use lithe_kernels::gelu::GeluKind;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// `format` metadata of every lithe int8 file.
const FORMAT: &str = "lithe-int8";
/// Version of the layout below; bumped on any incompatible change.
const VERSION: &str = "1";

/// One tensor to write: name, dtype, shape, little-endian bytes.
type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

pub(super) fn f32_entry(name: String, shape: Vec<usize>, data: &[f32]) -> Entry {
    let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    (name, Dtype::F32, shape, bytes)
}

/// The Hugging Face names of block `i`'s parts: (Q/K/V group, attention norm, MLP norm).
fn block_names(kind: &Arch, i: usize) -> (String, String, String) {
    let p = format!("encoder.layer.{i}");
    match kind {
        Arch::Bert(_) => (
            format!("{p}.attention.self"),
            format!("{p}.attention.output.LayerNorm"),
            format!("{p}.output.LayerNorm"),
        ),
        Arch::Vit(_) => (
            format!("{p}.attention.attention"),
            format!("{p}.layernorm_before"),
            format!("{p}.layernorm_after"),
        ),
    }
}

/// Collects the tensors and activation modes of a model.
#[derive(Default)]
pub(super) struct Writer {
    pub(super) entries: Vec<Entry>,
    acts: serde_json::Map<String, Value>,
}

impl Writer {
    /// Rows `rows` of `l` (all of them for a plain Linear; a third for fused Q, K or V).
    fn linear_rows(&mut self, name: &str, l: &Int8Linear, rows: std::ops::Range<usize>) {
        let k = l.in_features();
        let weight: Vec<u8> = l.weight[rows.start * k..rows.end * k]
            .iter()
            .map(|&v| v as u8)
            .collect();
        let n = rows.len();
        self.entries
            .push((format!("{name}.weight"), Dtype::I8, vec![n, k], weight));
        let scales = &l.scales[rows.clone()];
        self.entries
            .push(f32_entry(format!("{name}.weight_scale"), vec![n], scales));
        if let Some(b) = &l.bias {
            self.entries
                .push(f32_entry(format!("{name}.bias"), vec![n], &b[rows]));
        }
        let act = match l.act() {
            ActQuant::Dynamic => json!("dynamic"),
            // The bits keep the scale exact; the number is for readers.
            ActQuant::Static(s) => json!({ "static": s, "bits": s.to_bits() }),
        };
        self.acts.insert(name.to_string(), act);
    }

    fn linear(&mut self, name: &str, l: &Int8Linear) {
        self.linear_rows(name, l, 0..l.out_features());
    }

    pub(super) fn norm(&mut self, name: &str, n: &Norm) {
        let w = n.width();
        self.entries
            .push(f32_entry(format!("{name}.weight"), vec![w], &n.weight));
        self.entries
            .push(f32_entry(format!("{name}.bias"), vec![w], &n.bias));
    }
}

/// See [`Int8Model::save`].
pub(crate) fn save(m: &Int8Model, path: &Path) -> Result<()> {
    const OP: &str = "Int8Model::save";
    let mut w = Writer::default();
    let h = m.hidden_size();
    let (kind, config) = match &m.arch {
        Arch::Bert(p) => {
            let c = &p.config;
            let e = "embeddings";
            w.entries.push(f32_entry(
                format!("{e}.word_embeddings.weight"),
                vec![c.vocab_size, h],
                &p.word,
            ));
            w.entries.push(f32_entry(
                format!("{e}.position_embeddings.weight"),
                vec![c.max_position_embeddings, h],
                &p.position,
            ));
            w.entries.push(f32_entry(
                format!("{e}.token_type_embeddings.weight"),
                vec![p.token_type.len() / h, h],
                &p.token_type,
            ));
            w.norm("embeddings.LayerNorm", &p.norm);
            w.linear("pooler.dense", &p.pooler);
            w.linear("classifier", &p.classifier);
            // The layer and class counts of the model as it is (a pruned or distilled model
            // may have kept the config it was built from).
            let c = BertConfig {
                num_hidden_layers: m.blocks.len(),
                num_labels: m.num_classes(),
                ..c.clone()
            };
            ("bert", serde_json::to_string(&c))
        }
        Arch::Vit(p) => {
            w.entries.push(f32_entry(
                "embeddings.cls_token".into(),
                vec![1, 1, h],
                &p.cls_token,
            ));
            if let Some(d) = &p.distillation_token {
                w.entries.push(f32_entry(
                    "embeddings.distillation_token".into(),
                    vec![1, 1, h],
                    d,
                ));
            }
            w.entries.push(f32_entry(
                "embeddings.position_embeddings".into(),
                vec![1, p.position.len() / h, h],
                &p.position,
            ));
            w.linear("embeddings.patch_embeddings.projection", &p.projection);
            w.norm("layernorm", &p.norm);
            w.linear("classifier", &p.classifier);
            if let Some(d) = &p.distillation_classifier {
                w.linear("distillation_classifier", d);
            }
            let c = VitConfig {
                num_hidden_layers: m.blocks.len(),
                num_labels: m.num_classes(),
                ..p.config.clone()
            };
            ("vit", serde_json::to_string(&c))
        }
    };
    for (i, b) in m.blocks.iter().enumerate() {
        let (qkv, attn_norm, mlp_norm) = block_names(&m.arch, i);
        let p = format!("encoder.layer.{i}");
        let names = ["query", "key", "value"].map(|n| format!("{qkv}.{n}"));
        match &b.qkv {
            Qkv::Fused(l) => {
                let a = b.attn_width();
                for (j, name) in names.iter().enumerate() {
                    w.linear_rows(name, l, j * a..(j + 1) * a);
                }
            }
            Qkv::Separate(parts) => {
                for (name, l) in names.iter().zip(parts.iter()) {
                    w.linear(name, l);
                }
            }
        }
        w.linear(&format!("{p}.attention.output.dense"), &b.dense);
        w.norm(&attn_norm, &b.attn_norm);
        w.linear(&format!("{p}.intermediate.dense"), &b.fc1);
        w.linear(&format!("{p}.output.dense"), &b.fc2);
        w.norm(&mlp_norm, &b.mlp_norm);
    }
    // Token-dropping stages: the predictors' f32 tensors, and their blocks in the metadata.
    let token_drop = (!m.drops.is_empty()).then(|| write_stages(&mut w, &m.drops));
    let heads: Vec<usize> = m.blocks.iter().map(|b| b.heads).collect();
    let config = config.map_err(|e| Error::invalid(OP, e.to_string()))?;
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), VERSION.to_string()),
        ("kind".to_string(), kind.to_string()),
        ("config".to_string(), config),
        ("heads".to_string(), json!(heads).to_string()),
        ("act_quant".to_string(), Value::Object(w.acts).to_string()),
    ]);
    if let Some(stages) = token_drop {
        metadata.insert(TOKEN_DROP.to_string(), stages.to_string());
    }
    let views = w
        .entries
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(OP, e.to_string()))?;
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::invalid(OP, e.to_string()))?;
    write_atomically(path, &bytes)
}

/// Reads tensors by name, checking each, and remembers which were read.
pub(super) struct Reader<'a> {
    pub(super) st: SafeTensors<'a>,
    what: String,
    acts: HashMap<String, ActQuant>,
    used: HashSet<String>,
}

impl<'a> Reader<'a> {
    pub(super) fn malformed(&self, msg: impl Into<String>) -> Error {
        Error::Format {
            what: self.what.clone(),
            msg: msg.into(),
        }
    }

    /// The tensor `name`, of `dtype`.
    pub(super) fn view(&mut self, name: &str, dtype: Dtype) -> Result<TensorView<'a>> {
        let view = self.st.tensor(name).map_err(|_| Error::MissingTensor {
            name: name.to_string(),
        })?;
        if view.dtype() != dtype {
            return Err(self.malformed(format!(
                "tensor `{name}` is {}, expected {dtype}",
                view.dtype()
            )));
        }
        self.used.insert(name.to_string());
        Ok(view)
    }

    fn check_shape(name: &str, found: &[usize], expected: &[usize]) -> Result<()> {
        if found != expected {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            });
        }
        Ok(())
    }

    /// F32 tensor `name` of shape `shape`, every value finite.
    pub(super) fn f32(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let view = self.view(name, Dtype::F32)?;
        Self::check_shape(name, view.shape(), shape)?;
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if data.iter().any(|v| !v.is_finite()) {
            return Err(self.malformed(format!("tensor `{name}` holds a non-finite value")));
        }
        Ok(data)
    }

    pub(super) fn norm(&mut self, name: &str, width: usize, eps: f32) -> Result<Norm> {
        Ok(Norm {
            weight: self.f32(&format!("{name}.weight"), &[width])?,
            bias: self.f32(&format!("{name}.bias"), &[width])?,
            eps,
        })
    }

    /// Linear `name` with input width `k` and, when given, `n` outputs.
    fn linear(&mut self, name: &str, k: usize, n: Option<usize>) -> Result<Int8Linear> {
        let wname = format!("{name}.weight");
        let view = self.view(&wname, Dtype::I8)?;
        let shape = view.shape().to_vec();
        let rows = match (shape.as_slice(), n) {
            (&[rows, cols], None) if cols == k => rows,
            (&[rows, cols], Some(n)) if cols == k && rows == n => rows,
            _ => {
                let expected = vec![n.unwrap_or(shape.first().copied().unwrap_or(0)), k];
                return Err(Error::TensorShape {
                    name: wname,
                    expected,
                    found: shape,
                });
            }
        };
        let weight: Vec<i8> = view.data().iter().map(|&b| b as i8).collect();
        let scales = self.f32(&format!("{name}.weight_scale"), &[rows])?;
        let bname = format!("{name}.bias");
        let bias = match self.st.tensor(&bname) {
            Ok(_) => Some(self.f32(&bname, &[rows])?),
            Err(_) => None,
        };
        let act = *self
            .acts
            .get(name)
            .ok_or_else(|| self.malformed(format!("no activation mode for Linear `{name}`")))?;
        Int8Linear::from_quantized(weight, scales, bias, k, act)
    }
}

/// The string metadata field `key`.
fn field<'m>(meta: &'m HashMap<String, String>, key: &str, what: &str) -> Result<&'m str> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| Error::Format {
            what: what.to_string(),
            msg: format!("metadata has no `{key}`"),
        })
}

/// The activation modes of the `act_quant` metadata field.
fn parse_acts(text: &str, what: &str) -> Result<HashMap<String, ActQuant>> {
    let bad = |msg: String| Error::Format {
        what: what.to_string(),
        msg,
    };
    let map: serde_json::Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| bad(format!("metadata `act_quant` is not a JSON object: {e}")))?;
    map.into_iter()
        .map(|(name, v)| {
            let act = match &v {
                Value::String(s) if s == "dynamic" => ActQuant::Dynamic,
                Value::Object(o) => match o.get("bits").and_then(Value::as_u64) {
                    Some(bits) if bits <= u64::from(u32::MAX) => {
                        ActQuant::Static(f32::from_bits(bits as u32))
                    }
                    _ => return Err(bad(format!("`act_quant` of `{name}`: {v} has no u32 bits"))),
                },
                _ => return Err(bad(format!("`act_quant` of `{name}`: {v} is not a mode"))),
            };
            Ok((name, act))
        })
        .collect()
}

/// See [`Int8Model::load`].
pub(crate) fn load(path: &Path) -> Result<Int8Model> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    load_bytes(&bytes, &format!("int8 model file {}", path.display()))
}

/// See [`Int8Model::from_bytes`]; `what` names the source in errors.
pub(crate) fn load_bytes(bytes: &[u8], what: &str) -> Result<Int8Model> {
    let what = what.to_string();
    let st = parse_safetensors(bytes, &what)?;
    let bad = |msg: String| Error::Format {
        what: what.clone(),
        msg,
    };
    let meta = SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default();
    let format = field(&meta, "format", &what)?;
    let version = field(&meta, "format_version", &what)?;
    if (format, version) != (FORMAT, VERSION) {
        return Err(bad(format!(
            "format {format:?} version {version:?}, expected {FORMAT:?} version {VERSION:?}"
        )));
    }
    let heads: Vec<usize> = serde_json::from_str(field(&meta, "heads", &what)?)
        .map_err(|e| bad(format!("metadata `heads` is not a list of counts: {e}")))?;
    let acts = parse_acts(field(&meta, "act_quant", &what)?, &what)?;
    let config = field(&meta, "config", &what)?;
    let kind = field(&meta, "kind", &what)?;
    let mut r = Reader {
        st,
        what: what.clone(),
        acts,
        used: HashSet::new(),
    };
    let model = match kind {
        "bert" => {
            let c: BertConfig = serde_json::from_str(config)
                .map_err(|e| bad(format!("metadata `config` is not a BERT config: {e}")))?;
            load_bert(&mut r, c, &heads)?
        }
        "vit" => {
            let c: VitConfig = serde_json::from_str(config)
                .map_err(|e| bad(format!("metadata `config` is not a ViT config: {e}")))?;
            load_vit(&mut r, c, &heads)?
        }
        other => {
            return Err(bad(format!(
                "metadata `kind` {other:?} is neither bert nor vit"
            )));
        }
    };
    let model = match meta.get(TOKEN_DROP) {
        Some(text) => {
            let stages = read_stages(&mut r, text, model.hidden_size())?;
            model.with_token_drop(stages)?
        }
        None => model,
    };
    if let Some(name) = r.st.names().into_iter().find(|n| !r.used.contains(*n)) {
        return Err(Error::UnexpectedTensor {
            name: name.to_string(),
        });
    }
    Ok(model)
}

fn load_blocks(
    r: &mut Reader<'_>,
    arch: &Arch,
    h: usize,
    eps: f32,
    heads: &[usize],
) -> Result<Vec<Int8Block>> {
    let mut blocks = Vec::with_capacity(heads.len());
    for (i, &nh) in heads.iter().enumerate() {
        let (qkv, attn_norm, mlp_norm) = block_names(arch, i);
        let p = format!("encoder.layer.{i}");
        let q = r.linear(&format!("{qkv}.query"), h, None)?;
        let a = q.out_features();
        let k = r.linear(&format!("{qkv}.key"), h, Some(a))?;
        let v = r.linear(&format!("{qkv}.value"), h, Some(a))?;
        let dense = r.linear(&format!("{p}.attention.output.dense"), a, Some(h))?;
        let attn_norm = r.norm(&attn_norm, h, eps)?;
        let fc1 = r.linear(&format!("{p}.intermediate.dense"), h, None)?;
        let fc2 = r.linear(&format!("{p}.output.dense"), fc1.out_features(), Some(h))?;
        let mlp_norm = r.norm(&mlp_norm, h, eps)?;
        blocks.push(Int8Block::new(
            nh,
            [q, k, v],
            dense,
            attn_norm,
            fc1,
            fc2,
            mlp_norm,
        )?);
    }
    Ok(blocks)
}

fn check_layers(r: &Reader<'_>, layers: usize, heads: &[usize]) -> Result<()> {
    if heads.len() != layers {
        return Err(r.malformed(format!(
            "metadata `heads` lists {} layers, the config {layers}",
            heads.len()
        )));
    }
    Ok(())
}

fn load_bert(r: &mut Reader<'_>, c: BertConfig, heads: &[usize]) -> Result<Int8Model> {
    check_layers(r, c.num_hidden_layers, heads)?;
    let gelu = c.gelu_kind()?;
    let h = c.hidden_size;
    let e = "embeddings";
    let word = r.f32(&format!("{e}.word_embeddings.weight"), &[c.vocab_size, h])?;
    let position = r.f32(
        &format!("{e}.position_embeddings.weight"),
        &[c.max_position_embeddings, h],
    )?;
    let token_type = r.f32(
        &format!("{e}.token_type_embeddings.weight"),
        &[c.type_vocab_size, h],
    )?;
    let norm = r.norm("embeddings.LayerNorm", h, c.layer_norm_eps)?;
    let pooler = r.linear("pooler.dense", h, Some(h))?;
    let classifier = r.linear("classifier", h, None)?;
    let arch = Arch::Bert(BertParts {
        config: c.clone(),
        word,
        position,
        token_type,
        norm,
        pooler,
        classifier,
    });
    let blocks = load_blocks(r, &arch, h, c.layer_norm_eps, heads)?;
    Int8Model::assemble(arch, blocks, gelu)
}

fn load_vit(r: &mut Reader<'_>, c: VitConfig, heads: &[usize]) -> Result<Int8Model> {
    check_layers(r, c.num_hidden_layers, heads)?;
    if c.patch_size == 0 || !c.image_size.is_multiple_of(c.patch_size) {
        return Err(r.malformed(format!(
            "config: patch size {} does not divide image size {}",
            c.patch_size, c.image_size
        )));
    }
    let h = c.hidden_size;
    let side = c.image_size / c.patch_size;
    // Checked: the sizes come from the file.
    let tokens = side
        .checked_mul(side)
        .and_then(|n| n.checked_add(1 + usize::from(c.distillation_token)));
    let patch = c
        .num_channels
        .checked_mul(c.patch_size)
        .and_then(|v| v.checked_mul(c.patch_size));
    let (Some(tokens), Some(patch)) = (tokens, patch) else {
        return Err(r.malformed("config: image sizes overflow"));
    };
    let cls_token = r.f32("embeddings.cls_token", &[1, 1, h])?;
    let distillation_token = match c.distillation_token {
        true => Some(r.f32("embeddings.distillation_token", &[1, 1, h])?),
        false => None,
    };
    let position = r.f32("embeddings.position_embeddings", &[1, tokens, h])?;
    let projection = r.linear("embeddings.patch_embeddings.projection", patch, Some(h))?;
    let norm = r.norm("layernorm", h, c.layer_norm_eps)?;
    let classifier = r.linear("classifier", h, None)?;
    let distillation_classifier = match c.distillation_token {
        true => Some(r.linear(
            "distillation_classifier",
            h,
            Some(classifier.out_features()),
        )?),
        false => None,
    };
    let arch = Arch::Vit(VitParts {
        config: c.clone(),
        projection,
        cls_token,
        distillation_token,
        position,
        norm,
        classifier,
        distillation_classifier,
    });
    let blocks = load_blocks(r, &arch, h, c.layer_norm_eps, heads)?;
    Int8Model::assemble(arch, blocks, GeluKind::Erf)
}
