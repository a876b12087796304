//! safetensors buffers: read as named f32 tensors, loaded into a tiny BERT (strict and not),
//! and read as an int8 model file, which, once it loads, must also run a forward.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lithe::int8::{Input, Int8Model, ModelKind};
use lithe::nn::Bert;

thread_local! {
    static BERT: Bert = {
        lithe_fuzz::single_threaded();
        lithe_fuzz::tiny_bert(32)
    };
}

fuzz_target!(|data: &[u8]| {
    let _ = lithe::io::read_safetensors_bytes(data);
    BERT.with(|bert| {
        // A load only replaces values by tensors of the same shapes, so later inputs still see
        // the same model.
        let _ = lithe::io::load_bytes_into_module(bert, data, true);
        let _ = lithe::io::load_bytes_into_module(bert, data, false);
    });
    if let Ok(model) = Int8Model::from_bytes(data) {
        run_once(&model);
    }
});

/// A model the loader accepted must run: one sample, zeros in (the loader bounds every size by
/// the file's own bytes, so the workspace stays small).
fn run_once(model: &Int8Model) {
    let seq = model.max_seq().min(4);
    let Ok(mut ws) = model.workspace(1, seq) else {
        return;
    };
    let result = match model.kind() {
        ModelKind::Bert => {
            let ids = vec![0u32; seq];
            let input = Input::Tokens {
                ids: &ids,
                batch: 1,
                seq,
                lengths: None,
            };
            model.forward(&mut ws, input).map(|l| l.len())
        }
        ModelKind::Vit => {
            let [c, h, w] = model.image_shape().expect("a Vit has an image shape");
            let pixels = vec![0.0f32; c * h * w];
            let input = Input::Images {
                pixels: &pixels,
                batch: 1,
            };
            model.forward(&mut ws, input).map(|l| l.len())
        }
    };
    if let Ok(n) = result {
        assert_eq!(n, model.num_classes(), "one row of logits");
    }
}
