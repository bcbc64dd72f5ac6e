"""Recommend alpha (and T) per condition from finished study folders, with intervals and a verdict.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 - alpha).

Selection uses the validation objective only (each run at its best validation epoch); test numbers are
reported, never optimised on. The recommended alpha and T are the optimum of a surface fitted to the search,
with an interval. Verdicts come from confirmation runs only (the best distilled configuration and alpha = 1 on
fresh paired seeds): distil / hurts when the gain's repeated confidence interval excludes 0, no gain when it
lies inside +-margin (--margin, points of test accuracy; default 0.5), inconclusive otherwise, unconfirmed
without confirmation runs. Intervals are Bonferroni-adjusted over the conditions (family-wise 95%).

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
    parser.add_argument("--margin", type=float, default=None, metavar="POINTS",
                        help="equivalence margin in points of test accuracy: 'no gain' needs the gain's interval "
                        "inside +-POINTS (default: the spec's recommend.margin, else 0.5; classification only)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="what to print: a table with verdicts, or the JSON itself "
                        "(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from kdtune.analysis.recommendation import default_output
    from kdtune.analysis.recommendation import recommend
    from kdtune.analysis.recommendation import write_recommendation

    if args.out is not None:
        check_output_path("--out", args.out)
    report = recommend(args.study_dirs, margin=args.margin)
    path = write_recommendation(report, args.out or default_output(args.study_dirs))
    if len(args.study_dirs) == 1:
        from kdtune.records.dashboard import mark_recommendation
        from kdtune.records.folder import StudyFolder

        folder = StudyFolder(args.study_dirs[0])
        if folder.storage_is_shared():
            print(f"kdtune: marking the recommendation in the study's Optuna storage {folder.recorded_storage_url()}, "
                  "which lies outside its folder (shared with any copy of the folder)", file=sys.stderr)
        mark_recommendation(folder.path, report)  # for Optuna's dashboard
    if args.format == "json":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_recommendation(report, path)
    return 0


def check_output_path(flag: str, path: str) -> None:
    """A file to write: its folder exists and is a folder (checked before any work, one line)."""
    from pathlib import Path

    from kdtune.errors import SpecError

    target = Path(path).expanduser()
    if target.is_dir():
        raise SpecError(flag, path, "is a folder; must be a file path")
    parent = target.absolute().parent
    if not parent.is_dir():
        raise SpecError(flag, path, f"cannot be written: the folder {parent} does not exist")


def print_recommendation(report: dict[str, Any], path: Any) -> None:
    """The table and per-condition verdicts as ``kdtune recommend`` prints them (also the end of ``kdtune run``)."""
    from rich.markup import escape

    from kdtune.tables import console as make_console

    console = make_console()
    table = _table(report)
    names = [c["key"] for c in report["conditions"]]
    table.columns[0].no_wrap, table.columns[0].min_width = True, max(len(n) for n in ["condition", *names])
    console.print(table)
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
        caption=f"alpha, T: fitted optimum on {report['objective']} (validation) with its interval; {test}: of "
        "the confirmed configuration and of alpha = 1 on their confirmation seeds (95% t-intervals); gain: "
        "confirmed - no distillation, paired by seed, repeated CI (Bonferroni over conditions)",
    )
    for header in ("condition", "alpha", "T", "near-opt alpha", test, "alpha = 1",
                   "α*" if linear else "teacher", "gain", "seeds", "verdict"):
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
    shown = c["confirmed"] or c["best_observed"] or {}
    return [
        c["key"],
        _interval(rec.get("alpha"), _num),
        _interval(rec.get("temperature"), _num),
        "-" if near is None else f"{_num(near['alpha_low'])}-{_num(near['alpha_high'])}",
        _estimate(shown.get("test"), value),
        _estimate((c["no_distillation"] or {}).get("test"), value),
        last,
        _gain(gain, linear),
        str(gain.get("n_pairs", "-")) + ("" if gain.get("source") != "search" else " (search)"),
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
