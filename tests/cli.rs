//! The CLI's promises to scripts: JSON rows with the documented keys, and errors on bad input.

use std::process::Command;

fn lithe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lithe"))
        .args(args)
        .output()
        .expect("run lithe")
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "lithe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

#[test]
fn bench_gemm_prints_one_json_row_per_shape() {
    let out = lithe(&[
        "bench",
        "gemm",
        "--dtype",
        "f32",
        "--shape",
        "17x33x65,8x8x8",
        "--threads",
        "1",
        "--budget-ms",
        "20",
        "--json",
    ]);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 2);
    for (row, shape) in rows.iter().zip(["17x33x65", "8x8x8"]) {
        assert_eq!(row["dtype"], "f32");
        assert_eq!(row["shape"], shape);
        assert_eq!(row["threads"], 1);
        assert!(row["isa"].is_string());
        assert!(row["median_us"].as_f64().unwrap() > 0.0);
        assert!(row["gflops"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_gemm_rejects_bad_shapes_and_isas() {
    for args in [
        vec!["--shape", "12x0x4"],
        vec!["--shape", "12x4"],
        vec!["--isa", "sse9"],
    ] {
        let mut all = vec!["bench", "gemm", "--budget-ms", "1"];
        all.extend(args);
        let out = lithe(&all);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("error"));
    }
}

#[test]
fn demo_quick_trains_to_real_accuracy_and_prints_the_row_schema() {
    let rows = json_lines(&lithe(&["demo", "--quick", "--json"]));
    assert_eq!(rows.len(), 1);
    let row = rows[0].as_object().unwrap();
    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "stage",
            "params",
            "bytes",
            "accuracy",
            "latency_ms",
            "throughput"
        ]
    );
    assert_eq!(row["stage"], "fp32");
    assert_eq!(
        row["bytes"].as_u64().unwrap(),
        4 * row["params"].as_u64().unwrap()
    );
    let accuracy = row["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "digits test accuracy {accuracy}");
    assert!(!lithe(&["demo", "--stages", "nope"]).status.success());
}
