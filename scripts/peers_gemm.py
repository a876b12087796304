#!/usr/bin/env python3
"""numpy (OpenBLAS) single-precision GEMM timings, as JSON lines; run through scripts/peers-gemm.

C[M,N] = A[M,K] @ B[K,N] on C-contiguous float32 arrays, with the BLAS thread count pinned by
threadpoolctl. Each measurement: warm-up, then repeats within a time budget; the median is
reported. GFLOP/s counts 2*M*K*N flops. Environment details go to stderr, results to stdout.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def parse_shape(text):
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"shape must be MxKxN with positive integers, got {text!r}")
    return tuple(int(p) for p in parts)


def median_seconds(fn, budget_s, min_reps, max_reps, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="128x384x1536,128x1536x384,1x384x1536",
                    help="comma-separated MxKxN list (default: %(default)s)")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts (default: %(default)s)")
    ap.add_argument("--budget-s", type=float, default=1.0, help="time budget per measurement")
    ap.add_argument("--min-reps", type=int, default=5)
    ap.add_argument("--max-reps", type=int, default=1000)
    a = ap.parse_args()
    shapes = [parse_shape(s) for s in a.shapes.split(",") if s]
    threads = [int(t) for t in a.threads.split(",") if t]

    blas = [{k: d.get(k) for k in ("internal_api", "version", "architecture")}
            for d in threadpool_info() if d.get("user_api") == "blas"]
    print(json.dumps({"python": platform.python_version(), "numpy": np.__version__, "blas": blas,
                      "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                      "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}), file=sys.stderr)

    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        a_mat = rng.standard_normal((m, k), dtype=np.float32)
        b_mat = rng.standard_normal((k, n), dtype=np.float32)
        c_mat = np.empty((m, n), dtype=np.float32)
        for nt in threads:
            with threadpool_limits(limits=nt, user_api="blas"):
                med = median_seconds(lambda: np.matmul(a_mat, b_mat, out=c_mat),
                                     a.budget_s, a.min_reps, a.max_reps)
            print(json.dumps({"lib": "numpy", "shape": f"{m}x{k}x{n}", "threads": nt,
                              "median_us": round(med * 1e6, 2),
                              "gflops": round(2.0 * m * k * n / med / 1e9, 2)}, separators=(",", ":")),
                  flush=True)


if __name__ == "__main__":
    main()
