"""Which teacher recipe, measured: each recipe option added one at a time, on a small, cheap setting.

Trains ``cnn_teacher`` on digits (1,437 images of 8x8, 10% symmetric label noise; 1,293 train + 144 validation,
360 clean test images) with each recipe below for a few seeds, and reads both checkpoint policies
(best validation accuracy, lowest validation loss) off the same runs' curves. Writes one CSV row per recipe,
selection policy and seed, and prints a Markdown table of the means with t-intervals over the seeds.

This is the measurement behind the recipe choices of ``search_spaces/mnist_strong_teacher.yaml``
(``docs/reproduction.md``, part 4); it takes a few CPU-minutes. Rows are appended to the CSV as each run ends,
so several processes can share the recipes (``--recipes``) and ``--table`` prints the table of a finished CSV.

    python experiments/teacher_recipes.py --seeds 0 1 2 --out docs/reproduction/teacher_recipes/digits.csv
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

from kdtune.analysis.scoring import t_estimate
from kdtune.cache.teacher import TeacherSpec
from kdtune.cache.teacher import train_teacher
from kdtune.tasks.datasets import load_dataset


BASE: dict[str, Any] = {"arch": "cnn_teacher", "epochs": 20, "lr": 3e-3, "batch_size": 32}
# Each cnn_teacher recipe adds one option to the one before it (the last two change the optimizer or the schedule).
RECIPES: dict[str, dict[str, Any]] = {
    "reference_student, original recipe (the student alone, for scale)": {"arch": "reference_student"},
    "reference_teacher, original recipe": {"arch": "reference_teacher"},
    "cnn_teacher, constant Adam (kdtune's original recipe)": {},
    "+ weight decay 0.01 (AdamW)": {"weight_decay": 0.01},
    "+ cosine, 1 warm-up epoch": {"weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 1},
    "+ shifts of 1 px": {"weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 1, "augment": {"shift": 1}},
    "+ rotations of 10 degrees": {"weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 1,
                                  "augment": {"shift": 1, "rotate": 10}},
    "SGD (momentum 0.9, lr 0.05, decay 5e-4), cosine, shifts": {
        "optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4, "schedule": "cosine", "warmup_epochs": 1,
        "augment": {"shift": 1}},
    "step schedule instead of cosine, shifts": {"weight_decay": 0.01, "schedule": "step", "warmup_epochs": 1,
                                                "augment": {"shift": 1}},
}


FIELDS = ("recipe", "select", "seed", "epoch", "test_accuracy", "val_accuracy", "val_loss", "seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--recipes", type=int, nargs="+", default=None, help="indices into RECIPES (default: all)")
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    parser.add_argument("--out", required=True, help="CSV to append to")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.table:
        data = load_dataset("digits", noise_level=args.noise, seed=0)
        names = list(RECIPES)
        for name in [names[i] for i in args.recipes] if args.recipes is not None else names:
            for seed in args.seeds:
                _run(name, seed, data, out)
    _table(out)


def _run(name: str, seed: int, data: Any, out: Path) -> None:
    start = time.perf_counter()
    teacher = train_teacher(TeacherSpec(**{**BASE, **RECIPES[name], "seed": seed, "select": "final"}), data)
    seconds = time.perf_counter() - start
    curve = teacher.curve
    by_acc = max(curve, key=lambda r: (r["val_accuracy"], -r["epoch"]))
    by_loss = min(curve, key=lambda r: (r["val_loss"], r["epoch"]))
    new = not out.exists()
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for select, row in (("best_val", by_acc), ("best_val_loss", by_loss), ("final", curve[-1])):
            writer.writerow({"recipe": name, "select": select, "seed": seed, "epoch": row["epoch"],
                             "test_accuracy": row["test_accuracy"], "val_accuracy": row["val_accuracy"],
                             "val_loss": row["val_loss"], "seconds": round(seconds, 2)})


def _table(out: Path) -> None:
    with out.open() as f:
        rows = list(csv.DictReader(f))
    print("| recipe | seeds | best val accuracy | lowest val loss | last epoch |")
    print("| --- | --- | --- | --- | --- |")
    for name in RECIPES:
        cells = []
        for select in ("best_val", "best_val_loss", "final"):
            values = [float(r["test_accuracy"]) for r in rows if r["recipe"] == name and r["select"] == select]
            est = t_estimate(values)
            if est["n"] == 0:
                cells.append("–")
            elif est["low"] is None:
                cells.append(f"{est['mean']:.3f}")
            else:
                cells.append(f"{est['mean']:.3f} ({est['low']:.3f}–{est['high']:.3f})")
        seeds = len({r["seed"] for r in rows if r["recipe"] == name})
        print(f"| {name} | {seeds} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
