"""Recommend alpha (and T) per condition from finished study folders, with intervals and a verdict.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 - alpha).

Selection uses the validation objective only (each run at its best validation epoch); test numbers are
reported, never optimised on. The recommended configuration is the verdict's (the confirmed one when it pays,
alpha = 1 when it hurts or gains nothing, the optimum of a surface fitted to the search without confirmation),
with the alphas that may be best. Verdicts come from confirmation runs only (the best distilled configuration and alpha = 1 on
fresh paired seeds): distil / hurts when the gain's repeated confidence interval excludes 0, no gain when it
lies inside +-margin (points of test accuracy, fixed when the study started; default 0.5; --margin with another
value still answers, each verdict marked "margin chosen after the study"), inconclusive otherwise (with how to
continue: kdtune resume DIR --confirm-max-repeats N), unconfirmed without confirmation runs. Intervals are
Bonferroni-adjusted over the conditions (family-wise 95%).

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


HELP = "optimal alpha (weight on the true labels; 1 = no distillation) and T per condition, with intervals"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dirs", nargs="+", metavar="DIR",
                        help="study folder(s), e.g. runs/mnist-noise; several are pooled per condition")
    parser.add_argument("--out", default=None, metavar="PATH",
                        help="where to write the JSON "
                        "(default: DIR/recommendation.json, in the first DIR when pooling)")
    parser.add_argument("--margin", type=float, default=None, metavar="POINTS",
                        help="equivalence margin in points of test accuracy: 'no gain' needs the gain's interval "
                        "inside +-POINTS (default: the one the study fixed when it started, its spec's "
                        "recommend.margin, else 0.5; another value marks each verdict 'margin chosen after the "
                        "study'; classification only)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="what to print: a table with verdicts, or the JSON itself "
                        "(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from kdtune.analysis.recommendation_output import print_recommendation
    from kdtune.analysis.recommendation_output import recommend_and_record
    from kdtune.records.folder import StudyFolder

    if args.out is not None:
        check_output_path("--out", args.out)
    report, path = recommend_and_record(args.study_dirs, margin=args.margin, out=args.out)
    folder = StudyFolder(args.study_dirs[0])
    if len(args.study_dirs) == 1 and folder.storage_is_shared():
        print(f"kdtune: marked the recommendation in the study's Optuna storage {folder.recorded_storage_url()}, "
              "which lies outside its folder (shared with any copy of the folder)", file=sys.stderr)
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
