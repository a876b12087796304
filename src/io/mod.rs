//! Reading and writing models: safetensors weights, JSON configs, Hugging Face BERT directories.
//!
//! Weights are stored the Hugging Face way: one safetensors file whose tensor names are the
//! [`Module::named_params`](crate::nn::Module::named_params) names, and a `config.json` beside it
//! with the Hugging Face field names. So a model saved here loads in PyTorch
//! (`BertModel.from_pretrained(dir)`) and a Hugging Face checkpoint loads here.
//!
//! - [`save_module`] / [`save_named`]: write F32 tensors with their names (and `__metadata__`).
//! - [`load_into_module`] / [`load_named_into_module`]: copy checkpoint tensors into a module's
//!   parameters by name, converting F16 / BF16 / F64 to f32, with the Hugging Face name mapping
//!   of [`names`] (`bert.` prefix, `LayerNorm.gamma/beta`). All-or-nothing: on any error the
//!   module is left unchanged.
//! - [`read_safetensors`]: every floating-point tensor of a file as f32 [`Tensor`](crate::Tensor)s.
//! - [`save_config`] / [`load_config`] / [`parse_config`]:
//!   [`BertConfig`](crate::nn::BertConfig) / [`VitConfig`](crate::nn::VitConfig) as
//!   `config.json`.
//! - [`import_hf_bert_dir`]: config, tensors and tokenizer file of a Hugging Face BERT directory.
//!
//! Every malformed input is an [`Error`] naming the file or tensor: truncated or
//! corrupt files ([`Error::Format`]), element types that are not floats
//! ([`Error::TensorDtype`]), shape mismatches
//! ([`Error::TensorShape`]), and in a strict load missing or extra
//! tensors ([`Error::MissingTensor`],
//! [`Error::UnexpectedTensor`]).

mod config;
mod convert;
mod hf;
pub mod names;
mod st;

pub use config::{ConfigFile, load_config, parse_config, save_config};
pub use hf::{HfBertImport, import_hf_bert_dir};
pub use st::{
    LoadReport, Metadata, NamedTensors, load_bytes_into_module, load_into_module,
    load_named_into_module, read_safetensors, read_safetensors_bytes, save_module,
    save_module_with_metadata, save_named, serialize_named,
};

pub(crate) use st::parse as parse_safetensors;

use crate::error::Error;
use std::path::Path;

/// An [`Error::File`] for `path`.
pub(crate) fn file_error(path: &Path, source: std::io::Error) -> Error {
    Error::File {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// crash or a full disk never leaves a half-written file under the final name.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    let file_name = path.file_name().ok_or_else(|| Error::File {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_error(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_error(path, e)
    })
}
