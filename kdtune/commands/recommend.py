"""Recommend alpha (and T) per condition from finished study folders, with intervals and a verdict.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 - alpha).

Selection uses the validation objective only (each run at its best validation epoch); test numbers are
reported, never optimised on. Intervals: a percentile bootstrap over the paired seeds for alpha and T, a
t-interval for test accuracy, and the paired gain over no distillation (alpha = 1) with a paired t-test.
With confirmation runs (budget.confirm_top_k) the choice is made among the confirmed configurations and
their reported numbers come from the confirmation runs (fresh seeds, free of the search's selection bias).

Several folders of the same experiment (same dataset, teacher, student and search sections, same conditions;
budget and dataset.data_root may differ) are pooled per condition; their seeds count as separate runs.
The result is written to DIR/recommendation.json (the first DIR when pooling) or to --out
(schema: docs/recommendation_schema.md).

examples:
  kdtune recommend runs/mnist-noise
  kdtune recommend runs/mnist-noise runs/mnist-noise-more-seeds --out pooled.json --format json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


HELP = "optimal alpha (weight on the true labels; 1 = no distillation) and T per condition, with intervals"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dirs", nargs="+", metavar="DIR",
                        help="study folder(s), e.g. runs/mnist-noise; several are pooled per condition")
    parser.add_argument("--out", default=None, metavar="PATH",
                        help="where to write the JSON "
                        "(default: DIR/recommendation.json, in the first DIR when pooling)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="what to print: a table with verdicts, or the JSON itself "
                        "(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from kdtune.recommend import default_output
    from kdtune.recommend import recommend
    from kdtune.recommend import write_recommendation

    report = recommend(args.study_dirs)
    path = write_recommendation(report, args.out or default_output(args.study_dirs))
    if args.format == "json":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print(report, path)
    return 0


def _print(report: dict[str, Any], path: Any) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(width=max(Console().width, 140))
    console.print(_table(report))
    for condition in report["conditions"]:
        console.print(f"[bold]{escape(condition['key'])}[/bold] ({condition['verdict']['kind']}): "
                      f"{escape(condition['verdict']['text'])}")
        for note in condition["notes"]:
            console.print(f"  note: {escape(note)}")
    for note in report["notes"]:
        console.print(f"note: {escape(note)}")
    console.print(f"written to {escape(str(path))}")


def _table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    linear = report["test_metric"] != "test_accuracy"
    test = "test excess MSE" if linear else "test acc"
    table = Table(
        title="recommendation per condition (alpha = weight on the true labels; 1 = no distillation)",
        caption=f"selected on {report['objective']} (validation); {test} reported at each run's best "
        "validation epoch with 95% intervals; gain = best distilled - no distillation, paired by seed",
    )
    for header in ("condition", "alpha", "T", "near-opt", test, "alpha = 1", "alpha = 0",
                   "α*" if linear else "teacher", "gain", "p", "verdict"):
        table.add_column(header, justify="left" if header in ("condition", "verdict") else "right")
    for c in report["conditions"]:
        table.add_row(*_row(c, linear))
    return table


def _row(c: dict[str, Any], linear: bool) -> list[str]:
    rec = c["recommended"] or {}
    value = _mse if linear else _pct
    gain = c["gain"] or {}
    teacher = (c["teacher"] or {}).get("test_accuracy")
    last = _num((c["closed_form"] or {}).get("alpha_star")) if linear else value(teacher)
    near = rec.get("near_optimal")
    return [
        c["key"],
        _interval(rec.get("alpha"), _num),
        _interval(rec.get("temperature"), _num),
        "-" if near is None else f"{near['size']}/{near['configurations']}",
        _estimate(rec.get("test"), value),
        _estimate((c["no_distillation"] or {}).get("test"), value),
        _estimate((c["pure_distillation"] or {}).get("test"), value),
        last,
        _gain(gain, linear),
        "-" if gain.get("p_value") is None else f"{gain['p_value']:.2g}",
        c["verdict"]["kind"],
    ]


def _gain(gain: dict[str, Any], linear: bool) -> str:
    """Mean and 95% CI, in points of accuracy (or MSE reduction for the linear task)."""
    if gain.get("mean") is None:
        return "-"
    if gain["low"] is None:
        return _signed(gain["mean"], linear)
    low, high = _signed(gain["low"], linear), _signed(gain["high"], linear)
    return f"{_signed(gain['mean'], linear)} ({low} to {high})"


def _interval(block: dict[str, Any] | None, fmt: Callable[[float | None], str]) -> str:
    if block is None:
        return "-"
    if block["low"] is None:
        return fmt(block["value"])
    return f"{fmt(block['value'])} ({fmt(block['low'])}-{fmt(block['high'])})"


def _estimate(block: dict[str, Any] | None, fmt: Callable[[float | None], str]) -> str:
    if block is None or block["mean"] is None:
        return "-"
    if block["low"] is None:
        return fmt(block["mean"])
    return f"{fmt(block['mean'])} ({fmt(block['low'])}-{fmt(block['high'])})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _mse(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _signed(value: float, linear: bool) -> str:
    return f"{value:+.4f}" if linear else f"{100 * value:+.1f}"
