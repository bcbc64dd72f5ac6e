"""Show a study's progress from its folder: per condition and phase (search, confirmation), trials ended of those
planned, how many are complete, pruned, failed and running, the best objective so far, and an estimate of the time
left. Works while another process runs the study. A finished study says so, and why it ran fewer trials than it
planned (confirmation stops once its verdict is clear)."""

from __future__ import annotations

import argparse
from pathlib import Path


HELP = "progress of a study (also while it runs elsewhere)"
CSV_COLUMNS = ("condition", "phase", "planned", "ended", "complete", "pruned", "failed", "running", "best",
               "teacher_test_accuracy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", help="the study folder (e.g. runs/quickstart)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="output format (csv: one line per condition and phase; default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import json

    from kdtune.records.status import from_files
    from kdtune.records.status import render

    summary = from_files(Path(args.study_dir))
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    elif args.format == "csv":
        from kdtune.tables import write_csv

        write_csv([{"condition": row["condition"], "phase": phase, **cells,
                    "teacher_test_accuracy": (row.get("teacher") or {}).get("test_accuracy")}
                   for row in summary["conditions"] for phase, cells in row["phases"].items()], CSV_COLUMNS)
    else:
        from kdtune.tables import console

        console().print(render(summary))
        for note in summary["notes"]:
            print(note)
    return 0
