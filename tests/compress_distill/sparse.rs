//! TinyViT's stored sparse logits: the top-k store, its file, the rebuilt targets and the loss.

use super::reference as r;
use super::{check_loss, f64s, randn};
use lithe::Graph;
use lithe::compress::distill::{SparseLogits, soft_kd, sparse_kd};

/// Logits ln(4, 2, 1, 1) give p = (1/2, 1/4, 1/8, 1/8); the top 2 keep 3/4 and the other two
/// classes share the remaining 1/4 equally. Every value is exact in fp16.
#[test]
fn top_k_and_targets_by_hand() {
    let mut store = SparseLogits::new(4, 2, 1.0).unwrap();
    let row = [4f32.ln(), 2f32.ln(), 0.0, 0.0];
    // Second row: the same classes rotated, so the top classes are 1 and 2.
    let rotated = [0.0, 4f32.ln(), 2f32.ln(), 0.0];
    store.push_logits(&[row, rotated].concat()).unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(store.top(0).collect::<Vec<_>>(), vec![(0, 0.5), (1, 0.25)]);
    assert_eq!(store.top(1).collect::<Vec<_>>(), vec![(1, 0.5), (2, 0.25)]);
    let t = store.targets(&[1, 0]).unwrap();
    assert_eq!(t.shape(), &[2, 4]);
    assert_eq!(
        t.data(),
        &[0.125, 0.5, 0.25, 0.125, 0.5, 0.25, 0.125, 0.125]
    );
}

#[test]
fn ties_keep_the_lower_class_and_temperature_flattens() {
    let mut store = SparseLogits::new(4, 3, 2.0).unwrap();
    store.push_logits(&[1.0, 3.0, 1.0, 1.0]).unwrap();
    let top: Vec<usize> = store.top(0).map(|(c, _)| c).collect();
    assert_eq!(top, vec![1, 0, 2]);
    // softmax((3, 1) / 2) over the row: e^1 / (e^1 + 3)
    let want = 1f64.exp() / (1f64.exp() + 3.0);
    let got = store.top(0).next().unwrap().1 as f64;
    assert!((got - want).abs() < 1e-3, "{got} vs {want}");
}

#[test]
fn file_round_trip_and_size() {
    let logits = randn(&[37, 10], 5).scale(3.0);
    let mut store = SparseLogits::new(10, 3, 2.0).unwrap();
    store.push_logits(logits.data()).unwrap();
    let bytes = store.to_bytes().unwrap();
    let back = SparseLogits::from_bytes(&bytes).unwrap();
    assert_eq!(back, store);
    // fp16 values and one-byte classes: 3 bytes per kept probability, plus the header.
    let payload = 37 * 3 * 3;
    assert!(
        bytes.len() >= payload && bytes.len() < payload + 512,
        "{}",
        bytes.len()
    );
    assert_eq!(SparseLogits::dense_bytes(37, 10), 37 * 10 * 4);

    // Beyond 256 classes the classes take two bytes.
    let mut wide = SparseLogits::new(300, 2, 1.0).unwrap();
    wide.push_logits(randn(&[3, 300], 6).data()).unwrap();
    let back = SparseLogits::from_bytes(&wide.to_bytes().unwrap()).unwrap();
    assert_eq!(back, wide);
    assert!(back.top(2).all(|(c, _)| c < 300));

    let dir = std::env::temp_dir().join(format!("lithe-sparse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("top3.safetensors");
    store.save(&path).unwrap();
    assert_eq!(SparseLogits::load(&path).unwrap(), store);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With every class kept, the stored targets are the teacher's distribution up to fp16
/// rounding, so the loss is `soft_kd`'s.
#[test]
fn keeping_every_class_equals_dense_kd() {
    let (student, teacher) = (randn(&[6, 5], 7), randn(&[6, 5], 8).scale(2.0));
    let mut store = SparseLogits::new(5, 5, 3.0).unwrap();
    store.push_logits(teacher.data()).unwrap();
    let rows: Vec<usize> = (0..6).collect();
    let g = Graph::new();
    let s = g.variable(student);
    let sparse = sparse_kd(&g, s, store.targets(&rows).unwrap(), 3.0).unwrap();
    let dense = soft_kd(&g, s, g.constant(teacher), 3.0).unwrap();
    let (a, b) = (
        g.value(sparse).unwrap().item().unwrap(),
        g.value(dense).unwrap().item().unwrap(),
    );
    assert!((a - b).abs() <= 2e-3 * b.abs().max(1e-2), "{a} vs {b}");
}

#[test]
fn sparse_kd_matches_reference_and_finite_differences() {
    let mut store = SparseLogits::new(6, 2, 2.0).unwrap();
    store
        .push_logits(randn(&[4, 6], 9).scale(3.0).data())
        .unwrap();
    let targets = store.targets(&[3, 1, 0, 2]).unwrap();
    let t64 = f64s(&targets);
    // The rebuilt rows are distributions.
    for row in t64.chunks(6) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 2e-3, "{row:?}");
    }
    let tc = targets.clone();
    check_loss(
        "sparse_kd",
        &[randn(&[4, 6], 10)],
        move |g, v| sparse_kd(g, v[0], tc.clone(), 2.0),
        move |x| r::kd_to_targets(&x[0], &t64, 6, 2.0),
    );
}

#[test]
fn errors() {
    assert!(SparseLogits::new(4, 0, 1.0).is_err());
    assert!(SparseLogits::new(4, 5, 1.0).is_err());
    assert!(SparseLogits::new(4, 2, 0.0).is_err());
    assert!(SparseLogits::new(70_000, 2, 1.0).is_err());
    let mut store = SparseLogits::new(4, 2, 1.0).unwrap();
    assert!(store.push_logits(&[0.0; 6]).is_err());
    store.push_logits(&[0.0; 8]).unwrap();
    assert!(store.targets(&[2]).is_err());
    let bytes = store.to_bytes().unwrap();
    assert!(SparseLogits::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    assert!(SparseLogits::from_bytes(b"not a file").is_err());
    let g = Graph::new();
    let s = g.variable(randn(&[2, 4], 1));
    assert!(sparse_kd(&g, s, store.targets(&[0]).unwrap(), 1.0).is_err());
    assert!(sparse_kd(&g, s, store.targets(&[0, 1]).unwrap(), -1.0).is_err());
    let both = store.targets(&[0, 1]).unwrap();
    assert!(sparse_kd(&g, s, both, 1.0).is_ok());
}
