"""The ``kdtune`` command line: parse, dispatch to one module per command, print errors as one line.

Command modules live in :mod:`kdtune.commands`; each defines ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` and imports torch, Ray or W&B only inside ``run`` so that ``kdtune --help`` stays fast.
A :class:`~kdtune.errors.KdtuneError` prints as ``kdtune: error: <one line>`` (one line per mistake when a
spec has several) and exits with its code (2 usage/spec, 1 runtime); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from kdtune._version import __version__
from kdtune.errors import Interrupted
from kdtune.errors import KdtuneError
from kdtune.errors import shorten


#: Longest error line printed (a 1 MB value in a spec must not become a 1 MB line).
MAX_LINE = 1000
COMMANDS = ("run", "resume", "status", "distill", "cache", "recommend", "report", "plan", "export")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kdtune",
        description="Hyperparameter studies for knowledge distillation. "
        "alpha is the weight on the true labels: alpha = 1 means no distillation "
        "(Hinton et al.'s lambda = 1 - alpha).",
    )
    parser.add_argument("--version", action="version", version=f"kdtune {__version__}")
    common = _Parser(add_help=False)  # parents of a _Parser's subcommands are _Parsers too (only its options are used)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"kdtune.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.__doc__, parents=[common],
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        _name_metavars(sub)
        sub.set_defaults(handler=module.run)
    return parser


#: What an option takes, by its destination, where its command did not say (argparse would print ``--out OUT``).
METAVARS = {"out": "DIR", "storage": "URL", "cache_dir": "DIR", "tune_storage": "URI", "address": "ADDRESS",
            "max_concurrent": "N", "cpus": "N", "threads": "N", "data_root": "DIR", "train_size": "N",
            "val_fraction": "FRACTION", "noise_level": "FRACTION", "data_seed": "N", "seed": "N",
            "teacher_seed": "N", "teacher_epochs": "N", "epochs": "N", "batch_size": "N", "spec": "SPEC",
            "entity": "NAME", "dataset": "NAME", "teacher": "ARCH", "student": "ARCH", "alpha": "ALPHA",
            "temperature": "T", "lr": "LR"}


def _name_metavars(parser: argparse.ArgumentParser) -> None:
    """Give options (also of nested actions, as in ``kdtune cache ls``) a metavar naming what they take."""
    for action in parser._actions:  # noqa: SLF001 - argparse has no public iterator over a parser's actions
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                _name_metavars(sub)
        elif action.option_strings and action.metavar is None and action.choices is None and action.nargs != 0:
            action.metavar = METAVARS.get(action.dest)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except KdtuneError as exc:
        if args.debug:
            raise
        label = "" if isinstance(exc, Interrupted) else "error: "
        for line in str(exc).splitlines() or [type(exc).__name__]:  # several mistakes: one line each
            # SpecError cuts the values it echoes; this also bounds paths and texts echoed by other errors
            print(f"kdtune: {label}{shorten(line, MAX_LINE)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kdtune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
