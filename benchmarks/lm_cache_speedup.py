"""What the token-level teacher cache buys: student tokens/s from cached top-k targets against the teacher run inline.

One process, one torch thread, the default corpus (``python-docs``) with the byte tokenizer. A TinyGPT teacher
with at least 10x the student's forward FLOPs per token (:func:`kdtune.tasks.language.models.flops_per_token`;
both figures are printed) writes its targets for the training blocks once, through the codec
(:func:`kdtune.tasks.language.train.compute_targets` into Parquet): top-k (``--top-k``, default 32) and, for a
third variant, dense (the byte vocabulary's 257 logits, 1,028 bytes a token). Then the same student (same seed,
so the same initial weights) trains ``--steps`` optimizer steps on the same batches (the block reader's seeded
order, epoch 0) with :class:`kdtune.tasks.language.train.LMTrainer`, once per variant:

* ``cached top-k``: a fresh :class:`TargetFile` per repeat, so each repeat reads and verifies its row groups from
  Parquet (plain reads of one row group at a time) and gathers each batch's targets by block index;
* ``cached dense``: the same with dense rows;
* ``inline``: the teacher's forward (``no_grad``) on every batch, then the same student step with dense logits.

The variants' order rotates every repeat so that drift in the machine's load hits each alike; the first repeat
of each is a warm-up and is not counted. A repeat's time is the trainer's epoch time less its evaluation (one
validation block, timed again on its own and taken off). Reported: tokens/s per variant, mean and 95% t-interval
over repeats, and the ratio of cached to inline per repeat with its interval; the cache's one-off cost (the
teacher's pass over the training blocks) and the steps after which it pays off. The teacher is random-init: its
speed, not its quality, is what is measured (a trained teacher of the same shape costs the same per token).

    python benchmarks/lm_cache_speedup.py                         # about 2 minutes on one idle core
    python benchmarks/lm_cache_speedup.py --repeats 9 --json out.json

The last line is the result: ``lm cache speedup: 3.1 [2.9, 3.3]x (cached top-32 60,757 tokens/s, inline 19,528 tokens/s; ...)``.
"""

from __future__ import annotations

import os


os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from kdtune.analysis.scoring import t_estimate  # noqa: E402
from kdtune.tasks.language.blocks import BlockFile  # noqa: E402
from kdtune.tasks.language.blocks import write_blocks  # noqa: E402
from kdtune.tasks.language.cache_codec import TargetFile  # noqa: E402
from kdtune.tasks.language.cache_codec import TargetFormat  # noqa: E402
from kdtune.tasks.language.corpus import default_corpus  # noqa: E402
from kdtune.tasks.language.models import build_lm  # noqa: E402
from kdtune.tasks.language.models import flops_per_token  # noqa: E402
from kdtune.tasks.language.tokenizer import ByteTokenizer  # noqa: E402
from kdtune.tasks.language.train import LMTrainConfig  # noqa: E402
from kdtune.tasks.language.train import LMTrainer  # noqa: E402
from kdtune.tasks.language.train import compute_targets  # noqa: E402
from kdtune.tasks.language.train import evaluate  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import load_average  # noqa: E402
from machine import with_interval  # noqa: E402


VOCAB = 257  # the byte tokenizer's


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    print(f"start: load average {load_average()} on {os.cpu_count()} cores")
    work = Path(args.work or tempfile.mkdtemp(prefix="kdtune-lm-speedup-"))
    try:
        _measure(work, args)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def _measure(work: Path, args: argparse.Namespace) -> None:
    train, val = _blocks(work, args)
    teacher = _model(args.teacher, args.context, seed=0)
    student_flops = flops_per_token(_model(args.student, args.context, seed=1), args.context)
    teacher_flops = flops_per_token(teacher, args.context)
    print(f"teacher {args.teacher}: {teacher_flops:,} FLOPs/token; student {args.student}: {student_flops:,} FLOPs/token; "
          f"ratio {teacher_flops / student_flops:.1f}x")
    if teacher_flops < 10 * student_flops:
        print("warning: the teacher has less than 10x the student's FLOPs per token; the issue's target assumes 10x")

    files: dict[str, Path] = {}
    build_s: dict[str, float] = {}
    for name, fmt in ((f"cached top-{args.top_k}", TargetFormat("topk", VOCAB, args.context, args.top_k)),
                      ("cached dense", TargetFormat("dense", VOCAB, args.context))):
        if name == "cached dense" and args.no_dense:
            continue
        files[name] = work / f"targets-{fmt.layout}.parquet"
        start = time.perf_counter()
        compute_targets(teacher, train, files[name], fmt, device="cpu")
        build_s[name] = time.perf_counter() - start
        print(f"{name}: {files[name].stat().st_size / train.num_tokens:,.1f} bytes/token on disk, written in "
              f"{build_s[name]:.1f} s (the teacher's pass over {train.num_tokens:,} training tokens)")

    names = [*files, "inline"]
    rates: dict[str, list[float]] = {name: [] for name in names}
    loads = []
    for repeat in range(args.repeats + 1):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        row = {}
        for name in order:
            source: TargetFile | nn.Module = teacher if name == "inline" else TargetFile(files[name])
            row[name] = _train(train, val, source, args)
        loads.append(load_average())
        if repeat == 0:
            print("warm-up: " + ", ".join(f"{n} {row[n]:,.0f}" for n in names) + " tokens/s (not counted)")
            continue
        for name in names:
            rates[name].append(row[name])
        print(f"repeat {repeat}: " + ", ".join(f"{n} {row[n]:,.0f}" for n in names) + f" tokens/s; load {loads[-1]}")

    estimates = {name: t_estimate(rates[name]) for name in names}
    ratios = {name: t_estimate([a / b for a, b in zip(rates[name], rates["inline"])]) for name in files}
    for name in names:
        print(f"{name}: {with_interval(estimates[name], '{:,.0f}')} tokens/s")
    tokens_per_step = args.batch_size * args.context
    for name in files:
        cached_s, inline_s = tokens_per_step / estimates[name]["mean"], tokens_per_step / estimates["inline"]["mean"]
        print(f"{name} vs inline: {with_interval(ratios[name], '{:.1f}')}x; the cache's one-off {build_s[name]:.1f} s pays off "
              f"after {build_s[name] / (inline_s - cached_s):,.0f} student steps of {tokens_per_step:,} tokens")
    end = load_average()
    print(f"end: load average {end}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "benchmark": "lm_cache_speedup", "args": vars(args), "teacher_flops_per_token": teacher_flops,
            "student_flops_per_token": student_flops, "train_tokens": train.num_tokens, "cache_build_s": build_s,
            "tokens_per_s": {n: {"values": rates[n], **estimates[n]} for n in names},
            "ratio_vs_inline": ratios, "load_average": {"start": loads[0], "per_repeat": loads[1:], "end": end},
        }, indent=2))
    top = f"cached top-{args.top_k}"
    print(f"lm cache speedup: {with_interval(ratios[top], '{:.1f}')}x ({top} {estimates[top]['mean']:,.0f} tokens/s, inline "
          f"{estimates['inline']['mean']:,.0f} tokens/s; teacher {teacher_flops / student_flops:.0f}x the student's "
          f"FLOPs/token; {args.repeats} repeats; load {end})")


def _blocks(work: Path, args: argparse.Namespace) -> tuple[BlockFile, BlockFile]:
    """Training blocks from a seeded sample of the default corpus's documents (about ``--blocks`` blocks, so the
    teacher's one pass stays short), and one document's blocks for the trainer's validation."""
    docs = default_corpus()
    order = np.random.default_rng(0).permutation(len(docs))
    want = args.blocks * (args.context + 1)
    chosen, total = [], 0
    for i in order[1:]:
        if total >= want:
            break
        chosen.append(docs[i])
        total += len(docs[i].encode("utf-8")) + 1
    tok = ByteTokenizer()
    train = write_blocks(chosen, tok, work / "train.parquet", context=args.context)
    val = write_blocks([docs[order[0]]], tok, work / "val.parquet", context=args.context)
    print(f"blocks: {train.num_blocks:,} training blocks of {args.context} tokens from {len(chosen)} documents")
    return train, val


def _model(shape: str, context: int, *, seed: int) -> nn.Module:
    layers, width, heads = (int(x) for x in shape.split("x"))
    return build_lm("transformer", {"n_layers": layers, "d_model": width, "n_heads": heads}, vocab_size=VOCAB,
                    context=context, seed=seed)


def _train(train: BlockFile, val: BlockFile, source: TargetFile | nn.Module, args: argparse.Namespace) -> float:
    """Student tokens/s over ``--steps`` steps from ``source`` (same seed, so same initial weights and batches)."""
    student = _model(args.student, args.context, seed=1)
    config = LMTrainConfig(alpha=args.alpha, temperature=args.temperature, batch_size=args.batch_size,
                           steps_per_epoch=args.steps, eval_blocks=1, seed=0)
    trainer = LMTrainer(student, train, val, None, config, teacher=source, device="cpu")
    seconds = trainer.step()["seconds"]
    start = time.perf_counter()
    evaluate(student, val, max_blocks=1, device="cpu")
    seconds -= time.perf_counter() - start
    return args.steps * args.batch_size * args.context / seconds


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="4x192x4", help="TinyGPT layers x d_model x heads")
    parser.add_argument("--student", default="2x64x2", help="TinyGPT layers x d_model x heads")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=1024, help="training blocks (the teacher's one pass)")
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--no-dense", action="store_true", help="leave out the dense-cache variant")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=24, help="student steps per variant and repeat")
    parser.add_argument("--repeats", type=int, default=7, help="counted repeats (one more is a warm-up)")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight on the true next tokens (1 = no distillation)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--work", default=None, help="folder for blocks and caches (default: a fresh temporary one)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return parser.parse_args()


if __name__ == "__main__":
    main()
