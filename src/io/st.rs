//! safetensors files: writing named f32 tensors, reading them back, loading them into modules.

use super::convert::{is_float, to_f32};
use super::names::{candidate_names, canonical_name, is_ignorable_buffer};
use super::{file_error, write_atomically};
use crate::autograd::Param;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::Tensor;
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The `__metadata__` entry Hugging Face `transformers` requires to load a safetensors file into
/// a PyTorch model (`{"format": "pt"}`); every file written here carries it unless the caller
/// sets `format` itself.
const FORMAT_KEY: &str = "format";

/// Named f32 tensors, as a checkpoint holds them.
pub type NamedTensors = Vec<(String, Tensor)>;

/// A safetensors file's `__metadata__`: string keys to string values.
pub type Metadata = HashMap<String, String>;

// ---------------------------------------------------------------------------------------------
// Writing

/// The safetensors bytes of `tensors` (all written as F32, little-endian) with `metadata` as the
/// `__metadata__` header entry (plus `"format": "pt"` unless `metadata` sets `format`).
///
/// [`Error::InvalidArgument`] if two tensors share a name (the file would silently keep one).
pub fn serialize_named(
    tensors: &[(String, Tensor)],
    metadata: Option<&HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut seen = HashSet::with_capacity(tensors.len());
    for (name, _) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(
                "io::save_named",
                format!("two tensors are named `{name}`"),
            ));
        }
    }
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| t.data().iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, t.shape().to_vec(), b)
                .map(|v| (name.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid("io::save_named", e.to_string()))?;
    let mut meta = metadata.cloned().unwrap_or_default();
    meta.entry(FORMAT_KEY.to_string())
        .or_insert_with(|| "pt".to_string());
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::invalid("io::save_named", e.to_string()))
}

/// Writes `tensors` to a safetensors file at `path` (F32, names as given), with `metadata` as
/// `__metadata__` (plus `"format": "pt"`, which PyTorch's loader requires). The file is written
/// to a temporary name first and renamed, so `path` never holds a partial file.
pub fn save_named(
    tensors: &[(String, Tensor)],
    path: impl AsRef<Path>,
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    let bytes = serialize_named(tensors, metadata)?;
    write_atomically(path.as_ref(), &bytes)
}

/// Writes every parameter of `module` to a safetensors file at `path`, under its
/// [`Module::named_params`] name (the Hugging Face names), as F32.
pub fn save_module<M: Module + ?Sized>(module: &M, path: impl AsRef<Path>) -> Result<()> {
    save_module_with_metadata(module, path, None)
}

/// [`save_module`] with extra `__metadata__` entries (string to string, e.g. the training run
/// or the compression recipe).
pub fn save_module_with_metadata<M: Module + ?Sized>(
    module: &M,
    path: impl AsRef<Path>,
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = module
        .named_params()
        .into_iter()
        .map(|(name, p)| (name, p.value()))
        .collect();
    save_named(&tensors, path, metadata)
}

// ---------------------------------------------------------------------------------------------
// Reading

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| file_error(path, e))
}

fn what(path: &Path) -> String {
    format!("safetensors file {}", path.display())
}

/// Parses a safetensors buffer, turning the crate's errors into [`Error::Format`] messages that
/// say what is wrong and, where one is to blame, name the tensor.
pub(crate) fn parse<'a>(bytes: &'a [u8], what: &str) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::Format {
        what: what.to_string(),
        msg: explain(bytes, e),
    })
}

fn explain(bytes: &[u8], e: SafeTensorError) -> String {
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    match e {
        SafeTensorError::HeaderTooSmall => format!(
            "{} bytes is too short for the 8-byte header length (truncated or empty file)",
            bytes.len()
        ),
        SafeTensorError::InvalidHeaderLength => format!(
            "the header claims {} bytes but the file has only {} after the length (truncated \
             header)",
            header_len.unwrap_or(0),
            bytes.len().saturating_sub(8)
        ),
        SafeTensorError::HeaderTooLarge => format!(
            "the header length {} is over safetensors' 100 MB limit (not a safetensors file?)",
            header_len.unwrap_or(0)
        ),
        SafeTensorError::InvalidHeader(e) => format!("the header is not UTF-8: {e}"),
        SafeTensorError::InvalidHeaderDeserialization(e) => {
            format!("the header is not valid safetensors JSON: {e}")
        }
        SafeTensorError::MetadataIncompleteBuffer => incomplete_buffer(bytes),
        SafeTensorError::TensorInvalidInfo => match inconsistent_tensor(bytes) {
            Some(msg) => msg,
            None => "a tensor's byte range does not match its shape and dtype".to_string(),
        },
        SafeTensorError::InvalidOffset(name) => {
            format!("tensor `{name}`: its data offsets overlap another tensor or leave a gap")
        }
        SafeTensorError::ValidationOverflow => {
            "a tensor's shape overflows the address space".to_string()
        }
        other => other.to_string(),
    }
}

/// The header's tensor entries (name, info), when the header itself parses.
fn header_entries(bytes: &[u8]) -> Option<(usize, Vec<(String, TensorInfo)>)> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let n = usize::try_from(n).ok()?;
    let header = bytes.get(8..8usize.checked_add(n)?)?;
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    let entries = map
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .filter_map(|(k, v)| Some((k, serde_json::from_value::<TensorInfo>(v).ok()?)))
        .collect();
    Some((n, entries))
}

/// The data section is shorter (truncated file) or longer than the tensors' offsets say.
fn incomplete_buffer(bytes: &[u8]) -> String {
    let Some((n, entries)) = header_entries(bytes) else {
        return "the data section does not match the header".to_string();
    };
    let available = bytes.len().saturating_sub(8 + n);
    let needed = entries
        .iter()
        .map(|(_, i)| i.data_offsets.1)
        .max()
        .unwrap_or(0);
    if let Some((name, info)) = entries
        .iter()
        .filter(|(_, i)| i.data_offsets.1 > available)
        .min_by_key(|(_, i)| i.data_offsets.0)
    {
        format!(
            "truncated data: tensor `{name}` needs bytes {}..{} of the data section, which has \
             only {available} (the header describes {needed})",
            info.data_offsets.0, info.data_offsets.1
        )
    } else {
        format!(
            "{} trailing bytes after the last tensor's data (the header describes {needed}, the \
             file holds {available})",
            available - needed
        )
    }
}

/// The first tensor whose byte range does not fit its shape and dtype.
fn inconsistent_tensor(bytes: &[u8]) -> Option<String> {
    let (_, entries) = header_entries(bytes)?;
    entries.iter().find_map(|(name, info)| {
        let numel = info
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))?;
        let size = numel.checked_mul(info.dtype.bitsize())? / 8;
        let (s, e) = info.data_offsets;
        (e.checked_sub(s) != Some(size)).then(|| {
            format!(
                "tensor `{name}`: {} {:?} needs {size} bytes but its offsets {s}..{e} span {}",
                info.dtype,
                info.shape,
                e.wrapping_sub(s)
            )
        })
    })
}

/// The f32 tensor of checkpoint entry `name`, or [`Error::TensorDtype`].
fn decode(name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Tensor> {
    let data = to_f32(view.dtype(), view.data()).ok_or_else(|| Error::TensorDtype {
        name: name.to_string(),
        dtype: view.dtype().to_string(),
    })?;
    Tensor::from_vec(data, view.shape())
}

/// Every tensor of a safetensors buffer as f32, sorted by name, and the `__metadata__` map
/// (empty when absent). F16 / BF16 / F64 are converted; the integer buffers
/// [`is_ignorable_buffer`] names (`position_ids`...) are skipped; any other non-float tensor is
/// an [`Error::TensorDtype`].
pub fn read_safetensors_bytes(bytes: &[u8]) -> Result<(NamedTensors, Metadata)> {
    read_all(bytes, "safetensors buffer")
}

/// [`read_safetensors_bytes`] of the file at `path`.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<(NamedTensors, Metadata)> {
    let path = path.as_ref();
    read_all(&read_file(path)?, &what(path))
}

fn read_all(bytes: &[u8], what: &str) -> Result<(NamedTensors, Metadata)> {
    let st = parse(bytes, what)?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.iter() {
        if !is_float(view.dtype()) && is_ignorable_buffer(name) {
            continue;
        }
        out.push((name.to_string(), decode(name, &view)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, metadata_of(bytes)))
}

/// The `__metadata__` map of a buffer that already parsed.
fn metadata_of(bytes: &[u8]) -> HashMap<String, String> {
    SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Loading into a module

/// What a load did: which parameters it filled, and (for a non-strict load) what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// `(parameter name, checkpoint tensor name)` of every parameter filled, in the module's
    /// order.
    pub loaded: Vec<(String, String)>,
    /// Parameters the checkpoint has no tensor for (kept at their current values). Always
    /// empty after a strict load.
    pub missing: Vec<String>,
    /// Checkpoint tensors no parameter took, sorted. Always empty after a strict load.
    pub unexpected: Vec<String>,
    /// Known non-parameter buffers (`embeddings.position_ids`...) skipped, sorted.
    pub skipped_buffers: Vec<String>,
}

/// A checkpoint as the matcher sees it: tensor names, each one's element type and shape, and
/// (only once every check passed) its f32 data.
trait Source {
    /// Names in the checkpoint, in any order.
    fn names(&self) -> Vec<String>;
    /// `(dtype name, is float, shape)` of `name`.
    fn info(&self, name: &str) -> Option<(String, bool, Vec<usize>)>;
    /// The f32 values of `name` (which exists and is a float tensor).
    fn values(&self, name: &str) -> Result<Tensor>;
}

impl Source for SafeTensors<'_> {
    fn names(&self) -> Vec<String> {
        SafeTensors::names(self)
            .into_iter()
            .map(String::from)
            .collect()
    }
    fn info(&self, name: &str) -> Option<(String, bool, Vec<usize>)> {
        let v = self.tensor(name).ok()?;
        Some((
            v.dtype().to_string(),
            is_float(v.dtype()),
            v.shape().to_vec(),
        ))
    }
    fn values(&self, name: &str) -> Result<Tensor> {
        let view = self.tensor(name).map_err(|e| Error::Format {
            what: "safetensors buffer".into(),
            msg: e.to_string(),
        })?;
        decode(name, &view)
    }
}

impl Source for HashMap<&str, &Tensor> {
    fn names(&self) -> Vec<String> {
        self.keys().map(|k| k.to_string()).collect()
    }
    fn info(&self, name: &str) -> Option<(String, bool, Vec<usize>)> {
        self.get(name)
            .map(|t| ("F32".to_string(), true, t.shape().to_vec()))
    }
    fn values(&self, name: &str) -> Result<Tensor> {
        self.get(name)
            .map(|t| (*t).clone())
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
            })
    }
}

/// Matches the module's parameters to checkpoint tensors, checks every match (dtype, shape),
/// converts, and only then writes the parameters: on any error the module is unchanged.
fn load_from<M: Module + ?Sized>(
    module: &M,
    source: &impl Source,
    strict: bool,
) -> Result<LoadReport> {
    // canonical name -> checkpoint name
    let mut index: HashMap<String, String> = HashMap::new();
    let mut file_names = source.names();
    file_names.sort();
    for name in &file_names {
        let canon = canonical_name(name).into_owned();
        if let Some(other) = index.insert(canon.clone(), name.clone()) {
            return Err(Error::Format {
                what: "checkpoint".into(),
                msg: format!("tensors `{other}` and `{name}` both stand for `{canon}`"),
            });
        }
    }

    let params = module.named_params();
    let mut report = LoadReport::default();
    let mut used: HashSet<&str> = HashSet::new();
    let mut targets: Vec<&Param> = Vec::with_capacity(params.len());
    for (pname, param) in &params {
        let Some(fname) = candidate_names(pname)
            .iter()
            .find_map(|c| index.get(c).map(String::as_str))
        else {
            report.missing.push(pname.clone());
            continue;
        };
        let (dtype, float, shape) = source.info(fname).ok_or_else(|| Error::Format {
            what: "checkpoint".into(),
            msg: format!("tensor `{fname}` vanished"),
        })?;
        if !float {
            return Err(Error::TensorDtype {
                name: fname.to_string(),
                dtype,
            });
        }
        let expected = param.shape();
        if shape != expected {
            return Err(Error::TensorShape {
                name: fname.to_string(),
                expected,
                found: shape,
            });
        }
        used.insert(fname);
        report.loaded.push((pname.clone(), fname.to_string()));
        targets.push(param);
    }
    for name in &file_names {
        if used.contains(name.as_str()) {
            continue;
        }
        if is_ignorable_buffer(name) {
            report.skipped_buffers.push(name.clone());
        } else {
            report.unexpected.push(name.clone());
        }
    }
    if strict {
        if let Some(name) = report.missing.first() {
            return Err(Error::MissingTensor { name: name.clone() });
        }
        if let Some(name) = report.unexpected.first() {
            return Err(Error::UnexpectedTensor { name: name.clone() });
        }
    }
    // Convert everything before writing anything.
    let values = report
        .loaded
        .iter()
        .map(|(_, fname)| source.values(fname))
        .collect::<Result<Vec<_>>>()?;
    for (param, value) in targets.into_iter().zip(values) {
        param.set_value(value)?;
    }
    Ok(report)
}

/// Copies the tensors of the safetensors file at `path` into `module`'s parameters by name (see
/// [`super::names`] for the accepted Hugging Face spellings), converting F16 / BF16 / F64 to f32.
///
/// Errors, each naming the tensor: [`Error::File`] (cannot read), [`Error::Format`] (truncated
/// or corrupt file), [`Error::TensorDtype`] (a matched tensor is not a float type),
/// [`Error::TensorShape`] (a matched tensor has another shape than its parameter), and when
/// `strict`, [`Error::MissingTensor`] (a parameter has no tensor) and [`Error::UnexpectedTensor`]
/// (a tensor matches no parameter; known buffers such as `embeddings.position_ids` excepted).
/// A non-strict load lists those in the [`LoadReport`] instead. On any error no parameter is
/// changed.
pub fn load_into_module<M: Module + ?Sized>(
    module: &M,
    path: impl AsRef<Path>,
    strict: bool,
) -> Result<LoadReport> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let st = parse(&bytes, &what(path))?;
    load_from(module, &st, strict)
}

/// [`load_into_module`] from a safetensors buffer in memory.
pub fn load_bytes_into_module<M: Module + ?Sized>(
    module: &M,
    bytes: &[u8],
    strict: bool,
) -> Result<LoadReport> {
    let st = parse(bytes, "safetensors buffer")?;
    load_from(module, &st, strict)
}

/// [`load_into_module`] from named f32 tensors already in memory (e.g. the `tensors` of an
/// [`import_hf_bert_dir`](super::import_hf_bert_dir)), with the same name mapping and checks.
/// [`Error::InvalidArgument`] if two tensors share a name.
pub fn load_named_into_module<M: Module + ?Sized>(
    module: &M,
    tensors: &[(String, Tensor)],
    strict: bool,
) -> Result<LoadReport> {
    let mut map: HashMap<&str, &Tensor> = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        if map.insert(name.as_str(), t).is_some() {
            return Err(Error::invalid(
                "io::load_named_into_module",
                format!("two tensors are named `{name}`"),
            ));
        }
    }
    load_from(module, &map, strict)
}
