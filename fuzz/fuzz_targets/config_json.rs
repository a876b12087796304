//! `config.json` text parsed as a BERT and a ViT config; a config whose size check passes and
//! is small is built (f32, then int8) and run once, and one whose check fails must fail to
//! build, before allocating anything.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lithe::Rng;
use lithe::int8::{Input, Int8Model, QuantPlan};
use lithe::io::parse_config;
use lithe::nn::{Bert, BertConfig, Vit, VitConfig};

/// Models up to this many parameters are built (a few milliseconds at most).
const BUILD_PARAMS: usize = 1 << 16;
/// ... and up to this many layers and tokens.
const BUILD_LAYERS: usize = 4;
const BUILD_TOKENS: usize = 64;

fuzz_target!(|data: &[u8]| {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(lithe_fuzz::single_threaded);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = parse_config::<BertConfig>(text, "fuzz") {
        bert(&c);
    }
    if let Ok(c) = parse_config::<VitConfig>(text, "fuzz") {
        vit(&c);
    }
});

fn bert(c: &BertConfig) {
    let mut rng = Rng::new(1);
    let Ok(n) = c.num_params() else {
        assert!(Bert::new(c, &mut rng).is_err(), "a rejected config builds");
        return;
    };
    if n > BUILD_PARAMS
        || c.num_hidden_layers > BUILD_LAYERS
        || c.max_position_embeddings > BUILD_TOKENS
    {
        return;
    }
    let Ok(model) = Bert::new(c, &mut rng) else {
        return;
    };
    let counted: usize = lithe::nn::Module::num_params(&model);
    assert_eq!(counted, n, "the config's parameter count and the model's");
    let Ok(q) = Int8Model::from_bert(&model, &QuantPlan::dynamic()) else {
        return;
    };
    let seq = c.max_position_embeddings.min(3);
    if seq == 0 {
        return;
    }
    let ids = vec![0u32; seq];
    if let Ok(mut ws) = q.workspace(1, seq) {
        let input = Input::Tokens {
            ids: &ids,
            batch: 1,
            seq,
            lengths: None,
        };
        let _ = q.forward(&mut ws, input);
    }
}

fn vit(c: &VitConfig) {
    let mut rng = Rng::new(1);
    let Ok(n) = c.num_params() else {
        assert!(Vit::new(c, &mut rng).is_err(), "a rejected config builds");
        return;
    };
    let side = c.image_size / c.patch_size.max(1);
    if n > BUILD_PARAMS
        || c.num_hidden_layers > BUILD_LAYERS
        || side * side > BUILD_TOKENS
        || c.num_channels * c.image_size * c.image_size > 4096
    {
        return;
    }
    let Ok(model) = Vit::new(c, &mut rng) else {
        return;
    };
    let counted: usize = lithe::nn::Module::num_params(&model);
    assert_eq!(counted, n, "the config's parameter count and the model's");
    let Ok(q) = Int8Model::from_vit(&model, &QuantPlan::dynamic()) else {
        return;
    };
    let pixels = vec![0.5f32; c.num_channels * c.image_size * c.image_size];
    if let Ok(mut ws) = q.workspace(1, 0) {
        let _ = q.forward(
            &mut ws,
            Input::Images {
                pixels: &pixels,
                batch: 1,
            },
        );
    }
}
