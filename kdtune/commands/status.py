"""Show a study's progress from its folder: per condition, trials done / running / pruned / failed, the best
objective so far, and an estimate of the time left. Works while another process runs the study."""

from __future__ import annotations

import argparse
from pathlib import Path


HELP = "progress of a study (also while it runs elsewhere)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", help="the study folder (e.g. runs/quickstart)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import json

    from kdtune.status import from_files
    from kdtune.status import render

    summary = from_files(Path(args.study_dir))
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        from rich.console import Console

        Console(width=max(Console().width, 120)).print(render(summary))
        if summary["cut_short"]:
            print("the study was cut short by budget.max_wall_minutes")
    return 0
