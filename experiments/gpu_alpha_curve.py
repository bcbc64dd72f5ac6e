"""The seed study's long runs on one GPU: every alpha x seed trained for many epochs with kdtune's core.

A 2-core CPU affords about 180 student epochs per alpha in an hour (``search_spaces/seed_alpha_grid.yaml``);
the study's curves went to 1,000 epochs. This script runs the same experiment (same data draw, teacher recipe,
student seeds, loss and optimiser as the spec) on a GPU with the core alone (no Ray, Optuna or W&B), several
student processes at once, and writes one CSV row per alpha x seed x epoch. ``--summarise`` turns that CSV
into the table and plot of ``docs/reproduction.md``: test accuracy over seeds with 95% t-intervals, and the
shares of flipped training labels the student corrects / memorises, at chosen epochs and at each seed's best
validation epoch (``best_val``; epochs after the last chosen one are ignored).

alpha is the weight on the true labels: alpha = 1 means no distillation.

    python experiments/gpu_alpha_curve.py --data-root DIR --epochs 1000 --out curve.csv     # on a GPU machine
    python experiments/gpu_alpha_curve.py --summarise curve.csv --at 100,300,500,1000 --table t.csv --plot p.png
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any


FIELDS = ("alpha", "seed", "epoch", "train_loss", "val_accuracy", "test_accuracy", "test_loss", "correction_rate",
          "memorisation_rate", "teacher_agreement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", help="folder with MNIST/raw/*.gz")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--alphas", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0",
                        help="weights on the true labels (1 = no distillation)")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=10.0)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test")
    parser.add_argument("--processes", type=int, default=8, help="students trained at once on the GPU")
    parser.add_argument("--time-limit", type=float, default=float("inf"),
                        help="seconds; students still running then stop after their current epoch")
    parser.add_argument("--out", default="alpha_curve_gpu.csv")
    parser.add_argument("--summarise", metavar="CSV", help="summarise a finished CSV instead of training")
    parser.add_argument("--at", default="100,300,500,1000", help="epochs to tabulate (with --summarise)")
    parser.add_argument("--table", default="alpha_curve_gpu_table.csv")
    parser.add_argument("--plot", default="alpha_curve_gpu.png")
    args = parser.parse_args()
    if args.summarise:
        summarise(Path(args.summarise), [int(e) for e in args.at.split(",")], Path(args.table), Path(args.plot))
    elif not args.data_root:
        parser.error("--data-root is required to train")
    else:
        train(args)


def train(args: argparse.Namespace) -> None:
    import torch
    import torch.multiprocessing as mp

    from kdtune.cache.teacher import TeacherSpec
    from kdtune.cache.teacher import train_teacher
    from kdtune.tasks.datasets import load_dataset

    # The data and teacher of search_spaces/seed_alpha_grid.yaml.
    data = load_dataset("mnist", data_root=args.data_root, train_size=10_000, val_fraction=0.1, noise_level=0.05,
                        seed=0)
    start = time.perf_counter()
    teacher = train_teacher(TeacherSpec(epochs=args.teacher_epochs, select="best_val", seed=0), data, device=args.device)
    logits = teacher.logits(data)
    sel = teacher.selected
    print(f"teacher: epoch {teacher.selected_epoch} selected, val {sel['val_accuracy']:.4f}, "
          f"test {sel['test_accuracy']:.4f}, {time.perf_counter() - start:.0f} s", flush=True)

    jobs = [(float(a), seed) for a in args.alphas.split(",") for seed in range(args.seeds)]
    processes = min(args.processes, len(jobs))
    ctx = mp.get_context("spawn")
    rows = ctx.Queue()
    deadline = time.time() + args.time_limit
    # Each process trains its share of the students in lockstep, epoch by epoch, so that a time limit leaves
    # every student at about the same epoch.
    workers = [ctx.Process(target=_worker, args=(args, logits, jobs[i::processes], rows, deadline))
               for i in range(processes)]
    for w in workers:
        w.start()
    finished, started = 0, time.perf_counter()
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        while finished < len(workers):
            row = rows.get()
            if row is None:
                finished += 1
                continue
            writer.writerow(row)
            if row["epoch"] % 50 == 0:
                f.flush()
                print(f"alpha {row['alpha']} seed {row['seed']} epoch {row['epoch']}: test "
                      f"{row['test_accuracy']:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    for w in workers:
        w.join()
    print(f"students: {len(jobs)} x up to {args.epochs} epochs in {time.perf_counter() - started:.0f} s "
          f"on {torch.cuda.get_device_name(0) if args.device == 'cuda' else 'CPU'}, {processes} processes")


def _worker(args: argparse.Namespace, logits: Any, jobs: list[tuple[float, int]], rows: Any, deadline: float) -> None:
    from kdtune.core.train import TrainConfig
    from kdtune.core.train import Trainer
    from kdtune.tasks.datasets import load_dataset
    from kdtune.tasks.image.models import build_model

    data = load_dataset("mnist", data_root=args.data_root, train_size=10_000, val_fraction=0.1, noise_level=0.05,
                        seed=0)
    trainers = []
    for alpha, seed in jobs:
        model = build_model("reference_student", input_shape=data.input_shape, num_classes=10, seed=seed)
        config = TrainConfig(epochs=args.epochs, alpha=alpha, temperature=args.temperature, seed=seed)
        trainers.append((alpha, seed, Trainer(model, data, config, teacher=logits, device=args.device)))
    for _ in range(args.epochs):
        if time.time() >= deadline:
            break
        for alpha, seed, trainer in trainers:
            m = trainer.step()
            rows.put({"alpha": alpha, "seed": seed, **{k: getattr(m, k) for k in FIELDS[2:]}})
    rows.put(None)


def summarise(path: Path, epochs: list[int], table_path: Path, plot_path: Path) -> None:
    """Mean test accuracy over seeds per alpha at each of ``epochs``, with 95% t-intervals; and the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from kdtune.analysis.scoring import t_estimate

    with open(path) as f:
        rows = [{k: float(v) if v else float("nan") for k, v in r.items()} for r in csv.DictReader(f)]
    rows = [r for r in rows if r["epoch"] <= max(epochs)]
    alphas = sorted({r["alpha"] for r in rows})
    best: dict[tuple[float, float], dict[str, float]] = {}  # (alpha, seed) -> its best validation epoch's row
    for r in rows:
        key = (r["alpha"], r["seed"])
        if key not in best or r["val_accuracy"] > best[key]["val_accuracy"]:
            best[key] = r
    table = []
    for epoch in [*epochs, "best_val"]:
        for alpha in alphas:
            picked = ([b for (a, _), b in best.items() if a == alpha] if epoch == "best_val"
                      else [r for r in rows if r["alpha"] == alpha and r["epoch"] == epoch])
            e = t_estimate([r["test_accuracy"] for r in picked])
            if e["n"] < 2:
                continue
            table.append({"epoch": epoch, "alpha": alpha, "seeds": e["n"], "test_accuracy": round(e["mean"], 4),
                          "ci_low": round(e["low"], 4), "ci_high": round(e["high"], 4),
                          "correction_rate": round(float(np.mean([r["correction_rate"] for r in picked])), 4),
                          "memorisation_rate": round(float(np.mean([r["memorisation_rate"] for r in picked])), 4)})
    with open(table_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for epoch in epochs:
        part = [t for t in table if t["epoch"] == epoch]
        means = np.array([t["test_accuracy"] for t in part])
        ax.errorbar([t["alpha"] for t in part], means, yerr=[means - [t["ci_low"] for t in part],
                    [t["ci_high"] for t in part] - means], marker="o", capsize=3, label=f"epoch {epoch}")
    ax.set_xlabel("alpha (weight on the true labels; 1 = no distillation)")
    ax.set_ylabel("clean test accuracy (mean over seeds, 95% CI)")
    ax.set_title("Reference student on 10k MNIST, 5% label noise, T = 10")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot_path, dpi=120)
    for t in table:
        print(t)


if __name__ == "__main__":
    main()
