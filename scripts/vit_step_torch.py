#!/usr/bin/env python3
"""The tiny ViT of examples/vit_step.rs, rebuilt in PyTorch, timed the same way on the CPU.

Model: 28x28x1 images, patch 4 (a 4x4 stride-4 convolution = lithe's patchify + Linear),
class token, learned position embeddings, 4 pre-LN blocks of width 64 (4 heads, separate q/k/v
Linears as in Hugging Face ViT, MLP 256 with erf GELU), final LayerNorm, a 10-way head;
cross-entropy on the class-token logits. One step = forward + backward + AdamW step
(lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01) + zero_grad, the same as lithe's.

Attention uses torch's fastest CPU path, F.scaled_dot_product_attention (--attn sdpa, default),
or the explicit softmax(QK^T/sqrt(d))V (--attn eager).

    python scripts/vit_step_torch.py [--batch 64] [--threads 1] [--steps 20] [--attn sdpa]

Prints one JSON line: {"side":"torch","batch","threads","median_ms","fwd_ms","params",
"torch","attn"}.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, width, heads, attn):
        super().__init__()
        self.heads, self.attn = heads, attn
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.output = nn.Linear(width, width)

    def forward(self, x):  # x [B, T, H]
        b, t, h = x.shape
        split = lambda y: y.view(b, t, self.heads, h // self.heads).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        if self.attn == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            p = torch.softmax(q @ k.transpose(-1, -2) / (h // self.heads) ** 0.5, dim=-1)
            o = p @ v
        return self.output(o.transpose(1, 2).reshape(b, t, h))


class Block(nn.Module):
    def __init__(self, width, heads, mlp, attn):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(width, eps=1e-6)
        self.attention = Attention(width, heads, attn)
        self.layernorm_after = nn.LayerNorm(width, eps=1e-6)
        self.fc1 = nn.Linear(width, mlp)
        self.fc2 = nn.Linear(mlp, width)

    def forward(self, x):
        x = x + self.attention(self.layernorm_before(x))
        return x + self.fc2(F.gelu(self.fc1(self.layernorm_after(x))))


class TinyVit(nn.Module):
    def __init__(self, side=28, patch=4, width=64, depth=4, heads=4, mlp=256, classes=10,
                 attn="sdpa"):
        super().__init__()
        tokens = (side // patch) ** 2 + 1
        self.projection = nn.Conv2d(1, width, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.position_embeddings = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp, attn) for _ in range(depth))
        self.layernorm = nn.LayerNorm(width, eps=1e-6)
        self.classifier = nn.Linear(width, classes)

    def forward(self, images):  # images [B, 1, S, S]
        x = self.projection(images).flatten(2).transpose(1, 2)  # [B, N, H]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.position_embeddings
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.layernorm(x)[:, 0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(9)
    model = TinyVit(attn=a.attn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01)
    x = torch.randn(a.batch, 1, 28, 28)
    y = torch.arange(a.batch) % 10

    step_ms, fwd_ms = [], []
    for i in range(a.steps + 3):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if i >= 3:
            fwd_ms.append(1e3 * (t1 - t0))
            step_ms.append(1e3 * (t2 - t0))
    print(json.dumps({
        "side": "torch", "batch": a.batch, "threads": a.threads,
        "median_ms": round(statistics.median(step_ms), 3),
        "fwd_ms": round(statistics.median(fwd_ms), 3),
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__, "attn": a.attn,
    }))


if __name__ == "__main__":
    main()
