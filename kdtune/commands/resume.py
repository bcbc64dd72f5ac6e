"""Continue a study after Ctrl-C, a crash or kill -9 of the driver.

Finished trials are not re-run, running ones continue from their last checkpoint, finished teachers come
from the cache, and no result row is written twice. The study's spec, storage and cache come from its folder,
which may have been moved or copied (a copy shares a storage outside the folder, such as PostgreSQL, with its
original: resume says so). One `kdtune run` or `resume` per folder at a time: a second is refused (exit 1).

--confirm-max-repeats N raises the study's confirmation budget (finished or not): conditions whose verdict was
inconclusive continue their confirmation on new seeds, as the same sequential design with the looks already
taken accounted for (docs/recommendation_schema.md). N is the planned budget.confirm_max_repeats plus a whole
number of rounds of budget.confirm_repeats.

examples:
  kdtune resume runs/mnist-noise
  kdtune resume runs/mnist-noise --confirm-max-repeats 32
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kdtune.commands import add_run_options
from kdtune.commands import positive_int


HELP = "continue an interrupted study, or an inconclusive confirmation with a larger budget"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", help="the study folder (e.g. runs/quickstart)")
    parser.add_argument("--confirm-max-repeats", type=positive_int, default=None, metavar="N",
                        help="raise budget.confirm_max_repeats to N: inconclusive conditions continue their "
                        "confirmation on new seeds, the looks already taken accounted for")
    add_run_options(parser)


def run(args: argparse.Namespace) -> int:
    import os

    from kdtune.analysis.recommendation_output import finish_run
    from kdtune.commands import quiet_libraries
    from kdtune.log_output import stamped_output
    from kdtune.study.driver import resume_study
    from kdtune.study.interrupts import catching_signals
    from kdtune.study.tracking import log_recommendation

    quiet_libraries(args.debug or args.verbose)
    with stamped_output(), catching_signals():  # a log (not a terminal): a time stamp on each line, 120 wide
        study_dir = resume_study(Path(args.study_dir).expanduser().absolute(),
                                 address=args.address or os.environ.get("RAY_ADDRESS"),
                                 max_concurrent=args.max_concurrent, progress=not args.no_progress,
                                 confirm_max_repeats=args.confirm_max_repeats)
        finish_run(study_dir)
        log_recommendation(study_dir)  # to W&B, one run per condition (nothing when tracking is off)
    return 0
