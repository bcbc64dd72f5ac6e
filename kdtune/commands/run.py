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
import logging
from pathlib import Path
from typing import Any

from kdtune.commands import positive_int


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


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``resume``."""
    parser.add_argument("--address", default=None,
                        help="an existing Ray cluster (e.g. auto, or HOST:6379; default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--max-concurrent", type=positive_int, default=None,
                        help="trials at once (default: as many as the cluster's CPUs/GPUs hold)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress table")


def run(args: argparse.Namespace) -> int:
    import json
    import os

    from kdtune.errors import SpecError
    from kdtune.spec.schema import load_spec
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study
    from kdtune.study.interrupts import catching_signals

    if args.out and "://" in args.out:
        raise SpecError("--out", args.out, "must be a local folder: the driver writes the study's results there "
                        "(put trial checkpoints on shared storage with --tune-storage s3://...)")
    wandb_project = [f"tracking.wandb.project={json.dumps(args.wandb_project)}"] if args.wandb_project else []
    spec = load_spec(args.spec, overrides=[*args.overrides, *wandb_project])
    # Absolute from the start: `kdtune resume` of the printed path works from any directory.
    out = (Path(args.out).expanduser() if args.out else Path("runs") / spec.name).absolute()
    options = RunOptions(out=out, storage=args.storage or os.environ.get("KDTUNE_STORAGE"),
                         address=args.address or os.environ.get("RAY_ADDRESS"), cache_dir=args.cache_dir,
                         tune_storage=args.tune_storage,
                         max_concurrent=args.max_concurrent, progress=not args.no_progress)
    quiet_libraries(args.debug or args.verbose)

    def announce() -> None:
        print(f"study folder: {out}", flush=True)
        print_estimate(spec, options)

    with catching_signals():
        return finish(run_study(spec, options, announce=announce))


def print_estimate(spec: Any, options: Any) -> None:
    """``kdtune plan``'s wall-time estimate, in one line, once the study's checks passed (a dead storage
    endpoint is refused before any step is timed), before Ray starts.

    The plan's worker start (a fresh Python importing torch and Ray Tune) is taken from this process's own
    imports of them, which the study needs anyway, instead of a separate process.
    """
    import time

    from kdtune.errors import KdtuneError
    from kdtune.errors import SpecError
    from kdtune.study.estimate import estimate_line
    from kdtune.study.estimate import make_plan

    start = time.perf_counter()
    import ray.tune  # noqa: F401 - timed: what each Ray worker pays
    import torch  # noqa: F401

    try:
        plan = make_plan(spec, cache_dir=options.cache_dir, max_concurrent=options.max_concurrent,
                         ray_running=options.address is not None, worker_start_s=time.perf_counter() - start)
    except SpecError as exc:
        if exc.field.endswith(".arch"):  # a model that fails in its timed training steps would fail every trial
            raise
        return  # no estimate (the study's checks passed: what the estimate could not do, the study may)
    except KdtuneError:
        return
    print(f"plan: {estimate_line(plan)}", flush=True)


def finish(study_dir: Path) -> int:
    """End a finished run (or resume) with the answer: the recommendation per condition as ``kdtune recommend``
    prints it, written to ``recommendation.json`` and marked in the Optuna studies; then the commands that show
    more. (An interrupted study never gets here: the driver raises :class:`kdtune.errors.Interrupted`.)"""
    from kdtune.analysis.recommendation import default_output
    from kdtune.analysis.recommendation import recommend
    from kdtune.analysis.recommendation import write_recommendation
    from kdtune.commands.recommend import print_recommendation
    from kdtune.records.dashboard import mark_recommendation

    report = recommend([study_dir])
    print_recommendation(report, write_recommendation(report, default_output([study_dir])))
    mark_recommendation(study_dir, report)  # for Optuna's dashboard
    print_next_steps(study_dir)
    return 0


#: (logger, start of message) of library warnings that say nothing a kdtune user can act on. Shown with --debug.
NOISE = (
    # Ray's default for a local cluster, printed at every start.
    ("ray._private.authentication.authentication_token_setup", "Token authentication is enabled for this Ray"),
    # Tune times every step of its event loop against a fixed 0.5 s; on a busy machine the driver's work
    # (Optuna's storage, Parquet parts, W&B) crosses it now and then, and nothing is wrong.
    ("ray.tune.utils.util", "The `"),
    ("ray.tune.execution.tune_controller", "Processing trial results took"),
)


class _DropMessages(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_libraries(debug: bool) -> None:
    """Keep the output to kdtune's own progress: Optuna's INFO line per study, Ray's start-up and bottleneck
    warnings (:data:`NOISE`) and W&B's console messages go, unless ``--debug`` (or ``-v``) asks for them."""
    import os

    import optuna

    if debug:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.getLogger("wandb").setLevel(logging.ERROR)
    for name, prefix in NOISE:
        logging.getLogger(name).addFilter(_DropMessages(prefix))


def print_next_steps(study_dir: Path) -> None:
    print(f"study folder: {study_dir}")
    print(f"  kdtune report {study_dir}      # HTML report with plots")
    print(f"  kdtune status {study_dir}      # trials per condition")
