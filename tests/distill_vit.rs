//! Distilling a ViT into a smaller ViT (`lithe::train::train_vit_distill`): the student's start
//! from the teacher, the stored sparse logits of a teacher, each method's training step, the
//! errors, and `lithe distill` on the shipped digits.

use lithe::compress::distill::{DeitTarget, KdConfig, SparseLogits, TinyBertConfig};
use lithe::nn::{Module, Vit, VitConfig};
use lithe::train::{self, ImageDistill, ImageSet, TrainOptions};
use lithe::{Graph, Rng, Tensor};
use std::path::Path;
use std::process::Command;

fn config(depth: usize, width: usize) -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 1,
        hidden_size: width,
        num_hidden_layers: depth,
        num_attention_heads: 4,
        intermediate_size: 2 * width,
        num_labels: 10,
        ..VitConfig::default()
    }
}

/// The first `n` images of each digits split.
fn small_digits(n: usize) -> (ImageSet, ImageSet) {
    let (tr, te) = train::digits_split(3).unwrap();
    let head = |d: &ImageSet, n: usize| {
        let rows: Vec<usize> = (0..n.min(d.len())).collect();
        let (x, y) = d.batch(&rows).unwrap();
        ImageSet {
            pixels: x.data().to_vec(),
            labels: y,
            channels: 1,
            side: 8,
        }
    };
    (head(&tr, n), head(&te, n))
}

fn logits(vit: &Vit, x: &Tensor) -> Tensor {
    let g = Graph::inference();
    let l = vit.forward_logits(&g, g.constant(x.clone())).unwrap();
    g.value(l).unwrap()
}

/// A depth-1 student copied from a depth-2 teacher computes what the teacher computes when its
/// second block is skipped: same embeddings, first block, final LayerNorm and head.
#[test]
fn student_from_teacher_is_the_teacher_cut_after_its_first_blocks() {
    let teacher = Vit::new(&config(2, 16), &mut Rng::new(1)).unwrap();
    let (student, fresh) =
        train::vit_student_from_teacher(&teacher, &config(1, 16), &mut Rng::new(2)).unwrap();
    assert!(fresh.is_empty(), "{fresh:?}");
    let (tr, _) = small_digits(4);
    let (x, _) = tr.batch(&[0, 1, 2, 3]).unwrap();
    let g = Graph::inference();
    let (_, traces) = teacher
        .forward_traced(&g, g.constant(x.clone()), None)
        .unwrap();
    let cut = teacher.logits_from_hidden(&g, traces[0].output).unwrap();
    let cut = g.value(cut).unwrap();
    let got = logits(&student, &x);
    for (a, b) in got.data().iter().zip(cut.data()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // The copy shares nothing: training the student leaves the teacher as it was.
    let before = logits(&teacher, &x);
    student.named_params()[0]
        .1
        .set_value(Tensor::zeros(&student.named_params()[0].1.shape()))
        .unwrap();
    assert_eq!(logits(&teacher, &x).data(), before.data());
}

#[test]
fn deit_student_takes_its_token_head_and_position_from_the_class_token() {
    let teacher = Vit::new(&config(2, 16), &mut Rng::new(1)).unwrap();
    let deit = VitConfig {
        distillation_token: true,
        ..config(1, 16)
    };
    let (student, fresh) =
        train::vit_student_from_teacher(&teacher, &deit, &mut Rng::new(2)).unwrap();
    assert!(fresh.is_empty(), "{fresh:?}");
    let e = &student.embeddings;
    let dist = e.distillation_token.as_ref().unwrap().value();
    assert_eq!(dist.data(), teacher.embeddings.cls_token.value().data());
    let head = student.distillation_classifier.as_ref().unwrap();
    assert_eq!(
        head.weight.value().data(),
        teacher.classifier.weight.value().data()
    );
    // Positions [cls, cls, patches...] from the teacher's [cls, patches...].
    let (sp, tp) = (
        e.position_embeddings.value(),
        teacher.embeddings.position_embeddings.value(),
    );
    assert_eq!(sp.shape(), &[1, 6, 16]);
    assert_eq!(&sp.data()[..16], &tp.data()[..16]);
    assert_eq!(&sp.data()[16..32], &tp.data()[..16]);
    assert_eq!(&sp.data()[32..], &tp.data()[16..]);
    // A wider student shares no shape with the teacher: everything is fresh.
    let (_, fresh) =
        train::vit_student_from_teacher(&teacher, &config(1, 32), &mut Rng::new(2)).unwrap();
    assert!(
        fresh.iter().any(|n| n.contains("query.weight")),
        "{fresh:?}"
    );
}

#[test]
fn sparse_teacher_logits_hold_the_teachers_top_k() {
    let teacher = Vit::new(&config(1, 16), &mut Rng::new(5)).unwrap();
    let (tr, _) = small_digits(10);
    let store = train::sparse_teacher_logits(&teacher, &tr, 3, 2.0).unwrap();
    assert_eq!((store.len(), store.k(), store.classes()), (10, 3, 10));
    let rows: Vec<usize> = (0..10).collect();
    let (x, _) = tr.batch(&rows).unwrap();
    let l = logits(&teacher, &x);
    for (r, row) in l.data().chunks(10).enumerate() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|v| ((v - max) / 2.0).exp()).collect();
        let sum: f32 = e.iter().sum();
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| e[b].total_cmp(&e[a]));
        let top: Vec<(usize, f32)> = store.top(r).collect();
        for (i, &(class, p)) in top.iter().enumerate() {
            assert_eq!(class, order[i], "row {r}");
            assert!((p - e[class] / sum).abs() < 1e-3, "row {r}: {p}");
        }
    }
}

fn short(steps: usize) -> TrainOptions {
    TrainOptions {
        epochs: 1,
        batch_size: 16,
        lr: 1e-3,
        max_steps: Some(steps),
        ..TrainOptions::default()
    }
}

/// Every method runs, its losses are finite, and it moves the student.
#[test]
fn each_method_trains_the_student() {
    let teacher = Vit::new(&config(2, 32), &mut Rng::new(7)).unwrap();
    let (tr, te) = small_digits(48);
    let store = train::sparse_teacher_logits(&teacher, &tr, 3, 4.0).unwrap();
    let kd = KdConfig::default();
    let methods = [
        ImageDistill::Labels,
        ImageDistill::Kd(kd),
        ImageDistill::Deit(DeitTarget::Soft {
            temperature: 4.0,
            alpha: 0.5,
        }),
        ImageDistill::Deit(DeitTarget::Hard),
        ImageDistill::Sparse {
            store: &store,
            alpha: 0.5,
        },
        ImageDistill::TinyBert(TinyBertConfig::default()),
    ];
    for method in &methods {
        // TinyBERT gets a narrower student, so its width projection is exercised.
        let width = if matches!(method, ImageDistill::TinyBert(_)) {
            16
        } else {
            32
        };
        let c = VitConfig {
            distillation_token: matches!(method, ImageDistill::Deit(_)),
            ..config(1, width)
        };
        let student = Vit::new(&c, &mut Rng::new(8)).unwrap();
        let before = student.classifier.weight.value();
        let mut losses = Vec::new();
        let history = train::train_vit_distill(
            &student,
            Some(&teacher),
            method,
            &tr,
            &te,
            &short(3),
            &mut |e| {
                if let train::Event::Step { loss } = e {
                    losses.push(loss)
                }
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", method.name()));
        assert_eq!(losses.len(), 3, "{}", method.name());
        assert!(
            losses.iter().all(|l| l.is_finite() && *l > 0.0),
            "{}: {losses:?}",
            method.name()
        );
        assert_ne!(
            student.classifier.weight.value().data(),
            before.data(),
            "{}",
            method.name()
        );
        let acc = history.final_accuracy();
        assert!((0.0..=1.0).contains(&acc), "{}", method.name());
    }
}

#[test]
fn errors_are_clear() {
    let teacher = Vit::new(&config(2, 32), &mut Rng::new(7)).unwrap();
    let (tr, te) = small_digits(32);
    let plain = Vit::new(&config(1, 32), &mut Rng::new(8)).unwrap();
    let deit_config = VitConfig {
        distillation_token: true,
        ..config(1, 32)
    };
    let deit = Vit::new(&deit_config, &mut Rng::new(8)).unwrap();
    let run = |student: &Vit, teacher: Option<&Vit>, method: &ImageDistill| {
        train::train_vit_distill(student, teacher, method, &tr, &te, &short(1), &mut |_| {})
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let kd = ImageDistill::Kd(KdConfig::default());
    assert!(run(&plain, None, &kd).contains("needs a teacher"));
    let soft = ImageDistill::Deit(DeitTarget::Hard);
    assert!(run(&plain, Some(&teacher), &soft).contains("without a distillation token"));
    assert!(run(&deit, Some(&teacher), &kd).contains("with a distillation token"));
    let short_store = SparseLogits::new(10, 3, 1.0).unwrap();
    let sparse = ImageDistill::Sparse {
        store: &short_store,
        alpha: 0.5,
    };
    assert!(run(&plain, None, &sparse).contains("sparse store holds 0 rows"));
    let other_classes = Vit::new(
        &VitConfig {
            num_labels: 12,
            ..config(2, 32)
        },
        &mut Rng::new(1),
    )
    .unwrap();
    assert!(run(&plain, Some(&other_classes), &kd).contains("classes"));
}

/// `lithe distill` on the digits: the sparse-logit file is written next to the student, holds
/// one row per training image, and the table compares teacher and student.
#[test]
fn distill_cli_writes_the_logit_file_and_the_student() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("distill-cli");
    let _ = std::fs::remove_dir_all(&dir);
    let teacher = Vit::new(&config(2, 16), &mut Rng::new(1)).unwrap();
    train::save_run(&dir.join("teacher"), &teacher, &teacher.config, None).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lithe"))
        .args(["distill", "--teacher"])
        .arg(dir.join("teacher"))
        .args([
            "--student",
            "depth=1",
            "--method",
            "sparse-logits",
            "--top-k",
            "2",
        ])
        .args([
            "--data",
            "digits",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--json",
            "--out",
        ])
        .arg(dir.join("student"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["method"], "teacher");
    assert_eq!(rows[1]["method"], "sparse-top2");
    let (train_set, _) = train::digits_split(42).unwrap();
    let store = SparseLogits::load(dir.join("student/teacher-top2.safetensors")).unwrap();
    assert_eq!(store.len(), train_set.len());
    assert_eq!(
        rows[1]["dense_bytes"],
        SparseLogits::dense_bytes(train_set.len(), 10)
    );
    let student: VitConfig = lithe::io::load_config(dir.join("student/config.json")).unwrap();
    assert_eq!(student.num_hidden_layers, 1);
    // A bad student spec and a text-only method are refused with a message.
    for (student, method) in [("depth=x", "kd"), ("depth=1", "theseus")] {
        let out = Command::new(env!("CARGO_BIN_EXE_lithe"))
            .args(["distill", "--teacher"])
            .arg(dir.join("teacher"))
            .args([
                "--student",
                student,
                "--method",
                method,
                "--data",
                "digits",
                "--out",
            ])
            .arg(dir.join("bad"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("lithe: error"), "{err}");
    }
}
