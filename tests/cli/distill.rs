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

/// `lithe distill` on a BERT teacher: a 2-block teacher trained on a tiny TSV, then 1-block
/// students by Theseus, by the first block fine-tuned (`none`) and by KD; each saves a student
/// that `lithe eval` reads back with the accuracy the row reported. Image-only methods and
/// students deeper than the teacher are refused.
#[test]
fn distill_text_theseus_none_and_kd_on_a_tiny_set() {
    let dir = super::scratch("distill-text");
    let pos = ["a great and wonderful film", "i loved it , truly moving"];
    let neg = ["a dull boring mess", "i hated every minute"];
    let mut tsv = String::new();
    for i in 0..8 {
        tsv += &format!("1\t{}\n0\t{}\n", pos[i % 2], neg[i % 2]);
    }
    let (train, test) = (dir.join("train.tsv"), dir.join("test.tsv"));
    std::fs::write(&train, &tsv).unwrap();
    std::fs::write(&test, &tsv[..tsv.len() / 2]).unwrap();
    let vocab = format!(
        "{}/data/vocab/bert-base-uncased-vocab.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let teacher = dir.join("teacher");
    let out = lithe(&[
        "train",
        "text",
        "--train",
        &s(&train),
        "--test",
        &s(&test),
        "--vocab",
        &vocab,
        "--epochs",
        "1",
        "--batch",
        "4",
        "--width",
        "16",
        "--depth",
        "2",
        "--heads",
        "2",
        "--max-len",
        "16",
        "--out",
        &s(&teacher),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let common = [
        "--teacher".to_string(),
        s(&teacher),
        "--student".into(),
        "depth=1".into(),
        "--train".into(),
        s(&train),
        "--test".into(),
        s(&test),
        "--max-len".into(),
        "16".into(),
        "--batch".into(),
        "4".into(),
        "--epochs".into(),
        "2".into(),
        "--json".into(),
    ];
    for method in ["theseus", "none", "kd"] {
        let student = dir.join(method);
        let mut args = vec!["distill", "--method", method, "--out"];
        let student_s = s(&student);
        args.push(&student_s);
        args.extend(common.iter().map(String::as_str));
        let rows = json_lines(&lithe(&args));
        assert_eq!(rows.len(), 2, "{method}");
        assert_eq!(rows[0]["method"], "teacher");
        assert!(
            rows[1]["params"].as_u64() < rows[0]["params"].as_u64(),
            "{method}"
        );
        let acc = rows[1]["accuracy"].as_f64().unwrap();
        let eval = json_lines(&lithe(&[
            "eval",
            "--model",
            &student_s,
            "--data",
            &s(&test),
            "--max-len",
            "16",
            "--json",
        ]));
        let evaluated = eval[0]["accuracy"].as_f64().unwrap();
        assert!(
            (evaluated - acc).abs() < 1e-4,
            "{method}: eval {evaluated}, row {acc}"
        );
    }
    for (method, student) in [("deit", "depth=1"), ("kd", "depth=3")] {
        let mut args = vec!["distill", "--method", method];
        let mut rest: Vec<String> = common.to_vec();
        rest[3] = student.into();
        args.extend(rest.iter().map(String::as_str));
        let bad = s(&dir.join("bad"));
        args.extend(["--out", &bad]);
        let out = lithe(&args);
        assert!(!out.status.success(), "{method} {student} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("lithe: error"));
    }
}
