//! The C ABI of the int8 runtime (feature `capi`); `include/lithe.h` declares it for C.
//!
//! Three opaque handles, each created by a `*_load`/`*_new` function and released by its
//! `*_free`: a [`LitheModel`] (an [`Int8Model`] file), a [`LitheWorkspace`] (the buffers of a
//! forward, sized once) and a [`LitheTokenizer`] (WordPiece, for [`lithe_embed_text`]).
//!
//! Every entry point checks its pointers and lengths, runs the Rust code under
//! [`std::panic::catch_unwind`] (no panic crosses the boundary; one is reported as
//! [`LitheStatus::Internal`]) and, on failure, stores a message that [`lithe_last_error`] returns.
//! Functions that return a handle return null on failure; the others return a [`LitheStatus`].
//!
//! Threads: a model and a tokenizer may be shared between threads; a workspace is used by one
//! call at a time.

mod guard;

use crate::data::Tokenizer;
use crate::embed::Pooling;
use crate::int8::{Input, Int8Model, ModelKind, Workspace};
use guard::{
    Failure, c_path, c_str, guard, handle, handle_mut, invalid, last_error_ptr, product, slice,
    slice_mut, status,
};
use std::ffi::c_char;

/// The result of a C ABI call. `Ok` is 0; every other value comes with a message in
/// [`lithe_last_error`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LitheStatus {
    /// Success.
    Ok = 0,
    /// A required pointer was null.
    NullPointer = 1,
    /// A size, length or shape is out of range (a batch larger than the workspace, an output
    /// buffer too small, a token id outside the vocabulary, text that is not UTF-8...).
    InvalidArgument = 2,
    /// A file could not be read, or is not a valid lithe model or tokenizer.
    File = 3,
    /// The call does not fit the model's kind (images to a text model, text to an image model).
    WrongModelKind = 4,
    /// A bug in lithe (a caught panic); the message says where.
    Internal = 5,
}

/// An int8 model loaded from a file written by `Int8Model::save`.
pub struct LitheModel {
    model: Int8Model,
}

/// The buffers of a forward for up to `max_batch` samples of up to `max_seq` tokens.
pub struct LitheWorkspace {
    ws: Workspace,
    max_batch: usize,
    max_seq: usize,
    /// The address of the model handle it was made for (a workspace fits one model).
    model: usize,
}

/// A WordPiece tokenizer (a BERT `vocab.txt` or a `tokenizer.json`).
pub struct LitheTokenizer {
    tokenizer: Tokenizer,
}

fn check_kind(model: &Int8Model, want: ModelKind, call: &str) -> Result<(), Failure> {
    if model.kind() == want {
        return Ok(());
    }
    Err(Failure(
        LitheStatus::WrongModelKind,
        format!(
            "{call} needs a {want:?} model, this one is a {:?}",
            model.kind()
        ),
    ))
}

/// `ws` was made for `model` and holds `batch` samples of `seq` tokens.
fn check_batch(
    model: *const LitheModel,
    ws: &LitheWorkspace,
    batch: usize,
    seq: usize,
) -> Result<(), Failure> {
    if ws.model != model as usize {
        return Err(invalid(
            "the workspace was made for another model (lithe_workspace_new)",
        ));
    }
    if batch == 0 || batch > ws.max_batch {
        return Err(invalid(format!(
            "batch {batch} is not in 1..={} (the workspace's max_batch)",
            ws.max_batch
        )));
    }
    if seq > ws.max_seq {
        return Err(invalid(format!(
            "sequence length {seq} exceeds the workspace's max_seq {}",
            ws.max_seq
        )));
    }
    Ok(())
}

/// Copies `src` to the front of `out`, which must be long enough.
fn copy_out(src: &[f32], out: &mut [f32], what: &str) -> Result<(), Failure> {
    if out.len() < src.len() {
        return Err(invalid(format!(
            "{what}: out_len {} is smaller than the {} values of the result",
            out.len(),
            src.len()
        )));
    }
    out[..src.len()].copy_from_slice(src);
    Ok(())
}

/// The message of this thread's last failed call ("" when it succeeded). The string stays valid
/// until the next lithe call on this thread; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn lithe_last_error() -> *const c_char {
    last_error_ptr()
}

/// The library's version, e.g. "0.1.0" (a static string).
#[unsafe(no_mangle)]
pub extern "C" fn lithe_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Loads an int8 model file; null on failure (see [`lithe_last_error`]).
///
/// # Safety
/// `path` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_model_load(path: *const c_char) -> *mut LitheModel {
    guard(
        "lithe_model_load",
        |_| std::ptr::null_mut(),
        || {
            // SAFETY: forwarded from this function's contract.
            let path = unsafe { c_path(path, "path") }?;
            let model = Int8Model::load(path)?;
            Ok(Box::into_raw(Box::new(LitheModel { model })))
        },
    )
}

/// Releases a model (null is ignored). Workspaces made from it must not be used afterwards.
///
/// # Safety
/// `model` is null or a handle from [`lithe_model_load`] not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_model_free(model: *mut LitheModel) {
    guard(
        "lithe_model_free",
        |_| (),
        || {
            if !model.is_null() {
                // SAFETY: a live handle from `Box::into_raw` (the caller's contract), freed once.
                drop(unsafe { Box::from_raw(model) });
            }
            Ok(())
        },
    )
}

/// 0 for a Vit (images), 1 for a Bert (text), -1 for a null model.
///
/// # Safety
/// `model` is null or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_model_kind(model: *const LitheModel) -> i32 {
    guard(
        "lithe_model_kind",
        |_| -1,
        || {
            // SAFETY: forwarded from this function's contract.
            let m = unsafe { handle(model, "model") }?;
            Ok(match m.model.kind() {
                ModelKind::Vit => 0,
                ModelKind::Bert => 1,
            })
        },
    )
}

/// Reads one size of a model; 0 for a null model.
///
/// # Safety
/// `model` is null or a live handle.
unsafe fn model_size(
    model: *const LitheModel,
    name: &str,
    f: impl FnOnce(&Int8Model) -> usize,
) -> usize {
    guard(
        name,
        |_| 0,
        || {
            // SAFETY: forwarded from the caller's contract.
            Ok(f(&unsafe { handle(model, "model") }?.model))
        },
    )
}

/// Logits per sample (the classifier's width); 0 for a null model.
///
/// # Safety
/// `model` is null or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_model_num_classes(model: *const LitheModel) -> usize {
    // SAFETY: forwarded from this function's contract.
    unsafe { model_size(model, "lithe_model_num_classes", Int8Model::num_classes) }
}

/// Width of the hidden states and of an embedding; 0 for a null model.
///
/// # Safety
/// `model` is null or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_model_hidden_size(model: *const LitheModel) -> usize {
    // SAFETY: forwarded from this function's contract.
    unsafe { model_size(model, "lithe_model_hidden_size", Int8Model::hidden_size) }
}

/// Longest sequence (Bert: positions; Vit: tokens per image); 0 for a null model.
///
/// # Safety
/// `model` is null or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_model_max_seq(model: *const LitheModel) -> usize {
    // SAFETY: forwarded from this function's contract.
    unsafe { model_size(model, "lithe_model_max_seq", Int8Model::max_seq) }
}

/// Writes a Vit's input shape `{channels, height, width}` to `out_shape[0..3]`.
///
/// # Safety
/// `model` is null or a live handle; `out_shape` is null or points to 3 writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_model_image_shape(
    model: *const LitheModel,
    out_shape: *mut usize,
) -> LitheStatus {
    status("lithe_model_image_shape", || {
        // SAFETY: forwarded from this function's contract.
        let m = unsafe { handle(model, "model") }?;
        // SAFETY: forwarded from this function's contract.
        let out = unsafe { slice_mut(out_shape, 3, "out_shape") }?;
        check_kind(&m.model, ModelKind::Vit, "lithe_model_image_shape")?;
        let shape = m
            .model
            .image_shape()
            .ok_or_else(|| Failure(LitheStatus::Internal, "a Vit without an image shape".into()))?;
        out.copy_from_slice(&shape);
        Ok(())
    })
}

/// A workspace for forwards of up to `max_batch` samples of up to `max_seq` tokens (0: the
/// model's [`lithe_model_max_seq`]); null on failure.
///
/// # Safety
/// `model` is null or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_workspace_new(
    model: *const LitheModel,
    max_batch: usize,
    max_seq: usize,
) -> *mut LitheWorkspace {
    guard(
        "lithe_workspace_new",
        |_| std::ptr::null_mut(),
        || {
            // SAFETY: forwarded from this function's contract.
            let m = &unsafe { handle(model, "model") }?.model;
            let max_seq = if max_seq == 0 { m.max_seq() } else { max_seq };
            if max_batch == 0 {
                return Err(invalid("max_batch must be at least 1"));
            }
            let ws = m.workspace(max_batch, max_seq)?;
            Ok(Box::into_raw(Box::new(LitheWorkspace {
                ws,
                max_batch,
                max_seq,
                model: model as usize,
            })))
        },
    )
}

/// Releases a workspace (null is ignored).
///
/// # Safety
/// `ws` is null or a handle from [`lithe_workspace_new`] not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_workspace_free(ws: *mut LitheWorkspace) {
    guard(
        "lithe_workspace_free",
        |_| (),
        || {
            if !ws.is_null() {
                // SAFETY: a live handle from `Box::into_raw` (the caller's contract), freed once.
                drop(unsafe { Box::from_raw(ws) });
            }
            Ok(())
        },
    )
}

/// Classifies `batch` images with a Vit: `pixels` holds `batch * C * H * W` floats
/// (row-major `[batch, C, H, W]`, see [`lithe_model_image_shape`]); the logits
/// `[batch, num_classes]` go to `out_logits`, which holds `out_len >= batch * num_classes`.
///
/// # Safety
/// `model` and `ws` are null or live handles (`ws` made from `model`, used by no other call
/// meanwhile); `pixels` points to `batch * C * H * W` floats; `out_logits` to `out_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_classify_images(
    model: *const LitheModel,
    ws: *mut LitheWorkspace,
    pixels: *const f32,
    batch: usize,
    out_logits: *mut f32,
    out_len: usize,
) -> LitheStatus {
    status("lithe_classify_images", || {
        // SAFETY: forwarded from this function's contract.
        let m = &unsafe { handle(model, "model") }?.model;
        // SAFETY: forwarded from this function's contract.
        let w = unsafe { handle_mut(ws, "workspace") }?;
        check_kind(m, ModelKind::Vit, "lithe_classify_images")?;
        let [c, h, wd] = m.image_shape().unwrap_or_default();
        check_batch(model, w, batch, 0)?;
        let n = product(batch, c * h * wd, "pixels")?;
        // SAFETY: forwarded from this function's contract.
        let pixels = unsafe { slice(pixels, n, "pixels") }?;
        // SAFETY: forwarded from this function's contract.
        let out = unsafe { slice_mut(out_logits, out_len, "out_logits") }?;
        let logits = m.forward(&mut w.ws, Input::Images { pixels, batch })?;
        copy_out(logits, out, "out_logits")
    })
}

/// Sentence embeddings of `batch` token sequences with a Bert: `ids` is `[batch, seq]`
/// row-major; `lengths` (may be null: no padding) gives the real tokens of each row, the rest
/// being padding. Each embedding is the mean over real tokens of the last hidden states,
/// L2-normalized; `[batch, hidden_size]` floats go to `out`, which holds `out_len` of them.
///
/// # Safety
/// `model` and `ws` are null or live handles (`ws` made from `model`, used by no other call
/// meanwhile); `ids` points to `batch * seq` ids; `lengths` is null or points to `batch` sizes;
/// `out` to `out_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_embed_tokens(
    model: *const LitheModel,
    ws: *mut LitheWorkspace,
    ids: *const u32,
    batch: usize,
    seq: usize,
    lengths: *const usize,
    out: *mut f32,
    out_len: usize,
) -> LitheStatus {
    status("lithe_embed_tokens", || {
        // SAFETY: forwarded from this function's contract.
        let m = &unsafe { handle(model, "model") }?.model;
        // SAFETY: forwarded from this function's contract.
        let w = unsafe { handle_mut(ws, "workspace") }?;
        check_kind(m, ModelKind::Bert, "lithe_embed_tokens")?;
        check_batch(model, w, batch, seq)?;
        if seq == 0 {
            return Err(invalid("seq must be at least 1"));
        }
        // SAFETY: forwarded from this function's contract.
        let ids = unsafe { slice(ids, product(batch, seq, "ids")?, "ids") }?;
        let lengths = if lengths.is_null() {
            None
        } else {
            // SAFETY: forwarded from this function's contract.
            let l = unsafe { slice(lengths, batch, "lengths") }?;
            if let Some((b, &n)) = l.iter().enumerate().find(|&(_, &n)| n == 0 || n > seq) {
                return Err(invalid(format!("lengths[{b}] = {n} is not in 1..={seq}")));
            }
            Some(l)
        };
        // SAFETY: forwarded from this function's contract.
        let out = unsafe { slice_mut(out, out_len, "out") }?;
        let input = Input::Tokens {
            ids,
            batch,
            seq,
            lengths,
        };
        let emb = m.embed(&mut w.ws, input, Pooling::Mean)?;
        copy_out(emb, out, "out")
    })
}

/// Loads a WordPiece tokenizer: a BERT `vocab.txt` (lower-cased input, as uncased BERTs) or a
/// `tokenizer.json` (any name ending in `.json`); null on failure.
///
/// # Safety
/// `path` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_tokenizer_load(path: *const c_char) -> *mut LitheTokenizer {
    guard(
        "lithe_tokenizer_load",
        |_| std::ptr::null_mut(),
        || {
            // SAFETY: forwarded from this function's contract.
            let path = unsafe { c_path(path, "path") }?;
            let tokenizer = if path.extension().is_some_and(|e| e == "json") {
                Tokenizer::from_file(path)?
            } else {
                Tokenizer::from_vocab(path, true)?
            };
            Ok(Box::into_raw(Box::new(LitheTokenizer { tokenizer })))
        },
    )
}

/// Releases a tokenizer (null is ignored).
///
/// # Safety
/// `tokenizer` is null or a handle from [`lithe_tokenizer_load`] not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_tokenizer_free(tokenizer: *mut LitheTokenizer) {
    guard(
        "lithe_tokenizer_free",
        |_| (),
        || {
            if !tokenizer.is_null() {
                // SAFETY: a live handle from `Box::into_raw` (the caller's contract), freed once.
                drop(unsafe { Box::from_raw(tokenizer) });
            }
            Ok(())
        },
    )
}

/// The sentence embedding of one UTF-8 `text` with a Bert: tokenized (`[CLS] ... [SEP]`,
/// truncated to the workspace's max_seq tokens), then as [`lithe_embed_tokens`];
/// `hidden_size` floats go to `out`, which holds `out_len` of them. Unlike
/// [`lithe_embed_tokens`], this call allocates: the tokenizer builds its encoding on the heap.
///
/// # Safety
/// `model`, `ws` and `tokenizer` are null or live handles (`ws` made from `model`, used by no
/// other call meanwhile); `text` is null or NUL-terminated; `out` points to `out_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lithe_embed_text(
    model: *const LitheModel,
    ws: *mut LitheWorkspace,
    tokenizer: *const LitheTokenizer,
    text: *const c_char,
    out: *mut f32,
    out_len: usize,
) -> LitheStatus {
    status("lithe_embed_text", || {
        // SAFETY: forwarded from this function's contract.
        let m = &unsafe { handle(model, "model") }?.model;
        // SAFETY: forwarded from this function's contract.
        let w = unsafe { handle_mut(ws, "workspace") }?;
        // SAFETY: forwarded from this function's contract.
        let tok = &unsafe { handle(tokenizer, "tokenizer") }?.tokenizer;
        // SAFETY: forwarded from this function's contract.
        let text = unsafe { c_str(text, "text") }?;
        // SAFETY: forwarded from this function's contract.
        let out = unsafe { slice_mut(out, out_len, "out") }?;
        check_kind(m, ModelKind::Bert, "lithe_embed_text")?;
        let enc = tok.encode(text, w.max_seq)?;
        check_batch(model, w, 1, enc.seq)?;
        let input = Input::Tokens {
            ids: &enc.ids,
            batch: 1,
            seq: enc.seq,
            lengths: None,
        };
        let emb = m.embed(&mut w.ws, input, Pooling::Mean)?;
        copy_out(emb, out, "out")
    })
}
