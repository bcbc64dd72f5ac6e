"""Continue a study after Ctrl-C, a crash or kill -9 of the driver.

Finished trials are not re-run, running ones continue from their last checkpoint, and no result row is
written twice. The study's spec, storage and cache come from its folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kdtune.commands.run import add_run_options


HELP = "continue an interrupted study"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", help="the study folder (e.g. runs/quickstart)")
    add_run_options(parser)


def run(args: argparse.Namespace) -> int:
    import os

    from kdtune.commands.run import finish
    from kdtune.commands.run import quiet_libraries
    from kdtune.study.driver import resume_study

    quiet_libraries(args.debug or args.verbose)
    study_dir = resume_study(Path(args.study_dir), address=args.address or os.environ.get("RAY_ADDRESS"),
                             max_concurrent=args.max_concurrent, progress=not args.no_progress)
    return finish(study_dir)
