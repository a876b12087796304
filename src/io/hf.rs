//! Importing a Hugging Face BERT model directory.

use super::config::parse_config;
use super::file_error;
use super::names::base_model_name;
use super::st::{LoadReport, load_named_into_module, read_safetensors};
use crate::error::{Error, Result};
use crate::nn::{BertConfig, Module};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The pieces of a Hugging Face BERT directory, read by [`import_hf_bert_dir`].
#[derive(Clone, Debug)]
pub struct HfBertImport {
    /// `config.json`.
    pub config: BertConfig,
    /// Every floating-point tensor of `model.safetensors` as f32, under its base-model name
    /// ([`base_model_name`]: no `bert.` prefix, `LayerNorm.gamma/beta` read as `weight/bias`),
    /// sorted by name. Integer buffers (`embeddings.position_ids`) are left out.
    pub tensors: Vec<(String, Tensor)>,
    /// `__metadata__` of `model.safetensors` (e.g. `{"format": "pt"}`).
    pub metadata: HashMap<String, String>,
    /// The tokenizer file: `tokenizer.json` when present (the `tokenizers` crate's format),
    /// otherwise the WordPiece `vocab.txt`.
    pub tokenizer: PathBuf,
}

impl HfBertImport {
    /// Copies [`HfBertImport::tensors`] into `module` by name; see
    /// [`load_named_into_module`].
    pub fn load_into<M: Module + ?Sized>(&self, module: &M, strict: bool) -> Result<LoadReport> {
        load_named_into_module(module, &self.tensors, strict)
    }
}

/// Reads a Hugging Face BERT directory: `config.json`, `model.safetensors` and `tokenizer.json`
/// (or `vocab.txt`). The model itself is built from the config by the caller (a `Bert` from
/// [`HfBertImport::config`]), then filled with [`HfBertImport::load_into`].
///
/// Errors: [`Error::File`] naming the missing or unreadable file; [`Error::Format`] for a
/// malformed config or weights file, a directory that only has a pickled
/// `pytorch_model.bin`, no tokenizer file, or a config that is not a BERT one; and the tensor
/// errors of [`read_safetensors`].
pub fn import_hf_bert_dir(dir: impl AsRef<Path>) -> Result<HfBertImport> {
    let dir = dir.as_ref();
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| file_error(&config_path, e))?;
    let config: BertConfig = parse_config(&text, &format!("config {}", config_path.display()))?;
    check_config(&config, &config_path)?;

    let weights = dir.join("model.safetensors");
    if !weights.is_file() && dir.join("pytorch_model.bin").is_file() {
        return Err(Error::Format {
            what: format!("Hugging Face BERT directory {}", dir.display()),
            msg: "it has only pytorch_model.bin (a pickle, not read here): convert it with \
                  `safetensors.torch.save_file(torch.load(f), 'model.safetensors')`"
                .into(),
        });
    }
    let (raw, metadata) = read_safetensors(&weights)?;
    let mut tensors = Vec::with_capacity(raw.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for (name, t) in raw {
        let base = base_model_name(&name);
        if let Some(other) = seen.insert(base.clone(), name.clone()) {
            return Err(Error::Format {
                what: format!("safetensors file {}", weights.display()),
                msg: format!("tensors `{other}` and `{name}` both stand for `{base}`"),
            });
        }
        tensors.push((base, t));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));

    let tokenizer = ["tokenizer.json", "vocab.txt"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Format {
            what: format!("Hugging Face BERT directory {}", dir.display()),
            msg: "no tokenizer: neither tokenizer.json nor vocab.txt".into(),
        })?;
    Ok(HfBertImport {
        config,
        tensors,
        metadata,
        tokenizer,
    })
}

/// The sizes a BERT needs to be built at all.
fn check_config(c: &BertConfig, path: &Path) -> Result<()> {
    let problem = if c.vocab_size == 0
        || c.hidden_size == 0
        || c.num_hidden_layers == 0
        || c.num_attention_heads == 0
        || c.intermediate_size == 0
        || c.max_position_embeddings == 0
    {
        Some("a size is zero".to_string())
    } else if let Err(e) = c.num_params() {
        Some(e.to_string())
    } else {
        None
    };
    match problem {
        Some(msg) => Err(Error::Format {
            what: format!("config {}", path.display()),
            msg,
        }),
        None => Ok(()),
    }
}
