//! The ABI seen from Rust: `include/lithe.h` declares exactly the functions and status codes
//! `src/ffi.rs` exports, with the same parameter types; every entry point rejects null pointers,
//! short buffers, oversized batches and the wrong model kind with a status and a message, and
//! computes what the Rust API computes.

use lithe::int8::{Input, Int8Model, QuantPlan};
use lithe::nn::{Vit, VitConfig};
use lithe::{Rng, Tensor};
use lithe_capi::*;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

/// A file of the repository (this crate lives in `capi/`).
fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)).unwrap()
}

/// Drops `/* */` and `//` comments and preprocessor lines.
fn strip_c(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = &rest[i + rest[i..].find("*/").unwrap() + 2..];
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whitespace-normalized C type: `const char *`.
fn norm(ty: &str) -> String {
    ty.replace('*', " * ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `name -> [return type, parameter types...]` of every `lithe_*` prototype in the header.
fn header_prototypes() -> BTreeMap<String, Vec<String>> {
    let text = strip_c(&read("include/lithe.h"));
    let mut out = BTreeMap::new();
    for decl in text.split(';') {
        let Some(open) = decl.find('(') else { continue };
        let head = decl[..open].trim();
        let Some(last) = head.split_whitespace().last() else {
            continue;
        };
        let name = last.trim_start_matches('*');
        if !name.starts_with("lithe_") {
            continue;
        }
        let ret = norm(&head[..head.len() - name.len()]);
        let params = &decl[open + 1..decl.rfind(')').unwrap()];
        let mut sig = vec![ret];
        if params.trim() != "void" {
            for p in params.split(',') {
                // Drop the parameter name: the last identifier.
                let p = p.trim();
                let cut = p
                    .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap();
                sig.push(norm(&p[..=cut]));
            }
        }
        out.insert(name.to_string(), sig);
    }
    out
}

/// The C spelling of a Rust FFI type.
fn c_type(rust: &str) -> String {
    let rust = rust.trim();
    if let Some(t) = rust.strip_prefix("*const ") {
        return norm(&format!("const {} *", c_type(t)));
    }
    if let Some(t) = rust.strip_prefix("*mut ") {
        return norm(&format!("{} *", c_type(t)));
    }
    match rust {
        "" | "()" => "void",
        "c_char" => "char",
        "usize" => "size_t",
        "f32" => "float",
        "u32" => "uint32_t",
        "i32" => "int32_t",
        other => other,
    }
    .to_string()
}

/// `name -> [return type, parameter types...]` of every `extern "C" fn` in src/ffi.rs, in C.
fn rust_exports() -> BTreeMap<String, Vec<String>> {
    let src = read("src/ffi.rs");
    let mut out = BTreeMap::new();
    for chunk in src.split("extern \"C\" fn ").skip(1) {
        let open = chunk.find('(').unwrap();
        let name = chunk[..open].to_string();
        let close = chunk.find(')').unwrap();
        let ret = chunk[close + 1..chunk.find('{').unwrap()].trim();
        let mut sig = vec![c_type(ret.strip_prefix("->").unwrap_or(""))];
        for p in chunk[open + 1..close]
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            sig.push(c_type(p.split_once(':').unwrap().1));
        }
        out.insert(name, sig);
    }
    out
}

#[test]
fn header_declares_exactly_the_rust_exports_with_the_same_types() {
    let header = header_prototypes();
    let rust = rust_exports();
    assert!(rust.len() >= 16, "found only {:?}", rust.keys());
    assert_eq!(
        header.keys().collect::<Vec<_>>(),
        rust.keys().collect::<Vec<_>>(),
        "functions declared in include/lithe.h vs exported by src/ffi.rs"
    );
    for (name, sig) in &rust {
        assert_eq!(
            &header[name], sig,
            "{name}: [return, params...] header vs Rust"
        );
    }
}

#[test]
fn header_status_codes_match_the_rust_enum() {
    let header = strip_c(&read("include/lithe.h"));
    let statuses = [
        (LitheStatus::Ok, "LITHE_OK"),
        (LitheStatus::NullPointer, "LITHE_NULL_POINTER"),
        (LitheStatus::InvalidArgument, "LITHE_INVALID_ARGUMENT"),
        (LitheStatus::File, "LITHE_FILE"),
        (LitheStatus::WrongModelKind, "LITHE_WRONG_MODEL_KIND"),
        (LitheStatus::Internal, "LITHE_INTERNAL"),
    ];
    for (status, name) in statuses {
        let decl = format!("{name} = {}", status as i32);
        assert!(header.contains(&decl), "lithe.h lacks `{decl}`");
    }
    assert_eq!(header.matches("LITHE_").count(), statuses.len());
}

fn last_error() -> String {
    // SAFETY: lithe_last_error returns a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(lithe_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn tiny_vit_file(name: &str) -> (PathBuf, Vit) {
    let config = VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        num_labels: 3,
        ..VitConfig::default()
    };
    let vit = Vit::new(&config, &mut Rng::new(11)).unwrap();
    let dir = std::env::temp_dir().join(format!("lithe-capi-rs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    Int8Model::from_vit(&vit, &QuantPlan::dynamic())
        .unwrap()
        .save(&path)
        .unwrap();
    (path, vit)
}

#[test]
fn null_pointers_and_bad_files_are_errors_with_a_message() {
    // SAFETY (every call below): null pointers and valid C strings, as the contract allows.
    unsafe {
        assert!(lithe_model_load(std::ptr::null()).is_null());
        assert!(last_error().contains("path is null"), "{}", last_error());
        let missing = CString::new("/nonexistent/model.safetensors").unwrap();
        assert!(lithe_model_load(missing.as_ptr()).is_null());
        assert!(
            last_error().contains("lithe_model_load"),
            "{}",
            last_error()
        );
        assert!(lithe_tokenizer_load(missing.as_ptr()).is_null());
        assert!(!last_error().is_empty());
        assert_eq!(lithe_model_num_classes(std::ptr::null()), 0);
        assert_eq!(lithe_model_kind(std::ptr::null()), -1);
        assert!(lithe_workspace_new(std::ptr::null(), 1, 0).is_null());
        let mut out = [0f32; 4];
        let st = lithe_classify_images(
            std::ptr::null(),
            std::ptr::null_mut(),
            std::ptr::null(),
            1,
            out.as_mut_ptr(),
            4,
        );
        assert_eq!(st, LitheStatus::NullPointer);
        assert!(last_error().contains("model is null"));
        // Freeing null is a no-op and clears the error.
        lithe_model_free(std::ptr::null_mut());
        lithe_workspace_free(std::ptr::null_mut());
        lithe_tokenizer_free(std::ptr::null_mut());
        assert_eq!(last_error(), "");
        assert_eq!(
            CStr::from_ptr(lithe_version()).to_str().unwrap(),
            env!("CARGO_PKG_VERSION")
        );
    }
}

#[test]
fn classify_checks_every_size_and_matches_the_rust_forward() {
    let (path, vit) = tiny_vit_file("classify.safetensors");
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let pixels: Vec<f32> = (0..2 * 64).map(|i| ((i * 7) % 17) as f32 / 16.0).collect();
    // SAFETY (every call below): live handles, and buffers of the lengths passed.
    unsafe {
        let model = lithe_model_load(c_path.as_ptr());
        assert!(!model.is_null(), "{}", last_error());
        assert_eq!(lithe_model_kind(model), 0);
        assert_eq!(lithe_model_num_classes(model), 3);
        assert_eq!(lithe_model_hidden_size(model), 16);
        let mut shape = [0usize; 3];
        assert_eq!(
            lithe_model_image_shape(model, shape.as_mut_ptr()),
            LitheStatus::Ok
        );
        assert_eq!(shape, [1, 8, 8]);
        let ws = lithe_workspace_new(model, 2, 0);
        assert!(!ws.is_null(), "{}", last_error());
        let mut out = [0f32; 6];
        let st = lithe_classify_images(model, ws, pixels.as_ptr(), 2, out.as_mut_ptr(), 6);
        assert_eq!(st, LitheStatus::Ok, "{}", last_error());

        let rust = Int8Model::load(&path).unwrap();
        let mut rws = rust.workspace(2, rust.max_seq()).unwrap();
        let want = rust
            .forward(
                &mut rws,
                Input::Images {
                    pixels: &pixels,
                    batch: 2,
                },
            )
            .unwrap();
        assert_eq!(&out[..], want);
        // And close to the f32 model it was lowered from.
        let g = lithe::Graph::inference();
        let x = g.constant(Tensor::from_vec(pixels.clone(), &[2, 1, 8, 8]).unwrap());
        let f32_logits = g.value(vit.forward_logits(&g, x).unwrap()).unwrap();
        for (a, b) in out.iter().zip(f32_logits.data()) {
            assert!((a - b).abs() < 0.1, "int8 {a} vs f32 {b}");
        }

        // Too small an output, too large a batch, zero batch, text calls on a Vit.
        let st = lithe_classify_images(model, ws, pixels.as_ptr(), 2, out.as_mut_ptr(), 5);
        assert_eq!(st, LitheStatus::InvalidArgument);
        assert!(last_error().contains("out_len 5"), "{}", last_error());
        let st = lithe_classify_images(model, ws, pixels.as_ptr(), 3, out.as_mut_ptr(), 6);
        assert_eq!(st, LitheStatus::InvalidArgument);
        let st = lithe_classify_images(model, ws, pixels.as_ptr(), 0, out.as_mut_ptr(), 6);
        assert_eq!(st, LitheStatus::InvalidArgument);
        // A workspace belongs to the model it was made for.
        let other = lithe_model_load(c_path.as_ptr());
        let st = lithe_classify_images(other, ws, pixels.as_ptr(), 2, out.as_mut_ptr(), 6);
        assert_eq!(st, LitheStatus::InvalidArgument);
        assert!(last_error().contains("another model"), "{}", last_error());
        lithe_model_free(other);
        let ids = [2u32, 5, 3];
        let st = lithe_embed_tokens(
            model,
            ws,
            ids.as_ptr(),
            1,
            3,
            std::ptr::null(),
            out.as_mut_ptr(),
            6,
        );
        assert_eq!(st, LitheStatus::WrongModelKind);
        assert!(last_error().contains("Bert"), "{}", last_error());
        lithe_workspace_free(ws);
        lithe_model_free(model);
    }
}

/// lithe.h promises that models and tokenizers may be shared between threads.
#[test]
fn models_and_tokenizers_are_sync() {
    fn sync<T: Sync + Send>() {}
    sync::<lithe::int8::Int8Model>();
    sync::<lithe::data::Tokenizer>();
    sync::<lithe::int8::Workspace>();
}
