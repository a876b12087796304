//! The C ABI with fuzzed sizes and contents but valid pointers: every buffer is allocated to
//! the length the call is told it has. Model files are fuzzed through `lithe_model_load` (the
//! input written to a temporary file when its first byte asks for it); workspaces, batches,
//! sequence lengths, ids, lengths, pixels, text and output lengths against a tiny int8 BERT
//! (the full `bert-base-uncased` vocabulary, so text embeds) and a tiny int8 ViT. A call may
//! fail with a status, never with `Internal` (a caught panic).
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use lithe::ffi::*;
use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// Handles made once per process; they are only read through the C ABI afterwards.
struct Fixture {
    bert: *mut LitheModel,
    vit: *mut LitheModel,
    tokenizer: *mut LitheTokenizer,
    scratch: CString,
}

// SAFETY: the fuzz loop runs on one thread; the handles are never freed.
unsafe impl Send for Fixture {}
// SAFETY: as above.
unsafe impl Sync for Fixture {}

fn c_path(p: &std::path::Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in a temp path")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        lithe_fuzz::single_threaded();
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        let load = |name: &str, model: lithe::int8::Int8Model| {
            let path = dir.join(format!("lithe-fuzz-capi-{pid}-{name}.safetensors"));
            model.save(&path).expect("the temp folder is writable");
            // SAFETY: a NUL-terminated path.
            let m = unsafe { lithe_model_load(c_path(&path).as_ptr()) };
            let _ = std::fs::remove_file(&path);
            assert!(!m.is_null(), "the tiny {name} model loads");
            m
        };
        let vocab = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../data/vocab/bert-base-uncased-vocab.txt");
        // SAFETY: a NUL-terminated path.
        let tokenizer = unsafe { lithe_tokenizer_load(c_path(&vocab).as_ptr()) };
        assert!(!tokenizer.is_null(), "the BERT vocabulary loads");
        Fixture {
            bert: load("bert", lithe_fuzz::tiny_int8_bert(30522)),
            vit: load("vit", lithe_fuzz::tiny_int8_vit()),
            tokenizer,
            scratch: c_path(&dir.join(format!("lithe-fuzz-capi-{pid}-input.safetensors"))),
        }
    })
}

/// No call may report a caught panic.
fn no_panic(status: LitheStatus) {
    if status == LitheStatus::Internal {
        // SAFETY: lithe_last_error is always a valid C string.
        let msg = unsafe { CStr::from_ptr(lithe_last_error()) };
        panic!("a C ABI call panicked: {msg:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut u = Unstructured::new(data);
    let _ = run(f, &mut u);
});

fn run(f: &Fixture, u: &mut Unstructured<'_>) -> Result<()> {
    if u.ratio(1, 8)? {
        // The rest of the input is a model file.
        let path = f.scratch.to_str().expect("UTF-8 temp path");
        std::fs::write(path, u.peek_bytes(u.len()).unwrap_or_default())
            .expect("the temp folder is writable");
        // SAFETY: a NUL-terminated path.
        let m = unsafe { lithe_model_load(f.scratch.as_ptr()) };
        let _ = std::fs::remove_file(path);
        // SAFETY: null or a live handle, freed once.
        unsafe { lithe_model_free(m) };
        return Ok(());
    }
    let model = if u.arbitrary()? { f.bert } else { f.vit };
    // Mostly realistic sizes; sometimes absurd ones, which must fail cleanly.
    let max_batch: usize = if u.ratio(1, 16)? {
        u.arbitrary::<usize>()? | 1 << 40
    } else {
        u.int_in_range(0..=8)?
    };
    let max_seq: usize = if u.ratio(1, 16)? {
        u.arbitrary::<usize>()? | 1 << 40
    } else {
        u.int_in_range(0..=20)?
    };
    // SAFETY: a live model handle.
    let ws = unsafe { lithe_workspace_new(model, max_batch, max_seq) };
    if ws.is_null() {
        // SAFETY: lithe_last_error is always a valid C string.
        let msg = unsafe { CStr::from_ptr(lithe_last_error()) };
        assert!(!msg.is_empty(), "a failed lithe_workspace_new says why");
        assert!(
            !msg.to_string_lossy().contains("internal error"),
            "lithe_workspace_new panicked: {msg:?}"
        );
    }
    // The call sometimes names the other model (a workspace fits only its own).
    let call_model = if u.ratio(1, 8)? {
        if model == f.bert { f.vit } else { f.bert }
    } else {
        model
    };
    for _ in 0..u.int_in_range(1..=3)? {
        match u.int_in_range(0..=2)? {
            0 => classify(f, call_model, ws, u)?,
            1 => embed_tokens(call_model, ws, u)?,
            _ => embed_text(f, call_model, ws, u)?,
        }
    }
    // SAFETY: null or a live handle, freed once.
    unsafe { lithe_workspace_free(ws) };
    Ok(())
}

fn floats(u: &mut Unstructured<'_>, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| f32::from_bits(u.arbitrary().unwrap_or(0)))
        .collect()
}

fn classify(
    f: &Fixture,
    model: *const LitheModel,
    ws: *mut LitheWorkspace,
    u: &mut Unstructured<'_>,
) -> Result<()> {
    let batch: usize = u.int_in_range(0..=10)?;
    let mut shape = [0usize; 3];
    // The pixel count the call reads is the ViT's; for a BERT the call fails before reading.
    // SAFETY: a live handle and 3 writable sizes.
    unsafe { lithe_model_image_shape(f.vit, shape.as_mut_ptr()) };
    let pixels = floats(u, batch * shape.iter().product::<usize>());
    let mut out = vec![0.0f32; u.int_in_range(0..=40)?];
    // SAFETY: live or null handles; `pixels` holds batch * C * H * W floats; `out` its length.
    let status = unsafe {
        lithe_classify_images(
            model,
            ws,
            pixels.as_ptr(),
            batch,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    no_panic(status);
    Ok(())
}

fn embed_tokens(
    model: *const LitheModel,
    ws: *mut LitheWorkspace,
    u: &mut Unstructured<'_>,
) -> Result<()> {
    let batch: usize = u.int_in_range(0..=10)?;
    let seq: usize = u.int_in_range(0..=20)?;
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| match u.ratio(1, 16) {
            Ok(true) => u.arbitrary().unwrap_or(0),
            _ => u.int_in_range(0..=30521).unwrap_or(0),
        })
        .collect();
    let lengths: Option<Vec<usize>> = if u.arbitrary()? {
        Some(
            (0..batch)
                .map(|_| u.int_in_range(0..=seq + 1).unwrap_or(1))
                .collect(),
        )
    } else {
        None
    };
    let mut out = vec![0.0f32; u.int_in_range(0..=100)?];
    let lengths_ptr = lengths.as_ref().map_or(std::ptr::null(), |l| l.as_ptr());
    // SAFETY: live or null handles; `ids` holds batch * seq ids, `lengths` is null or holds
    // batch sizes, `out` its length.
    let status = unsafe {
        lithe_embed_tokens(
            model,
            ws,
            ids.as_ptr(),
            batch,
            seq,
            lengths_ptr,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    no_panic(status);
    Ok(())
}

fn embed_text(
    f: &Fixture,
    model: *const LitheModel,
    ws: *mut LitheWorkspace,
    u: &mut Unstructured<'_>,
) -> Result<()> {
    let n = u.int_in_range(0..=64)?;
    let bytes: Vec<u8> = u.bytes(n.min(u.len()))?.iter().map(|&b| b.max(1)).collect();
    let text = CString::new(bytes).expect("no NUL left");
    let mut out = vec![0.0f32; u.int_in_range(0..=16)?];
    // SAFETY: live or null handles; `text` NUL-terminated; `out` its length.
    let status = unsafe {
        lithe_embed_text(
            model,
            ws,
            f.tokenizer,
            text.as_ptr(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    no_panic(status);
    Ok(())
}
