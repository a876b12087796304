//! Model configs as Hugging Face `config.json` files.

use super::{file_error, write_atomically};
use crate::error::{Error, Result};
use crate::nn::{BertConfig, VitConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::path::Path;

/// A model config stored as a Hugging Face `config.json`.
pub trait ConfigFile: Serialize + DeserializeOwned {
    /// The Hugging Face `model_type` (`"bert"`, `"vit"`), written by [`save_config`] and checked
    /// by [`load_config`] when the file has one.
    const MODEL_TYPE: &'static str;
}

impl ConfigFile for BertConfig {
    const MODEL_TYPE: &'static str = "bert";
}

impl ConfigFile for VitConfig {
    const MODEL_TYPE: &'static str = "vit";
}

/// Writes `config` as pretty-printed JSON with the Hugging Face field names, `model_type`
/// first, so `transformers.AutoConfig.from_pretrained(dir)` reads it.
pub fn save_config<C: ConfigFile>(config: &C, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    // Through text, not `to_value`: f32 fields then print as their shortest decimal (1e-12),
    // not as the widened f64 (9.999999960041972e-13).
    let fields = match serde_json::to_string(config).and_then(|t| serde_json::from_str(&t)) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(Error::invalid(
                "io::save_config",
                "config is not a JSON object",
            ));
        }
        Err(e) => return Err(Error::invalid("io::save_config", e.to_string())),
    };
    let mut out = Map::new();
    out.insert("model_type".into(), Value::from(C::MODEL_TYPE));
    out.extend(fields);
    let mut text = serde_json::to_string_pretty(&Value::Object(out))
        .map_err(|e| Error::invalid("io::save_config", e.to_string()))?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

/// Reads a `config.json` (ours or a Hugging Face one; unknown fields are ignored).
///
/// [`Error::File`] if it cannot be read; [`Error::Format`] (naming the file and the field) if it
/// is not JSON, a required field is missing or ill-typed, or its `model_type` is another
/// model's. A Hugging Face classification config that gives its classes as `id2label` instead
/// of `num_labels` gets `num_labels = id2label.len()`.
pub fn load_config<C: ConfigFile>(path: impl AsRef<Path>) -> Result<C> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    parse_config(&text, &format!("config {}", path.display()))
}

/// [`load_config`] from JSON text; `what` names the source in errors.
pub fn parse_config<C: ConfigFile>(text: &str, what: &str) -> Result<C> {
    let format = |msg: String| Error::Format {
        what: what.to_string(),
        msg,
    };
    let mut map = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(format("not a JSON object".into())),
        Err(e) => return Err(format(format!("invalid JSON: {e}"))),
    };
    if let Some(t) = map.get("model_type")
        && t.as_str() != Some(C::MODEL_TYPE)
    {
        return Err(format(format!(
            "model_type is {t}, expected \"{}\"",
            C::MODEL_TYPE
        )));
    }
    if !map.contains_key("num_labels")
        && let Some(n) = map.get("id2label").and_then(Value::as_object).map(Map::len)
    {
        map.insert("num_labels".into(), Value::from(n));
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| format(e.to_string()))
}
