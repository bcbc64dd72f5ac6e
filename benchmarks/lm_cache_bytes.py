"""Cache bytes per token for a 50,257-id vocabulary (GPT-2's): dense rows against top-k (k = 32), by the codec's
arithmetic and by measured Parquet files.

1. :func:`kdtune.tasks.language.cache_codec.cache_bytes` for dense, top-k and the sampled layout (``--samples``
   draws; the block index and Parquet's own overhead are left out).
2. Files written by :class:`kdtune.tasks.language.cache_codec.TargetWriter` (zstd, byte-stream-split floats, as the
   cache writes them) for a small sample: ``--blocks`` blocks of ``--context`` positions of the default corpus's
   text, its UTF-8 bytes spread over the 50,257 ids, run through a random-init TinyGPT (1 layer, d_model 32) whose
   output layer has 50,257 rows. Two kinds of logits, because compression depends on them:

   * ``random-init``: the model's raw logits (nearly uniform: a standard deviation of about 0.1 per position, entropy at log V);
   * ``scaled``: the same logits standardised per position and multiplied by ``--scale`` (default 3), a spread
     closer to a trained LM's (the per-position entropy is printed); top-k ids and the tail follow from them.

   The top-k rows are what :func:`kdtune.tasks.image.views.sparsify` makes (the cache's own sparsifier). Each file
   is read back through :class:`TargetFile` (checksums and values verified) before it is counted.

    python benchmarks/lm_cache_bytes.py                    # about 10 s (the dense files are 65 MB)
    python benchmarks/lm_cache_bytes.py --blocks 8 --json out.json

The last line is the result: ``lm cache bytes: top-32 ... bytes/token against dense ... : ...x smaller``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdtune.tasks.image.views import sparsify
from kdtune.tasks.language.blocks import write_blocks
from kdtune.tasks.language.cache_codec import TargetFile
from kdtune.tasks.language.cache_codec import TargetFormat
from kdtune.tasks.language.cache_codec import TargetWriter
from kdtune.tasks.language.cache_codec import cache_bytes
from kdtune.tasks.language.corpus import default_corpus
from kdtune.tasks.language.models import build_lm


sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import load_average  # noqa: E402


VOCAB = 50257


@dataclass(frozen=True)
class SpreadTokenizer:
    """UTF-8 bytes spread over a 50,257-id vocabulary: only the vocabulary's size matters for the bytes."""

    name: str = "spread-50257"
    fingerprint: str = "spread-50257"
    vocab_size: int = VOCAB
    eos_id: int = VOCAB - 1

    def encode(self, text: str) -> list[int]:
        return [(b * 197) % (VOCAB - 1) for b in text.encode("utf-8")]


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    print(f"start: load average {load_average()}")
    with tempfile.TemporaryDirectory(prefix="kdtune-lm-bytes-") as work:
        _measure(Path(work), args)


def _measure(work: Path, args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"benchmark": "lm_cache_bytes", "args": vars(args), "vocab_size": VOCAB}

    arithmetic = {"dense": cache_bytes(1, VOCAB, layout="dense"),
                  f"top-{args.top_k}": cache_bytes(1, VOCAB, layout="topk", k=args.top_k),
                  f"sampled-{args.samples}": cache_bytes(1, VOCAB, layout="sampled", k=args.samples)}
    result["arithmetic_bytes_per_token"] = arithmetic
    for name, size in arithmetic.items():
        print(f"arithmetic (cache_bytes), V = {VOCAB:,}, {name}: {size:,} bytes/token = dense / "
              f"{arithmetic['dense'] / size:,.0f}")

    text = "".join(c for c in default_corpus()[0] if c.isascii())
    blocks = write_blocks([text[: args.blocks * (args.context + 1) - 1]], SpreadTokenizer(), work / "blocks.parquet",
                          context=args.context)  # + the end-of-document id: exactly --blocks blocks
    tokens = np.concatenate([blocks.read_row_group(g) for g in range(blocks.num_row_groups)])[:, :-1].astype(np.int64)
    model = build_lm("transformer", {"n_layers": 1, "d_model": 32, "n_heads": 2}, vocab_size=VOCAB, context=args.context,
                     seed=0).eval()
    with torch.no_grad():
        raw = model(torch.from_numpy(tokens)).float()
    standard = (raw - raw.mean(-1, keepdim=True)) / raw.std(-1, keepdim=True)
    positions = tokens.size
    measured: dict[str, dict[str, float]] = {}
    for kind, logits in (("random-init", raw), ("scaled", args.scale * standard)):
        entropy = -(logits.log_softmax(-1).exp() * logits.log_softmax(-1)).sum(-1).mean().item()
        spread = logits.std(-1).mean().item()
        sizes = {}
        for fmt in (TargetFormat("dense", VOCAB, args.context), TargetFormat("topk", VOCAB, args.context, args.top_k)):
            path = work / f"{kind}-{fmt.layout}.parquet"
            _write(path, fmt, logits)
            TargetFile(path).verify()
            sizes[fmt.layout] = path.stat().st_size / positions
        measured[kind] = {"dense": sizes["dense"], f"top-{args.top_k}": sizes["topk"], "ratio": sizes["dense"] / sizes["topk"],
                          "entropy_nats": entropy, "logit_std": spread}
        print(f"measured Parquet, {kind} logits (std {spread:.3f}, entropy {entropy:.2f} nats; log V = {np.log(VOCAB):.2f}), "
              f"{positions} positions: dense {sizes['dense']:,.0f} bytes/token, top-{args.top_k} {sizes['topk']:,.1f} "
              f"bytes/token, ratio {sizes['dense'] / sizes['topk']:,.0f}x")
    result["measured_bytes_per_token"] = measured
    result["positions"] = positions
    end = load_average()
    result["load_average"] = end
    print(f"end: load average {end}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    worst = min(m["ratio"] for m in measured.values())
    top = f"top-{args.top_k}"
    print(f"lm cache bytes: {top} {arithmetic[top]:,} bytes/token against dense {arithmetic['dense']:,} (arithmetic): "
          f"{arithmetic['dense'] / arithmetic[top]:,.0f}x smaller; measured Parquet "
          + ", ".join(f"{kind} {m['ratio']:,.0f}x" for kind, m in measured.items())
          + f" (smallest {worst:,.0f}x; target 100x)")


def _write(path: Path, fmt: TargetFormat, logits: torch.Tensor) -> None:
    """``logits`` (blocks, L, V) through the codec's writer, a block at a time, as the cache stores them."""
    with TargetWriter(path, fmt, {"benchmark": "lm_cache_bytes"}) as writer:
        for i, block in enumerate(logits):
            index = np.array([i])
            if fmt.layout == "dense":
                writer.add(index, logits=block.unsqueeze(0).numpy())
            else:
                values, ids, lse, mean = sparsify(block, int(fmt.k or 0))
                writer.add(index, ids=ids.numpy(), logits=values.numpy(), tail_lse=lse.numpy(), tail_mean=mean.numpy())


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=6, help="blocks in the measured sample")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--samples", type=int, default=32, help="draws per position of the sampled layout (arithmetic only)")
    parser.add_argument("--scale", type=float, default=3.0, help="per-position standard deviation of the scaled logits")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return parser.parse_args()


if __name__ == "__main__":
    main()
