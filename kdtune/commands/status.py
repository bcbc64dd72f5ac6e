"""Show a study's progress from its folder: per condition, trials done / running / pruned / failed, the best
objective so far, and an estimate of the time left. Works while another process runs the study."""

from __future__ import annotations

import argparse
from pathlib import Path


HELP = "progress of a study (also while it runs elsewhere)"
CSV_COLUMNS = ("condition", "budget", "done", "running", "pruned", "failed", "best", "teacher_test_accuracy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", help="the study folder (e.g. runs/quickstart)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="output format (csv: one line per condition; default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import json

    from kdtune.records.status import from_files
    from kdtune.records.status import render

    summary = from_files(Path(args.study_dir))
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    elif args.format == "csv":
        from kdtune.tables import write_csv

        write_csv([{**row, "teacher_test_accuracy": (row.get("teacher") or {}).get("test_accuracy")}
                   for row in summary["conditions"]], CSV_COLUMNS)
    else:
        from kdtune.tables import console

        console().print(render(summary))
        if summary["cut_short"]:
            print("the study was cut short by budget.max_wall_minutes")
    return 0
