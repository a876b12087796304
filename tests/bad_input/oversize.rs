//! Dimensions far beyond what any machine holds: an error before anything is allocated, never
//! a wrapped size, a capacity-overflow panic or an out-of-memory abort.

use super::*;
use lithe::int8::{QuantPlan, ToInt8};
use lithe::tensor;

const HUGE: usize = 1 << 40;

#[test]
fn oversize_requests_are_errors() {
    let mut p = Probe::default();
    let bert = tiny_bert().to_int8(&QuantPlan::dynamic()).unwrap();
    let vit = tiny_vit().to_int8(&QuantPlan::dynamic()).unwrap();
    for batch in [usize::MAX, usize::MAX / 2, HUGE, 1 << 33] {
        p.rejects(&format!("Bert workspace({batch}, 12)"), || {
            bert.workspace(batch, 12).map(|w| w.max_batch())
        });
        p.rejects(&format!("Vit workspace({batch}, 0)"), || {
            vit.workspace(batch, 0).map(|w| w.max_batch())
        });
    }
    p.rejects("Bert workspace(huge, huge)", || {
        bert.workspace(HUGE, HUGE).map(|w| w.max_batch())
    });
    // Shapes whose element count overflows usize must not wrap to a small count.
    let empty = Tensor::zeros(&[0]);
    p.rejects("reshape overflow", || empty.reshape(&[1 << 33, 1 << 33]));
    p.rejects("from_vec overflow", || {
        Tensor::from_vec(vec![], &[1 << 33, 1 << 33])
    });
    let one = Tensor::scalar(1.0);
    p.rejects("broadcast_to overflow", || {
        tensor::broadcast_to(&one, &[1 << 33, 1 << 33])
    });
    p.rejects("broadcast_to huge", || {
        tensor::broadcast_to(&one, &[HUGE, HUGE >> 8])
    });
    p.rejects("sum_to_shape overflow", || {
        tensor::sum_to_shape(&one, &[1 << 33, 1 << 33])
    });
    // Models whose configs ask for more parameters than memory holds.
    let mut c = bert_config();
    c.vocab_size = HUGE;
    p.rejects("Bert::new huge vocab", || {
        lithe::nn::Bert::new(&c, &mut Rng::new(1)).map(|_| ())
    });
    let mut c = bert_config();
    c.intermediate_size = usize::MAX / 2;
    p.rejects("Bert::new huge FFN", || {
        lithe::nn::Bert::new(&c, &mut Rng::new(1)).map(|_| ())
    });
    let mut c = vit_config();
    c.image_size = 1 << 31;
    p.rejects("Vit::new huge image", || {
        lithe::nn::Vit::new(&c, &mut Rng::new(1)).map(|_| ())
    });
    let mut c = vit_config();
    c.hidden_size = 1 << 36;
    c.num_attention_heads = 1;
    p.rejects("Vit::new huge width", || {
        lithe::nn::Vit::new(&c, &mut Rng::new(1)).map(|_| ())
    });
    // The same configs read from a model directory.
    let dir = scratch("oversize-config");
    let mut c = bert_config();
    c.hidden_size = 1 << 40;
    c.num_attention_heads = 1;
    lithe::io::save_config(&c, dir.join("config.json")).unwrap();
    p.rejects("load huge config", || {
        let c: lithe::nn::BertConfig = lithe::io::load_config(dir.join("config.json"))?;
        lithe::nn::Bert::new(&c, &mut Rng::new(1)).map(|_| ())
    });
    std::fs::remove_dir_all(dir).unwrap();
    p.finish("oversize");
}
