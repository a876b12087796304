#!/usr/bin/env python3
"""onnxruntime MatMulInteger (u8 x s8 -> s32) timings as JSON lines; run through scripts/peers-gemm-i8.

C[M,N] = A[M,K] @ B[K,N] with A uint8 (zero point 128, i.e. signed activations shifted by 128,
the way quantize_dynamic feeds MatMulInteger) and B an int8 initializer (packed by onnxruntime
when the session is created). Values in [-127, 127]. Each measurement: warm-up, then repeats
within a time budget; the median is reported. GOP/s counts 2*M*K*N integer operations.

  peers_gemm_i8.py --shapes 128x384x1536,1x384x1536 --threads 1
  peers_gemm_i8.py --summarize < lines.jsonl     # medians per (lib, shape, threads) and ratios
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def parse_shape(text):
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"shape must be MxKxN with positive integers, got {text!r}")
    return tuple(int(p) for p in parts)


def median_seconds(fn, budget_s, min_reps=5, max_reps=10000, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(shapes, threads, budget_s):
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    print(json.dumps({"numpy": np.__version__, "onnx": onnx.__version__,
                      "onnxruntime": ort.__version__}), file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="peers_gemm_i8_")
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        a = rng.integers(-127, 128, (m, k), dtype=np.int8)
        b = rng.integers(-127, 128, (k, n), dtype=np.int8)
        a_u8 = (a.astype(np.int16) + 128).astype(np.uint8)
        want = a.astype(np.int64) @ b.astype(np.int64)
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B", "azp"], ["C"])], "g",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, ["M", k])],
            [helper.make_tensor_value_info("C", TensorProto.INT32, ["M", n])],
            [helper.make_tensor("B", TensorProto.INT8, [k, n], b.tobytes(), raw=True),
             helper.make_tensor("azp", TensorProto.UINT8, [], np.array([128], np.uint8).tobytes(),
                                raw=True)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = os.path.join(tmp, f"matmulinteger_{k}x{n}.onnx")
        onnx.save(model, path)
        for nt in threads:
            so = ort.SessionOptions()
            so.intra_op_num_threads = nt
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            feed = {"A": a_u8}
            if not (sess.run(None, feed)[0].astype(np.int64) == want).all():
                raise SystemExit(f"onnxruntime MatMulInteger gave wrong sums at {m}x{k}x{n}")
            med = median_seconds(lambda: sess.run(None, feed), budget_s)
            print(json.dumps({"lib": "ort_matmulinteger", "shape": f"{m}x{k}x{n}", "threads": nt,
                              "median_us": round(med * 1e6, 2),
                              "gops": round(2.0 * m * k * n / med / 1e9, 2)},
                             separators=(",", ":")), flush=True)


def summarize(lines):
    """Medians over rounds of lithe (`lithe bench gemm --dtype i8 --json` rows) and ORT rows."""
    groups = {}
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        if "gops" not in row:
            continue
        lib = row.get("lib") or f"lithe:{row.get('isa')}"
        groups.setdefault((row["shape"], row["threads"]), {}).setdefault(lib, []).append(row["gops"])
    for (shape, nt), libs in sorted(groups.items()):
        med = {lib: statistics.median(v) for lib, v in libs.items()}
        out = {"shape": shape, "threads": nt, "rounds": max(len(v) for v in libs.values())}
        out.update({f"{lib}_gops": round(v, 1) for lib, v in sorted(med.items())})
        ort_gops = med.get("ort_matmulinteger")
        if ort_gops:
            for lib, v in sorted(med.items()):
                if lib != "ort_matmulinteger":
                    out[f"{lib}_vs_ort"] = round(v / ort_gops, 3)
        print(json.dumps(out, separators=(",", ":")))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="128x384x1536,128x1536x384,1x384x1536,1024x1024x1024")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts")
    ap.add_argument("--budget-s", type=float, default=1.0, help="time budget per measurement")
    ap.add_argument("--summarize", action="store_true", help="summarize JSON lines from stdin")
    args = ap.parse_args()
    if args.summarize:
        summarize(sys.stdin)
        return
    shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
    threads = [int(t) for t in args.threads.split(",") if t]
    measure(shapes, threads, args.budget_s)


if __name__ == "__main__":
    main()
