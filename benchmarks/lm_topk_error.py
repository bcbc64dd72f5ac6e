"""Top-k token targets against dense ones, and what the cache costs per token (docs/language_models.md).

1. A byte-level teacher (TinyGPT) trained on the default corpus (python-docs) and a briefly trained student: on
   validation blocks, the KD soft term T^2 D(teacher || student) from the dense teacher logits and from top-k
   targets (the loss's sparse path: top-k logits + the tail's log-sum-exp and mean), at T = 1, 2, 4 and several
   k, with the mean L1 distance between the dense and the rebuilt teacher distributions at T.
2. Cache bytes per token: the codec's arithmetic for k = 32 and a 50,257 vocabulary, and Parquet files written
   by the codec (dense and top-32) for a random-init model with that vocabulary on a small sample of blocks, and
   for the trained byte-level teacher.

    python benchmarks/lm_topk_error.py [--steps 400] [--blocks 256]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdtune.tasks.image.views import densify
from kdtune.tasks.image.views import sparsify
from kdtune.tasks.language.blocks import build_splits
from kdtune.tasks.language.blocks import write_blocks
from kdtune.tasks.language.cache_codec import TargetFormat
from kdtune.tasks.language.cache_codec import cache_bytes
from kdtune.tasks.language.corpus import load_corpus
from kdtune.tasks.language.loss import DIVERGENCES
from kdtune.tasks.language.loss import TopK
from kdtune.tasks.language.loss import divergence_per_token
from kdtune.tasks.language.models import build_lm
from kdtune.tasks.language.models import flops_per_token
from kdtune.tasks.language.tokenizer import ByteTokenizer
from kdtune.tasks.language.train import LMTrainConfig
from kdtune.tasks.language.train import compute_targets
from kdtune.tasks.language.train import train_lm


@dataclass(frozen=True)
class SpreadTokenizer:
    """Bytes spread over a 50,257-id vocabulary: only the size matters for the byte count."""

    name: str = "spread-50257"
    fingerprint: str = "spread-50257"
    vocab_size: int = 50257
    eos_id: int = 50256

    def encode(self, text: str) -> list[int]:
        return [(b * 197) % 50256 for b in text.encode("utf-8")]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="teacher optimizer steps")
    parser.add_argument("--blocks", type=int, default=256, help="validation blocks compared")
    parser.add_argument("--context", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"start: {load()}")
    work = Path(tempfile.mkdtemp(prefix="lm-topk-"))
    docs = load_corpus()
    tok = ByteTokenizer()
    files = build_splits(docs, tok, work / "blocks", context=args.context, seed=0)
    print(f"corpus: {len(docs)} documents, {sum(map(len, docs)):,} characters; blocks "
          + ", ".join(f"{n} {f.num_blocks}" for n, f in files.items()))
    start = time.perf_counter()
    teacher = build_lm("transformer", {"n_layers": 4, "d_model": 128, "n_heads": 4}, vocab_size=257,
                       context=args.context, seed=0)
    history = train_lm(teacher, files, LMTrainConfig(alpha=1, lr=2e-3, batch_size=32, steps_per_epoch=args.steps // 2,
                                                     eval_blocks=512), epochs=2, device="cpu")
    student = build_lm("transformer", {"n_layers": 1, "d_model": 32, "n_heads": 2}, vocab_size=257,
                       context=args.context, seed=1)
    s_hist = train_lm(student, files, LMTrainConfig(alpha=1, lr=2e-3, batch_size=32, steps_per_epoch=50, eval_blocks=512),
                      epochs=1, device="cpu")
    print(f"teacher: {flops_per_token(teacher, args.context):,} FLOPs/token, val loss {history[-1]['val_loss']:.3f} nats "
          f"({min(h['val_loss'] for h in history):.3f} best); student {flops_per_token(student, args.context):,} "
          f"FLOPs/token, val loss {s_hist[-1]['val_loss']:.3f}; trained in {time.perf_counter() - start:.0f} s")

    val = files["val"]
    rows = np.concatenate([val.read_row_group(g) for g in range(val.num_row_groups)])[: args.blocks]
    inputs = torch.from_numpy(rows[:, :-1].astype(np.int64))
    with torch.no_grad():
        t_logits = teacher(inputs).double()
        s_logits = student(inputs).double()
    flat = t_logits.reshape(-1, 257)
    print(f"\nKD soft term T^2 D on {len(rows)} validation blocks ({flat.shape[0]:,} positions); {load()}")
    print("| divergence | k | T | dense | top-k | relative difference | L1 (teacher probs) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for divergence in DIVERGENCES:
        for k in (8, 16, 32, 64):
            values, ids, lse, mean = sparsify(flat, k)
            shape = t_logits.shape[:2]
            top = TopK(ids.view(*shape, k), values.view(*shape, k), lse.view(shape), mean.view(shape), 257)
            for temperature in (1.0, 2.0, 4.0):
                scale = temperature**2
                dense = scale * divergence_per_token(s_logits, t_logits, temperature=temperature,
                                                     divergence=divergence).mean().item()
                sparse = scale * divergence_per_token(s_logits, top, temperature=temperature,
                                                      divergence=divergence).mean().item()
                rebuilt = densify(values, ids, lse, mean, 257, temperature)
                l1 = (F.softmax(flat / temperature, -1) - F.softmax(rebuilt / temperature, -1)).abs().sum(-1).mean().item()
                print(f"| {divergence} | {k} | {temperature:g} | {dense:.4f} | {sparse:.4f} | "
                      f"{abs(sparse - dense) / dense:.2%} | {l1:.4f} |")

    print(f"\nCache bytes per token; {load()}")
    for layout, k in (("dense", None), ("topk", 32)):
        print(f"arithmetic (cache_bytes), V = 50,257, {layout}{f' k = {k}' if k else ''}: "
              f"{cache_bytes(1, 50257, layout=layout, k=k):,} bytes/token")
    text = "".join(c for c in docs[0] if c.isascii())[: 4 * (args.context + 1) - 1]  # + eos: exactly 4 blocks
    cut = write_blocks([text], SpreadTokenizer(), work / "spread.parquet", context=args.context)
    big = build_lm("transformer", {"n_layers": 1, "d_model": 32, "n_heads": 2}, vocab_size=50257, context=args.context, seed=0)
    for fmt in (TargetFormat("dense", 50257, args.context), TargetFormat("topk", 50257, args.context, 32)):
        path = work / f"v50257-{fmt.layout}.parquet"
        compute_targets(big, cut, path, fmt, batch_size=4)
        size = path.stat().st_size
        print(f"measured Parquet, random-init V = 50,257 model, {cut.num_tokens} tokens, {fmt.layout}: {size:,} bytes = "
              f"{size / cut.num_tokens:,.0f} bytes/token")
    for fmt in (TargetFormat("dense", 257, args.context), TargetFormat("topk", 257, args.context, 32)):
        path = work / f"v257-{fmt.layout}.parquet"
        compute_targets(teacher, files["val"], path, fmt)
        size = path.stat().st_size
        print(f"measured Parquet, trained byte teacher, val split {files['val'].num_tokens:,} tokens, {fmt.layout}: "
              f"{size:,} bytes = {size / files['val'].num_tokens:,.1f} bytes/token "
              f"(arithmetic {cache_bytes(1, 257, layout=fmt.layout, k=fmt.k):,})")
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
