//! The C ABI's inference calls allocate nothing once the workspace exists and one call has
//! warmed the kernels' thread-local buffers: `lithe_classify_images` and `lithe_embed_tokens`.
//! `lithe_embed_text` tokenizes first, which allocates (the tokenizer builds its encoding); its
//! forward behind the tokenizer is `lithe_embed_tokens`'s.

use super::count_alloc::allocations_in;
use lithe::Rng;
use lithe::int8::{Int8Model, QuantPlan};
use lithe::nn::{Bert, BertConfig, Vit, VitConfig};
use lithe_capi::*;
use std::ffi::CString;

fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("lithe-capi-noalloc-{}", std::process::id()))
}

fn saved(model: Int8Model, name: &str) -> CString {
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    model.save(&path).unwrap();
    CString::new(path.to_str().unwrap()).unwrap()
}

#[test]
fn classify_and_embed_tokens_allocate_nothing_when_warm() {
    lithe::kernels::threads::set_num_threads(1);
    let vit = Vit::new(
        &VitConfig {
            image_size: 8,
            patch_size: 4,
            num_channels: 1,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            num_labels: 3,
            ..VitConfig::default()
        },
        &mut Rng::new(1),
    )
    .unwrap();
    let bert = Bert::new(
        &BertConfig {
            vocab_size: 30,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 16,
            ..BertConfig::default()
        },
        &mut Rng::new(2),
    )
    .unwrap();
    let vit_path = saved(
        Int8Model::from_vit(&vit, &QuantPlan::dynamic()).unwrap(),
        "v.safetensors",
    );
    let bert_path = saved(
        Int8Model::from_bert(&bert, &QuantPlan::dynamic()).unwrap(),
        "b.safetensors",
    );
    let pixels: Vec<f32> = (0..2 * 64).map(|i| ((i * 7) % 17) as f32 / 16.0).collect();
    let ids: Vec<u32> = (0..2 * 9).map(|i| (i * 5 % 29) as u32).collect();
    let lengths = [9usize, 4];
    let mut out = [0f32; 32];
    // SAFETY (every call below): live handles, and buffers of the lengths passed.
    unsafe {
        let vit = lithe_model_load(vit_path.as_ptr());
        let bert = lithe_model_load(bert_path.as_ptr());
        assert!(!vit.is_null() && !bert.is_null());
        let (vws, bws) = (
            lithe_workspace_new(vit, 2, 0),
            lithe_workspace_new(bert, 2, 12),
        );
        assert!(!vws.is_null() && !bws.is_null());
        let mut classify = || {
            let st = lithe_classify_images(vit, vws, pixels.as_ptr(), 2, out.as_mut_ptr(), 6);
            assert_eq!(st, LitheStatus::Ok);
        };
        classify();
        let n = allocations_in(&mut classify);
        assert_eq!(n, 0, "lithe_classify_images allocated {n} times");
        let mut embed = || {
            let st = lithe_embed_tokens(
                bert,
                bws,
                ids.as_ptr(),
                2,
                9,
                lengths.as_ptr(),
                out.as_mut_ptr(),
                32,
            );
            assert_eq!(st, LitheStatus::Ok);
        };
        embed();
        let n = allocations_in(&mut embed);
        assert_eq!(n, 0, "lithe_embed_tokens allocated {n} times");
        lithe_workspace_free(vws);
        lithe_workspace_free(bws);
        lithe_model_free(vit);
        lithe_model_free(bert);
    }
    std::fs::remove_dir_all(scratch()).unwrap();
}
