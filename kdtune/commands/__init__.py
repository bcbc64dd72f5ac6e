"""One module per ``kdtune`` command (see :mod:`kdtune.cli`), and what they share: option types, the options of
``run`` and ``resume``, and their quiet libraries. A command never imports another command.

``float`` and ``int`` as argparse types let ``nan``, ``inf`` and ``-1`` through to places that hang or crash on
them (``--alpha nan`` trained a chance-level student, ``--threads -1`` was a traceback); these types refuse them
while the command line is parsed: one line, exit code 2, nothing started.
"""

from __future__ import annotations

import argparse
import logging
import math


def finite_float(text: str) -> float:
    """A float option: NaN and infinity are refused (argparse names the option in its one-line error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text[:40]!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text[:40]!r}")
    return value


def positive_int(text: str) -> int:
    """A count option (threads, concurrent trials): a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {value}")
    return value


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``resume``."""
    parser.add_argument("--address", default=None,
                        help="an existing Ray cluster (e.g. auto, or HOST:6379; default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--max-concurrent", type=positive_int, default=None,
                        help="trials at once (default: as many as the cluster's CPUs/GPUs hold)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress table")


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
    """Keep the output of ``run`` and ``resume`` to kdtune's own progress: Optuna's INFO line per study, Ray's
    start-up and bottleneck warnings (:data:`NOISE`) and W&B's console messages go, unless ``--debug`` (or ``-v``)
    asks for them."""
    import os

    import optuna

    if debug:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.getLogger("wandb").setLevel(logging.ERROR)
    for name, prefix in NOISE:
        logging.getLogger(name).addFilter(_DropMessages(prefix))
