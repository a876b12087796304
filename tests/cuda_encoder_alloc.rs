//! GPU test: host-side allocations of `CudaEncoder::forward` once its workspace is reserved and
//! one forward has run. Device memory is reserved once (`CudaEncoder::reserve`); the host side
//! still allocates on every kernel launch, because cudarc's `LaunchArgs` builder collects each
//! launch's arguments (and the events it waits on and records) in `Vec`s, and the forward
//! builds its per-sequence length vector. Until the launches go through a fixed argument array
//! this test is ignored; run it with `--ignored` on a machine with a GPU to see the count.
//! Run: `cargo test --release --features cuda --test cuda_encoder_alloc -- --ignored`.
#![cfg(feature = "cuda")]

#[path = "common/count_alloc.rs"]
mod count_alloc;
mod cuda_common;

use count_alloc::allocations_in;
use cuda_common::device;
use lithe::cuda::CudaEncoder;
use lithe::nn::{Bert, BertConfig};
use lithe::tensor::Rng;

#[test]
#[ignore = "cudarc's launch builder allocates its argument list on every kernel launch"]
fn forward_allocates_nothing_on_the_host_when_warm() {
    let Some(dev) = device("forward_allocates_nothing_on_the_host_when_warm") else {
        return;
    };
    let c = BertConfig {
        vocab_size: 100,
        hidden_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 256,
        max_position_embeddings: 64,
        ..BertConfig::default()
    };
    let bert = Bert::new(&c, &mut Rng::new(3)).unwrap();
    let mut gpu = CudaEncoder::from_bert(&dev, &bert).unwrap();
    let ids: Vec<u32> = (0..2 * 16).map(|i| (i * 7 % 100) as u32).collect();
    let lengths = [16usize, 9];
    gpu.reserve(&dev, 2, 16).unwrap();
    // Warm-up: kernels compiled and loaded, workspace in place.
    gpu.forward(&dev, &ids, [2, 16], None, Some(&lengths))
        .unwrap();
    let n = allocations_in(|| {
        gpu.forward(&dev, &ids, [2, 16], None, Some(&lengths))
            .unwrap();
    });
    assert_eq!(n, 0, "CudaEncoder::forward allocated {n} times on the host");
}
