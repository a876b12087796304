//! The demo's distillation stages.

use super::{json_lines, lithe};

/// `distill-kd`, `distill-deit` and `distill-sparse`: students of half the baseline's depth,
/// with the demo's row schema, smaller than the baseline and close to its accuracy.
#[test]
fn demo_distill_stages_are_smaller_students_close_to_the_baseline() {
    let stages = "fp32,distill-kd,distill-deit,distill-sparse";
    let rows = json_lines(&lithe(&["demo", "--quick", "--stages", stages, "--json"]));
    assert_eq!(rows.len(), 4);
    let params = |r: &serde_json::Value| r["params"].as_u64().unwrap();
    let accuracy = |r: &serde_json::Value| r["accuracy"].as_f64().unwrap();
    let keys = |r: &serde_json::Value| r.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    for (row, stage) in rows[1..]
        .iter()
        .zip(["distill-kd", "distill-deit", "distill-sparse"])
    {
        assert_eq!(row["stage"], stage);
        assert_eq!(keys(row), keys(&rows[0]));
        assert_eq!(row["bytes"].as_u64(), Some(4 * params(row)));
        assert!(
            params(row) * 3 < params(&rows[0]) * 2,
            "{stage}: {} params, fp32 {}",
            params(row),
            params(&rows[0])
        );
        assert!(
            accuracy(row) >= accuracy(&rows[0]) - 0.05,
            "{stage}: {} vs fp32 {}",
            accuracy(row),
            accuracy(&rows[0])
        );
    }
}
