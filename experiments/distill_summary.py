"""Test errors of `kdtune distill --format json` runs: the teacher, the student alone and the distilled student.

Reads one JSON file per student seed (the same cached teacher in each), and writes a CSV with one row per model
and seed: clean test accuracy, test errors out of the test set's size, and a 95% Wilson interval for the errors
of that one run (the test set's sampling error: how far a run's count could move on another test set of the
same size), plus the validation accuracy the run was selected on. It prints a Markdown table with the mean
errors over the seeds beside each seed's count, and the paired gain of the distilled student over the student
alone (same seed: same initial weights and batches) in points of test accuracy, with a 95% t-interval over the
seeds and a paired t-test.

alpha is the weight on the true labels: alpha = 1 means no distillation.

    python experiments/distill_summary.py runs/hinton_distill_seed*.json --test-size 10000 \
        --out docs/reproduction/hinton_mnist/distill.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any


Z95 = 1.959963984540054


def wilson(errors: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for a proportion errors / n, as counts out of n."""
    p = errors / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return n * (centre - half), n * (centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="JSON outputs of kdtune distill --format json, one per seed")
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--out", required=True, help="CSV to write")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for i, path in enumerate(args.runs):
        run = json.loads(Path(path).read_text())
        for model in run["models"]:
            if model["alpha"] is None and i > 0:  # the teacher: one cached model, the same row in every run
                continue
            errors = round((1 - model["test_accuracy"]) * args.test_size)
            low, high = wilson(errors, args.test_size)
            rows.append({"run": Path(path).stem, "model": model["model"], "alpha": model["alpha"],
                         "temperature": model["temperature"], "epoch": model["epoch"],
                         "val_accuracy": model["val_accuracy"], "test_accuracy": model["test_accuracy"],
                         "test_errors": errors, "errors_low": round(low, 1), "errors_high": round(high, 1),
                         "teacher_key": run["cache"]["teacher_key"]})
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("| model | test errors per run (95% Wilson interval) | mean errors |")
    print("| --- | --- | --- |")
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        runs = "; ".join(f"{r['test_errors']} ({r['errors_low']:.0f}–{r['errors_high']:.0f})" for r in mine)
        print(f"| {name} | {runs} | {sum(r['test_errors'] for r in mine) / len(mine):.1f} |")
    gains = []
    for run in dict.fromkeys(r["run"] for r in rows):
        by_model = {r["model"].split(" (")[0]: r["test_accuracy"] for r in rows if r["run"] == run}
        if {"student, distilled", "student, no distillation"} <= set(by_model):
            gains.append(100 * (by_model["student, distilled"] - by_model["student, no distillation"]))
    if len(gains) >= 2:
        from scipy import stats

        mean, sd = sum(gains) / len(gains), stats.tstd(gains)
        half = stats.t.ppf(0.975, len(gains) - 1) * sd / math.sqrt(len(gains))
        p = stats.ttest_1samp(gains, 0.0).pvalue
        print(f"\npaired gain, distilled - alone: {mean:+.2f} points ({mean - half:+.2f} to {mean + half:+.2f}, "
              f"95% t-interval over {len(gains)} seeds), p = {p:.3f}; per seed: "
              + ", ".join(f"{g:+.2f}" for g in gains))


if __name__ == "__main__":
    main()
