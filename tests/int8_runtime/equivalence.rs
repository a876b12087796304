//! The int8 engine against the f32 models stage by stage with `lithe::check`: every block's
//! hidden states stay close, and a fault planted in one block is named by the report.

use super::*;
use lithe::check::{F32Engine, Int8Engine, Sample, Tolerance, assert_equivalent, check_equivalent};

/// Int8 with dynamic activation scales keeps every stage of these tiny models within 5%
/// (relative Frobenius) and at cosine 0.998 of f32 (measured: at most 2.5% and 0.9997).
const INT8_STAGES: Tolerance = Tolerance::frobenius(0.05).and_cosine(0.998);

fn image_samples(n: usize, batch: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample::images(images(batch, 40 + i as u64).data().to_vec(), batch))
        .collect()
}

fn token_samples(n: usize, batch: usize, seq: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let (ids, lengths) = tokens(batch, seq, 50 + i as u64);
            Sample::tokens(ids, batch, seq, Some(lengths))
        })
        .collect()
}

#[test]
fn vit_every_stage_matches_f32() {
    for distillation in [false, true] {
        let vit = tiny_vit(distillation, 30);
        let int8 = vit.to_int8(&QuantPlan::dynamic()).unwrap();
        let samples = image_samples(3, 4);
        let report = assert_equivalent(
            &mut Int8Engine::new(&int8, 4, 0).unwrap(),
            &mut F32Engine::vit(&vit),
            &samples,
            &INT8_STAGES,
        );
        eprintln!("{report}");
        let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["embeddings", "layer.0", "layer.1", "logits"]);
        assert!(report.uncompared.is_empty());
    }
}

#[test]
fn bert_every_stage_matches_f32_with_padding() {
    let bert = tiny_bert(31);
    let int8 = bert.to_int8(&QuantPlan::dynamic()).unwrap();
    let samples = token_samples(3, 6, 10);
    let report = assert_equivalent(
        &mut Int8Engine::new(&int8, 6, 10).unwrap(),
        &mut F32Engine::bert(&bert),
        &samples,
        &INT8_STAGES,
    );
    eprintln!("{report}");
    assert_eq!(report.stages.len(), 4);
    // Token embeddings are f32 lookups in both engines: only the blocks add quantization error.
    assert!(report.stages[0].rel_frobenius < 1e-6, "{report}");
}

#[test]
fn a_fault_in_one_block_is_named_by_the_report() {
    let bert = tiny_bert(32);
    let int8 = bert.to_int8(&QuantPlan::dynamic()).unwrap();
    // The reference's second block changes after lowering: its MLP output bias moves (by ±1
    // in turn, which the LayerNorm after it cannot cancel), as a wrong kernel or a bad weight
    // load would move the int8 block's output.
    let (name, bias) = bert
        .named_params()
        .into_iter()
        .find(|(n, _)| n == "encoder.layer.1.output.dense.bias")
        .unwrap();
    let mut moved = bias.value().clone();
    moved
        .data_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v += if i % 2 == 0 { 1.0 } else { -1.0 });
    bias.set_value(moved).unwrap();
    let samples = token_samples(2, 4, 8);
    let report = check_equivalent(
        &mut Int8Engine::new(&int8, 4, 8).unwrap(),
        &mut F32Engine::bert(&bert),
        &samples,
        &INT8_STAGES,
    )
    .unwrap();
    eprintln!("{report}");
    assert!(!report.passed(), "{name} moved but the engines still agree");
    assert_eq!(report.first_failure().unwrap().name, "layer.1", "{report}");
    assert_eq!(report.largest_jump().unwrap().0.name, "layer.1", "{report}");
    assert!(report.stages[..2].iter().all(|s| s.failure.is_none()));
    let text = report.to_string();
    assert!(
        text.contains("first stage out of tolerance: layer.1"),
        "{text}"
    );
    assert!(text.contains("worst element at ["), "{text}");
}

#[test]
fn engines_refuse_the_wrong_kind_of_sample() {
    let vit = tiny_vit(false, 33);
    let int8 = vit.to_int8(&QuantPlan::dynamic()).unwrap();
    let samples = token_samples(1, 1, 4);
    let err = check_equivalent(
        &mut Int8Engine::new(&int8, 1, 0).unwrap(),
        &mut F32Engine::vit(&vit),
        &samples,
        &INT8_STAGES,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("engine int8 failed on sample 0"),
        "{err}"
    );
}
