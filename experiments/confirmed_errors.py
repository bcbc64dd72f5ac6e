"""Test errors of a study's confirmed arms, as `kdtune recommend` judged them: teacher, student alone, distilled.

Reads a study's ``recommendation.json`` (written by ``kdtune run`` / ``kdtune recommend``) and prints, per
condition, a Markdown table of test errors out of the test set's size:

* the teacher: its one cached checkpoint's test accuracy, with a 95% Wilson interval (the test set's sampling
  error for that one model);
* the student alone (alpha = 1) and the confirmed distilled configuration: the mean over their confirmation
  seeds with a 95% t-interval over those seeds (how far the mean could move with other seeds; the confirmation
  seeds are fresh, never seen by the search);
* the verdict and its gain: the repeated confidence interval of the paired gain that the verdict rests on.

alpha is the weight on the true labels: alpha = 1 means no distillation.

    python experiments/confirmed_errors.py runs/hinton-mnist/recommendation.json --test-size 10000
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


Z95 = 1.959963984540054


def wilson(errors: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for a count of errors out of ``n``, as counts."""
    p = errors / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    return n * (centre - half), n * (centre + half)


def arm_row(name: str, arm: dict[str, Any] | None, n: int) -> str:
    """A confirmed arm's mean test errors and the 95% t-interval of that mean (errors = n x (1 - accuracy))."""
    if not arm:
        return f"| {name} | no runs | | |"
    test = arm["test"]
    interval = "" if test["low"] is None else f"{n * (1 - test['high']):.0f}–{n * (1 - test['low']):.0f}"
    return f"| {name} | {n * (1 - test['mean']):.1f} | {interval} | {test['n']} ({arm['source']}) |"


def condition_table(entry: dict[str, Any], n: int) -> list[str]:
    teacher = entry.get("teacher") or {}
    lines = ["| model | test errors (mean) | 95% interval | seeds |", "| --- | --- | --- | --- |"]
    if teacher.get("test_accuracy") is not None:
        errors = round(n * (1 - teacher["test_accuracy"]))
        low, high = wilson(errors, n)
        lines.append(f"| teacher (one checkpoint; Wilson interval) | {errors} | {low:.0f}–{high:.0f} | – |")
    confirmed = entry.get("confirmed")
    params = (confirmed or {}).get("params") or {}
    label = ", ".join(f"{k} {params[k]:.3g}" for k in ("alpha", "temperature") if isinstance(params.get(k), float))
    lines.append(arm_row(f"student distilled ({label})", confirmed, n))
    lines.append(arm_row("student alone (alpha = 1)", entry.get("no_distillation"), n))
    gain = entry.get("gain") or {}
    verdict = entry.get("verdict") or {}
    if gain.get("mean") is not None:
        ci = "" if gain.get("low") is None else (
            f", {100 * gain.get('confidence', 0.95):.1f}% interval {100 * gain['low']:+.2f} to {100 * gain['high']:+.2f}")
        lines.append("")
        lines.append(f"verdict **{verdict.get('kind')}**: paired gain {100 * gain['mean']:+.2f} points of test accuracy"
                     f"{ci} over {gain.get('n_pairs')} paired seeds ({gain.get('source', 'confirm')} runs)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recommendation", type=Path, help="a study's recommendation.json")
    parser.add_argument("--test-size", type=int, default=10000, metavar="N", help="test images (default 10000)")
    args = parser.parse_args()
    data = json.loads(args.recommendation.read_text())
    for entry in data["conditions"]:
        print(f"### condition {entry.get('key')}\n")
        print("\n".join(condition_table(entry, args.test_size)) + "\n")


if __name__ == "__main__":
    main()
