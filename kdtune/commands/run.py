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

from kdtune.commands import positive_int


HELP = "run a study from a YAML spec (see search_spaces/README.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the study spec (YAML)")
    add_run_options(parser)
    parser.add_argument("--out", default=None, help="study folder (default: runs/<spec name>)")
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
    from kdtune.spec import load_spec
    from kdtune.study import RunOptions
    from kdtune.study import run_study

    if args.out and "://" in args.out:
        raise SpecError("--out", args.out, "must be a local folder: the driver writes the study's results there "
                        "(put trial checkpoints on shared storage with --tune-storage s3://...)")
    wandb_project = [f"tracking.wandb.project={json.dumps(args.wandb_project)}"] if args.wandb_project else []
    spec = load_spec(args.spec, overrides=[*args.overrides, *wandb_project])
    out = Path(args.out) if args.out else Path("runs") / spec.name
    options = RunOptions(out=out, storage=args.storage or os.environ.get("KDTUNE_STORAGE"),
                         address=args.address or os.environ.get("RAY_ADDRESS"), cache_dir=args.cache_dir,
                         tune_storage=args.tune_storage,
                         max_concurrent=args.max_concurrent, progress=not args.no_progress)
    quiet_libraries(args.verbose)
    study_dir = run_study(spec, options)
    print_next_steps(study_dir)
    return 0


def quiet_libraries(verbose: bool) -> None:
    """Optuna logs every study it creates at INFO; kdtune's own progress table says what matters."""
    import optuna

    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def print_next_steps(study_dir: Path) -> None:
    print(f"study folder: {study_dir}")
    print(f"  kdtune status {study_dir}      # progress and best objective per condition")
    print(f"  kdtune recommend {study_dir}   # optimal alpha and temperature per condition")
    print(f"  kdtune report {study_dir}      # HTML report with plots")
