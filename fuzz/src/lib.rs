//! What the fuzz targets share: tiny models (built once per process) and a quiet, single-threaded
//! runtime so each input runs in microseconds.

use lithe::Rng;
use lithe::int8::{Int8Model, QuantPlan};
use lithe::nn::{Bert, BertConfig, Vit, VitConfig};

/// A BERT small enough that a load or a forward takes microseconds; `vocab` rows of embeddings.
pub fn tiny_bert_config(vocab: usize) -> BertConfig {
    BertConfig {
        vocab_size: vocab,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        max_position_embeddings: 16,
        ..BertConfig::default()
    }
}

/// A ViT on 1 x 8 x 8 images with 4 x 4 patches (5 tokens) and 3 classes.
pub fn tiny_vit_config() -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        num_labels: 3,
        ..VitConfig::default()
    }
}

/// The f32 BERT of [`tiny_bert_config`], seeded.
pub fn tiny_bert(vocab: usize) -> Bert {
    Bert::new(&tiny_bert_config(vocab), &mut Rng::new(7)).expect("tiny BERT config is valid")
}

/// The f32 ViT of [`tiny_vit_config`], seeded.
pub fn tiny_vit() -> Vit {
    Vit::new(&tiny_vit_config(), &mut Rng::new(7)).expect("tiny ViT config is valid")
}

/// The int8 model of [`tiny_bert`] (dynamic activation quantization).
pub fn tiny_int8_bert(vocab: usize) -> Int8Model {
    Int8Model::from_bert(&tiny_bert(vocab), &QuantPlan::dynamic()).expect("tiny BERT lowers")
}

/// The int8 model of [`tiny_vit`].
pub fn tiny_int8_vit() -> Int8Model {
    Int8Model::from_vit(&tiny_vit(), &QuantPlan::dynamic()).expect("tiny ViT lowers")
}

/// One kernel thread and no tokenizer thread pool: a fuzz input must not start threads, and a
/// single thread keeps runs reproducible.
pub fn single_threaded() {
    lithe::kernels::threads::set_num_threads(1);
    // SAFETY: called from the fuzz target's one-time set-up, before anything reads the
    // environment from another thread.
    unsafe { std::env::set_var("TOKENIZERS_PARALLELISM", "false") };
}
