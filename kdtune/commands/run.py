"""Run a study: Ray Tune trains students, Optuna searches alpha and temperature inside each condition.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 - alpha).
Conditions (noise level, teacher quality, ...) are compared, never optimised; each gets its own Optuna study
and its own early stopping, plus the baselines alpha = 1 and alpha = 0.

examples:
  kdtune run search_spaces/quickstart.yaml
  kdtune run search_spaces/mnist_noise.yaml --set dataset.data_root=/data --set budget.repeats=3
  kdtune run search_spaces/mnist_noise.yaml --address auto --storage postgresql://user@db/kdtune \\
      --cache-dir s3://bucket/kdtune-cache
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kdtune.commands import add_run_options
from kdtune.commands import quiet_libraries


HELP = "run a study from a YAML spec (see search_spaces/README.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the study spec (YAML)")
    add_run_options(parser)
    parser.add_argument("--out", default=None, help="study folder (default: runs/<spec name> in this directory; "
                        "printed as an absolute path when the run starts)")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage URL, e.g. postgresql://user@host/db (default: SQLite in the study "
                        "folder; $KDTUNE_STORAGE if set)")
    parser.add_argument("--cache-dir", default=None,
                        help="teacher/logit cache: a folder or a URI such as s3://bucket/prefix "
                        "(default: $KDTUNE_CACHE_DIR, else ~/.cache/kdtune/cache)")
    parser.add_argument("--tune-storage", default=None,
                        help="where Ray Tune keeps trial checkpoints: must be shared (s3://..., or file:// on a "
                        "mount every node has) on a multi-node cluster (default: <study folder>/tune)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
                        help="override a spec field, value parsed as YAML (repeatable), e.g. budget.repeats=3")
    parser.add_argument("--wandb-project", default=None, metavar="NAME",
                        help="W&B project of the study's runs (same as --set tracking.wandb.project=NAME)")


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import time

    from kdtune.analysis.recommendation_output import finish_run
    from kdtune.errors import SpecError
    from kdtune.log_output import stamped_output
    from kdtune.spec.schema import load_spec
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study
    from kdtune.study.estimate import estimate_line
    from kdtune.study.interrupts import catching_signals
    from kdtune.study.tracking import log_recommendation

    if args.out and "://" in args.out:
        raise SpecError("--out", args.out, "must be a local folder: the driver writes the study's results there "
                        "(put trial checkpoints on shared storage with --tune-storage s3://...)")
    wandb_project = [f"tracking.wandb.project={json.dumps(args.wandb_project)}"] if args.wandb_project else []
    spec = load_spec(args.spec, overrides=[*args.overrides, *wandb_project])
    start = time.perf_counter()  # what every Ray worker pays on start: the plan's start-up estimate
    import ray.tune  # noqa: F401
    import torch  # noqa: F401

    imports_s = time.perf_counter() - start
    # Absolute from the start: `kdtune resume` of the printed path works from any directory.
    out = (Path(args.out).expanduser() if args.out else Path("runs") / spec.name).absolute()
    options = RunOptions(out=out, storage=args.storage or os.environ.get("KDTUNE_STORAGE"),
                         address=args.address or os.environ.get("RAY_ADDRESS"), cache_dir=args.cache_dir,
                         tune_storage=args.tune_storage,
                         max_concurrent=args.max_concurrent, progress=not args.no_progress, imports_s=imports_s)
    quiet_libraries(args.debug or args.verbose)

    def announce(plan: dict[str, Any] | None) -> None:
        print(f"study folder: {out}", flush=True)
        if plan is not None:
            print(f"plan: {estimate_line(plan)}", flush=True)
            if plan["total"].get("stages"):
                print(f"plan: {plan['total']['stages']}", flush=True)

    with stamped_output(), catching_signals():  # a log (not a terminal): a time stamp on each line, 120 wide
        study_dir = run_study(spec, options, announce=announce)
        finish_run(study_dir)
        log_recommendation(study_dir)  # to W&B, one run per condition (nothing when tracking is off)
    return 0
