#!/usr/bin/env python3
"""PyTorch fp16 peer of `lithe bench minilm --device cuda`: a plain-PyTorch BERT encoder built
from a Hugging Face `model.safetensors` (read without the safetensors package; F32 or F16),
run in fp16 on the GPU with `scaled_dot_product_attention`, timed per call two ways: CUDA
events around one forward, and host wall time of one forward + synchronize (what lithe's CLI
measures). Also checks the model against the fixture's sentence embeddings (ids from the
fixture, mean pooling, L2 norm). Prints one JSON line per case.

Usage: cuda_encoder_peer.py MODEL_DIR [reference.json] [--shapes 1x128,32x128] [--iters 200]
"""
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    dt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in ("F32", "F16", "BF16"):
            continue  # e.g. the I64 position_ids buffer
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=dt[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out


class Bert(torch.nn.Module):
    def __init__(self, w, cfg):
        super().__init__()
        self.w = {k: v.cuda().half() for k, v in w.items() if not k.startswith("pooler")}
        self.h = cfg["hidden_size"]
        self.nh = cfg["num_attention_heads"]
        self.layers = cfg["num_hidden_layers"]
        self.eps = cfg.get("layer_norm_eps", 1e-12)
        p = lambda i, n: self.w[f"encoder.layer.{i}.{n}"]
        # fused QKV as in lithe's CudaEncoder
        self.qkv = [
            (
                torch.cat([p(i, "attention.self.query.weight"), p(i, "attention.self.key.weight"), p(i, "attention.self.value.weight")]),
                torch.cat([p(i, "attention.self.query.bias"), p(i, "attention.self.key.bias"), p(i, "attention.self.value.bias")]),
            )
            for i in range(self.layers)
        ]

    def forward(self, ids, lens=None):
        w, h, nh = self.w, self.h, self.nh
        b, t = ids.shape
        d = h // nh
        pos = torch.arange(t, device=ids.device)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][pos] + w["embeddings.token_type_embeddings.weight"][0]
        x = F.layer_norm(x, (h,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        mask = None
        if lens is not None:
            mask = (torch.arange(t, device=ids.device)[None, :] < lens[:, None])[:, None, None, :]
        for i in range(self.layers):
            p = lambda n: w[f"encoder.layer.{i}.{n}"]
            qkv = F.linear(x, *self.qkv[i]).view(b, t, 3, nh, d).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
            o = o.transpose(1, 2).reshape(b, t, h)
            a = F.linear(o, p("attention.output.dense.weight"), p("attention.output.dense.bias"))
            x = F.layer_norm(a + x, (h,), p("attention.output.LayerNorm.weight"), p("attention.output.LayerNorm.bias"), self.eps)
            f = F.gelu(F.linear(x, p("intermediate.dense.weight"), p("intermediate.dense.bias")))
            f = F.linear(f, p("output.dense.weight"), p("output.dense.bias"))
            x = F.layer_norm(f + x, (h,), p("output.LayerNorm.weight"), p("output.LayerNorm.bias"), self.eps)
        return x


try:
    import transformers
    HF = transformers.__version__
except ImportError:
    HF = None

_hf_model = None


def time_hf(cfg, model, ids, iters):
    """transformers' BertModel (sdpa attention) in fp16 with the same weights, same timing."""
    global _hf_model
    if _hf_model is None:
        c = transformers.BertConfig(**{k: v for k, v in cfg.items() if k not in ("architectures",)})
        c._attn_implementation = "sdpa"
        m = transformers.BertModel(c, add_pooling_layer=False)
        sd = {k: v for k, v in model.w.items()}
        missing, _ = m.load_state_dict(sd, strict=False)
        m = m.half().cuda().eval()
        _hf_model = (m, [k for k in missing if "position_ids" not in k])
    m, missing = _hf_model
    for _ in range(20):
        m(input_ids=ids)
    torch.cuda.synchronize()
    ev, wall = [], []
    for _ in range(iters):
        s0, s1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        w0 = time.perf_counter()
        s0.record()
        m(input_ids=ids)
        s1.record()
        torch.cuda.synchronize()
        wall.append((time.perf_counter() - w0) * 1e3)
        ev.append(s0.elapsed_time(s1))
    ev.sort(); wall.sort()
    return {"transformers": HF, "missing": missing, "events_median_ms": round(ev[len(ev) // 2], 4),
            "wall_median_ms": round(wall[len(wall) // 2], 4)}


def main():
    args = sys.argv[1:]
    shapes, iters, pos = "1x128,32x128", 200, []
    i = 0
    while i < len(args):
        if args[i] == "--shapes":
            shapes = args[i + 1]; i += 2
        elif args[i] == "--iters":
            iters = int(args[i + 1]); i += 2
        else:
            pos.append(args[i]); i += 1
    mdir = pos[0]
    cfg = json.load(open(f"{mdir}/config.json"))
    model = Bert(read_safetensors(f"{mdir}/model.safetensors"), cfg)
    dev = torch.cuda.get_device_name(0)
    with torch.inference_mode():
        if len(pos) > 1:
            ref = json.load(open(pos[1]))
            worst = 1.0
            for s in ref["sentences"]:
                ids = torch.tensor([s["input_ids"]], device="cuda")
                x = model(ids).float().mean(1)[0]
                x = x / x.norm()
                e = torch.tensor(s["embedding"], device="cuda")
                worst = min(worst, float(F.cosine_similarity(x, e, dim=0)))
            print(json.dumps({"check": "torch fp16 vs reference embeddings", "min_cosine": round(worst, 6)}))
        for shp in shapes.split(","):
            b, t = map(int, shp.split("x"))
            g = torch.Generator(device="cpu").manual_seed(3)
            ids = torch.randint(1000, cfg["vocab_size"], (b, t), generator=g).cuda()
            ids[:, 0] = 101
            for _ in range(20):
                model(ids)
            torch.cuda.synchronize()
            ev, wall = [], []
            for _ in range(iters):
                s0, s1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                w0 = time.perf_counter()
                s0.record()
                model(ids)
                s1.record()
                torch.cuda.synchronize()
                wall.append((time.perf_counter() - w0) * 1e3)
                ev.append(s0.elapsed_time(s1))
            ev.sort(); wall.sort()
            try:
                hf = time_hf(cfg, model, ids, iters) if HF else None
            except Exception as e:  # the plain-PyTorch numbers still print
                hf = f"error: {type(e).__name__}: {e}"[:200]
            print(json.dumps({"peer": "torch", "version": torch.__version__, "gpu": dev, "batch": b, "seq": t,
                              "precision": "fp16", "events_median_ms": round(ev[len(ev) // 2], 4),
                              "wall_median_ms": round(wall[len(wall) // 2], 4),
                              "hf_bertmodel_sdpa": hf}))


if __name__ == "__main__":
    main()
