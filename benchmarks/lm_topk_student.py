"""Students distilled from top-k token targets against the same students from dense ones, on paired seeds.

The KD-term error of top-k targets (``benchmarks/lm_topk_error.py``) says how far one loss value moves; this says
what a user sees: the student's validation and test loss. One byte-level teacher (the shipped spec's recipe:
TinyGPT 4 layers, d_model 128, lr 1e-3) is trained on the default corpus and its training-split targets are
written dense and top-k; then, for each student seed, the same student (1 layer, d_model 32) is trained from each
cache and without distillation (alpha = 1), same initialisation and batch order. Differences are paired by seed,
with 95% t-intervals over seeds (student-seed noise only: the teacher and the data are fixed).

    python benchmarks/lm_topk_student.py [--seeds 4] [--k 32 8] [--alpha 0.5] [--temperature 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from kdtune.analysis.scoring import t_estimate
from kdtune.tasks.language.blocks import build_splits
from kdtune.tasks.language.cache_codec import TargetFile
from kdtune.tasks.language.cache_codec import TargetFormat
from kdtune.tasks.language.corpus import load_corpus
from kdtune.tasks.language.models import build_lm
from kdtune.tasks.language.tokenizer import ByteTokenizer
from kdtune.tasks.language.train import LMTrainConfig
from kdtune.tasks.language.train import LMTrainer
from kdtune.tasks.language.train import compute_targets
from kdtune.tasks.language.train import train_lm


TEACHER = {"n_layers": 4, "d_model": 128, "n_heads": 4}
STUDENT = {"n_layers": 1, "d_model": 32, "n_heads": 2}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def student_run(blocks: dict, targets: TargetFile | None, *, seed: int, alpha: float, temperature: float, k: int | None,
                steps: int, epochs: int) -> dict[str, float]:
    """One student at its best validation epoch (the study's scoring): its validation and test loss."""
    model = build_lm("transformer", STUDENT, vocab_size=257, context=blocks["train"].context, seed=seed)
    config = LMTrainConfig(alpha=alpha, temperature=temperature, top_k=k, lr=3e-3, batch_size=32,
                           steps_per_epoch=steps, seed=seed)
    trainer = LMTrainer(model, blocks["train"], blocks["val"], blocks["test"], config, teacher=targets)
    history = [trainer.step() for _ in range(epochs)]
    best = min(history, key=lambda m: (m["val_loss"], history.index(m)))
    return {"val_loss": best["val_loss"], "test_loss": best["test_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--k", type=int, nargs="+", default=[32, 8])
    parser.add_argument("--alpha", type=float, default=0.5, help="weight on the true next tokens (1 = no distillation)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=250, help="optimizer steps per epoch")
    parser.add_argument("--teacher-epochs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4, help="student epochs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kdt-topk-") as work:
        blocks = build_splits(load_corpus(), ByteTokenizer(), Path(work) / "blocks", context=64, val_fraction=0.1,
                              test_fraction=0.1, seed=0)
        teacher = build_lm("transformer", TEACHER, vocab_size=257, context=64, seed=0)
        started = time.perf_counter()
        curve = train_lm(teacher, blocks, LMTrainConfig(lr=1e-3, batch_size=32, steps_per_epoch=args.steps, seed=0),
                         epochs=args.teacher_epochs)
        best = min(curve, key=lambda m: m["val_loss"])
        print(f"teacher: val loss {best['val_loss']:.4f}, test loss {best['test_loss']:.4f} nats/token "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        caches = {"dense": compute_targets(teacher, blocks["train"], Path(work) / "dense.parquet",
                                           TargetFormat("dense", 257, 64))}
        top = max(args.k)
        caches["topk"] = compute_targets(teacher, blocks["train"], Path(work) / f"top{top}.parquet",
                                         TargetFormat("topk", 257, 64, top))
        arms = {"alone": (None, 1.0, None), "dense": (caches["dense"], args.alpha, None)}
        arms.update({f"top{k}": (caches["topk"], args.alpha, k) for k in sorted(args.k, reverse=True)})
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
        for seed in range(args.seeds):
            for name, (targets, alpha, k) in arms.items():
                runs[name].append(student_run(blocks, targets, seed=seed, alpha=alpha, temperature=args.temperature,
                                              k=k, steps=args.steps, epochs=args.epochs))
            print(f"seed {seed}: " + ", ".join(f"{n} {r[-1]['test_loss']:.4f}" for n, r in runs.items()), flush=True)
    summary = {"teacher": {"val_loss": best["val_loss"], "test_loss": best["test_loss"]},
               "alpha": args.alpha, "temperature": args.temperature, "seeds": args.seeds, "load_end": load(),
               "arms": {n: {m: t_estimate(r[m] for r in rs) for m in ("val_loss", "test_loss")} for n, rs in runs.items()},
               "paired": {}}
    for name in runs:
        if name in ("alone", "dense"):
            continue
        for metric in ("val_loss", "test_loss"):
            diff = [a[metric] - d[metric] for a, d in zip(runs[name], runs["dense"])]
            summary["paired"][f"{name} - dense, {metric}"] = t_estimate(diff)
    for metric in ("val_loss", "test_loss"):
        gain = [a[metric] - d[metric] for a, d in zip(runs["alone"], runs["dense"])]
        summary["paired"][f"alone - dense, {metric}"] = t_estimate(gain)
    for label, est in summary["paired"].items():
        print(f"{label}: {est['mean']:+.4f} nats/token (95% CI {est['low']:+.4f} to {est['high']:+.4f}, "
              f"{est['n']} paired seeds)")
    print(f"end: {summary['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
