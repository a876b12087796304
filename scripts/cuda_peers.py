#!/usr/bin/env python3
"""Peer timings for benches/cuda.rs on the same GPU: PyTorch fp16 (cuBLAS GEMM through
F.linear / torch.matmul, scaled_dot_product_attention with the flash backend).

Prints one JSON line per case, with the same "case" keys as `cargo bench --features cuda
--bench cuda`: {"impl":"torch","op","case","device","median_us","tflops","reps","backend"}.
Timing: warm-up, then samples of 10 back-to-back calls between two CUDA events, median per call; inputs rotate over
enough copies that the working set (>= 128 MiB) does not stay in L2.
"""
import json
import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

WARMUP, SAMPLES, BATCH, ROTATE = 10, 21, 10, 128 << 20
REPS = SAMPLES * BATCH
dev = torch.device("cuda")
name = torch.cuda.get_device_name(0)


def copies(nbytes):
    return max(1, min(8, math.ceil(ROTATE / nbytes)))


def time_us(run):
    for i in range(WARMUP):
        run(i)
    torch.cuda.synchronize()
    evs, i = [], 0
    for _ in range(SAMPLES):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(BATCH):
            run(i)
            i += 1
        b.record()
        evs.append((a, b))
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) * 1e3 / BATCH for a, b in evs)
    return t[len(t) // 2]


def emit(op, case, us, flops, backend):
    print(json.dumps({"impl": "torch", "op": op, "case": case, "device": name,
                      "median_us": round(us, 2), "tflops": round(flops / us / 1e6, 1),
                      "reps": REPS, "backend": backend}), flush=True)


def gemm(label, m, n, k, layout, epi):
    sets = copies((m * k + n * k) * 2)
    A = [torch.randn(m, k, device=dev, dtype=torch.half) for _ in range(sets)]
    B = [torch.randn(*((n, k) if layout == "nt" else (k, n)), device=dev, dtype=torch.half)
         for _ in range(sets)]
    bias = torch.randn(n, device=dev, dtype=torch.half)

    def run(i):
        a, b = A[i % sets], B[i % sets]
        if layout == "nn":
            y = torch.matmul(a, b)
            if epi != "none":
                y = y + bias
        else:
            y = F.linear(a, b, None if epi == "none" else bias)
        if epi == "bias_gelu":
            y = F.gelu(y)
        return y

    us = time_us(run)
    emit("gemm", f"{label}:{m}x{n}x{k}:{layout}:{epi}", us, 2.0 * m * n * k,
         "cublas" + ("+gelu" if epi == "bias_gelu" else ""))


def attention(b, h, l, d, masked):
    n = b * h * l * d
    sets = copies(3 * n * 2)
    qkv = [[torch.randn(b, h, l, d, device=dev, dtype=torch.half) for _ in range(3)]
           for _ in range(sets)]
    lens = [l - min(32 * i, l // 2) for i in range(b)]
    mask = torch.zeros(b, 1, 1, l, device=dev, dtype=torch.bool)
    for i, ln in enumerate(lens):
        mask[i, :, :, :ln] = True
    if masked:
        backend, ctx = "default(mask)", sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION,
                                                     SDPBackend.CUDNN_ATTENTION,
                                                     SDPBackend.MATH])
    else:
        backend, ctx = "flash", sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    with ctx:
        def run(i):
            q, k, v = qkv[i % sets]
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask if masked else None)
        us = time_us(run)
    keys = sum(lens) if masked else b * l
    emit("attention", f"attn:B{b}H{h}L{l}d{d}:{'mask' if masked else 'nomask'}", us,
         4.0 * h * l * d * keys, backend)


if __name__ == "__main__":
    gemm("square", 4096, 4096, 4096, "nt", "none")
    gemm("square", 4096, 4096, 4096, "nn", "none")
    gemm("minilm_qkv", 4096, 1152, 384, "nt", "bias")
    gemm("minilm_ffn1", 4096, 1536, 384, "nt", "bias_gelu")
    gemm("minilm_ffn2", 4096, 384, 1536, "nt", "bias")
    gemm("bert_ffn1", 4096, 3072, 768, "nt", "bias_gelu")
    attention(8, 12, 512, 64, False)
    attention(8, 12, 512, 64, True)
    attention(8, 12, 512, 32, False)
    attention(4, 16, 1024, 128, False)
    attention(32, 12, 128, 32, False)
    attention(32, 12, 128, 32, True)
