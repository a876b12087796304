//! The MiniViT model: parameter counts, training, save and load, and the errors.

use super::{images, mini_logits, randomize, share, teacher};
use lithe::compress::share::{MiniVit, MiniVitConfig, ShareConfig, share_layers};
use lithe::nn::{BlockConfig, Encoder, Init, Module, NormPlacement, Vit, VitConfig};
use lithe::{AdamW, AdamWConfig, CrossEntropyOptions, Error, GeluKind, Graph, Optimizer, Rng};
use lithe::{Tensor, io};

/// DeiT-Ti-like proportions at toy size: depth 6, width 64, 4 heads, MLP 4x.
fn wide_config() -> VitConfig {
    VitConfig {
        image_size: 16,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 64,
        num_hidden_layers: 6,
        num_attention_heads: 4,
        intermediate_size: 256,
        num_labels: 10,
        ..VitConfig::default()
    }
}

#[test]
fn sharing_divides_the_encoder_weights_by_the_group_size() {
    let c = wide_config();
    let teacher = Vit::new(&c, &mut Rng::new(1)).unwrap();
    let (h, i, nh, k) = (64, 256, 4, 3);
    // What one group shares: Q, K, V, output projection and the two MLP Linears with biases.
    let shared_per_block = 4 * (h * h + h) + (h * i + i) + (i * h + h);
    // What each layer keeps: two LayerNorms, two head mixes, the filter and its bias.
    let own_norms = 2 * 2 * h;
    let own_transforms = 2 * (nh * nh + nh) + k * k * h + h;
    let outside = teacher.num_params() - 6 * (shared_per_block + own_norms);
    for (s, groups) in [(1, 6), (2, 3), (3, 2), (6, 1), (4, 2)] {
        for transforms in [false, true] {
            let mini = MiniVit::from_vit(&teacher, &share(s, transforms)).unwrap();
            let per_layer = own_norms + if transforms { own_transforms } else { 0 };
            let want = outside + groups * shared_per_block + 6 * per_layer;
            assert_eq!(
                mini.num_params(),
                want,
                "share {s}, transforms {transforms}"
            );
        }
    }
    let ratio = |s: usize| {
        let mini = MiniVit::from_vit(&teacher, &share(s, true)).unwrap();
        teacher.num_params() as f64 / mini.num_params() as f64
    };
    // Groups of two: a little under 2x (embeddings, norms and transforms stay per model/layer).
    let two = ratio(2);
    assert!((1.8..2.0).contains(&two), "share 2: {two:.3}x");
    let all = ratio(6);
    assert!((4.0..6.0).contains(&all), "share all: {all:.3}x");
}

#[test]
fn a_few_adamw_steps_reduce_the_loss() {
    let teacher = teacher(2, false, 70);
    let mini = MiniVit::from_vit(&teacher, &share(2, true)).unwrap();
    let (x, labels) = (images(8, 71), [0, 1, 2, 0, 1, 2, 1, 0]);
    let params = mini.named_params().into_iter().map(|(_, p)| p).collect();
    let cfg = AdamWConfig {
        lr: 1e-2,
        weight_decay: 0.0,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(params, cfg).unwrap();
    let mut losses = Vec::new();
    for _ in 0..25 {
        let g = Graph::new();
        let logits = mini.forward_logits(&g, g.constant(x.clone())).unwrap();
        let loss = g
            .cross_entropy(logits, &labels, &CrossEntropyOptions::default())
            .unwrap();
        losses.push(g.value(loss).unwrap().data()[0]);
        opt.zero_grad();
        g.backward(loss).unwrap();
        opt.step().unwrap();
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    // The transforms trained too: they left the identity. (Layer 0's: the last layer's filter
    // only reaches grid tokens after the last attention, which the class token never reads, so
    // its gradient is zero.)
    let t = mini.encoder.layers[0].transform.as_ref().unwrap();
    let moved = t
        .dwconv
        .weight
        .value()
        .data()
        .iter()
        .any(|v| v.abs() > 1e-4);
    assert!(moved, "the convolution never moved");
}

#[test]
fn a_saved_model_loads_back_to_the_same_logits() {
    let dir = std::env::temp_dir().join(format!("lithe-compress-share-{}", std::process::id()));
    let teacher = teacher(3, true, 80);
    let mini = MiniVit::from_vit(&teacher, &share(2, true)).unwrap();
    randomize(&mini, |_| true, 0.1, 81); // every tensor, so a missed one shows
    mini.save(&dir).unwrap();
    let loaded = MiniVit::load(&dir).unwrap();
    assert_eq!(loaded.config(), mini.config());
    let x = images(3, 82);
    assert_eq!(mini_logits(&loaded, &x), mini_logits(&mini, &x));
    // The config names its model type and the sharing; a ViT reader refuses it.
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(text.contains("\"model_type\": \"minivit\""), "{text}");
    assert!(text.contains("\"share_layers\": 2"), "{text}");
    let config: MiniVitConfig = io::load_config(dir.join("config.json")).unwrap();
    assert_eq!(&config, mini.config());
    assert!(matches!(
        io::load_config::<VitConfig>(dir.join("config.json")),
        Err(Error::Format { .. })
    ));
    // A model of another sharing has other tensors: a strict load fails.
    let other = MiniVit::new(
        &MiniVitConfig {
            share: share(3, true),
            ..mini.config().clone()
        },
        &mut Rng::new(0),
    )
    .unwrap();
    assert!(io::load_into_module(&other, dir.join("model.safetensors"), true).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_settings_and_inputs_are_errors() {
    let teacher = teacher(4, false, 90);
    let invalid = |c: ShareConfig| {
        matches!(
            MiniVit::from_vit(&teacher, &c),
            Err(Error::InvalidArgument { .. })
        )
    };
    assert!(invalid(share(0, true)));
    for kernel in [0, 2, 4] {
        assert!(invalid(ShareConfig {
            kernel,
            ..share(2, true)
        }));
    }
    // Post-LN (BERT) blocks are not multiplexed.
    let post = BlockConfig {
        hidden: 16,
        heads: 2,
        inner: 32,
        act: GeluKind::Erf,
        hidden_dropout: 0.0,
        attention_dropout: 0.0,
        eps: 1e-12,
        norm: NormPlacement::Post,
        head_dim: None,
    };
    let bert_like = Encoder::new(2, &post, Init::Normal(0.02), &mut Rng::new(91)).unwrap();
    assert!(matches!(
        share_layers(&bert_like, (3, 3), 1, &share(2, false)),
        Err(Error::InvalidArgument { .. })
    ));
    // The grid must match the token count at forward time.
    let encoder = share_layers(&teacher.encoder, (2, 2), 1, &share(2, true)).unwrap();
    let g = Graph::new();
    let tokens = g.constant(Tensor::zeros(&[1, 10, 16])); // 1 + 3 x 3, not 1 + 2 x 2
    assert!(matches!(
        encoder.forward(&g, tokens),
        Err(Error::Shape { .. })
    ));
    let five = g.constant(Tensor::zeros(&[1, 5, 16]));
    assert!(encoder.forward(&g, five).is_ok());
    // Images of the wrong size.
    let mini = MiniVit::from_vit(&teacher, &share(3, true)).unwrap();
    let small = g.constant(Tensor::zeros(&[1, 1, 8, 8]));
    assert!(matches!(
        mini.forward_logits(&g, small),
        Err(Error::Shape { .. })
    ));
    // A depth the group size does not divide: the last group is shorter.
    assert_eq!(mini.encoder.num_groups(), 2);
    assert_eq!(mini.encoder.group_of(3), 1);
    assert_eq!(mini_logits(&mini, &images(1, 92)).shape(), [1, 3]);
}
