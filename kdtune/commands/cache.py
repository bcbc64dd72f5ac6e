"""Inspect and maintain the teacher-logit cache: list its entries, verify them, prune old ones.

The cache holds trained teachers (safetensors + JSON sidecar) and their logits (one Parquet file per split),
keyed by content; see kdtune/cache.py. A damaged entry is never used: `kdtune distill` and studies rebuild
it. `verify` exits with 1 and lists the damaged entries when there are any, so it can gate a job.

examples:
  kdtune cache ls
  kdtune cache ls --cache-dir 's3://bucket/kdtune?region=eu-west-1' --format json
  kdtune cache verify
  kdtune cache prune --older-than 30
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


HELP = "list, verify and prune the teacher-logit cache"

CACHE_DIR_HELP = ("cache root: a folder or a pyarrow filesystem URI such as s3://bucket/prefix "
                  "(default: $KDTUNE_CACHE_DIR, else $XDG_CACHE_HOME/kdtune/cache, i.e. ~/.cache/kdtune/cache)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", default=None, help=CACHE_DIR_HELP)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", parents=[common], help="list the entries (key, dataset, noise, teacher, accuracy, "
                            "size, created)")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: %(default)s)")
    actions.add_parser("verify", parents=[common],
                       help="read every entry in full; exit code 1 and a list when any is damaged")
    prune = actions.add_parser("prune", parents=[common], help="remove entries created more than DAYS days ago")
    prune.add_argument("--older-than", type=float, required=True, metavar="DAYS",
                       help="age in days (fractions allowed; 0 removes everything)")


def run(args: argparse.Namespace) -> int:
    from kdtune.cache import LogitCache
    from kdtune.errors import SpecError

    try:
        cache = LogitCache(args.cache_dir)
        if args.action == "ls":
            return _ls(cache, args.format)
        if args.action == "verify":
            return _verify(cache)
        return _prune(cache, args.older_than)
    except SpecError as exc:  # core errors name API fields; here the user typed flags
        flags = {"cache_dir": "--cache-dir", "older_than_days": "--older-than"}
        raise SpecError(flags.get(exc.field, exc.field), exc.value, exc.allowed) from exc


def _ls(cache: Any, output: str) -> int:
    from dataclasses import asdict

    entries = cache.entries()
    if output == "json":
        json.dump([asdict(e) for e in entries], sys.stdout, indent=2)
        print()
    else:
        _print_table(entries, title=f"{len(entries)} entries in {cache.location}")
    return 0


def _verify(cache: Any) -> int:
    damaged = cache.verify()
    if not damaged:
        print(f"all {len(cache.entries())} entries in {cache.location} are intact")
        return 0
    for entry in damaged:
        print(f"damaged {entry.kind} {entry.key}: {entry.problem}")
    print(f"{len(damaged)} damaged entries in {cache.location} (they are rebuilt when next needed, "
          "or remove them with 'kdtune cache prune')", file=sys.stderr)
    return 1


def _prune(cache: Any, days: float) -> int:
    removed = cache.prune(days)
    for entry in removed:
        print(f"removed {entry.kind} {entry.key} (created {entry.created or 'unknown'}, {_size(entry.size)})")
    print(f"{len(removed)} entries removed, {_size(sum(e.size for e in removed))} freed")
    return 0


def _print_table(entries: list[Any], *, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption="accuracy: the teacher's test accuracy on clean labels")
    for header in ("kind", "key", "dataset", "noise", "teacher", "accuracy", "dtype", "size", "created"):
        table.add_column(header, no_wrap=header in ("key", "teacher", "created"),
                         justify="right" if header in ("accuracy", "size") else "left")
    for e in entries:
        table.add_row(e.kind, e.key, e.dataset or "-", e.noise or "-", e.problem or e.teacher or "-",
                      "-" if e.accuracy is None else f"{100 * e.accuracy:.1f}%", e.dtype or "-", _size(e.size),
                      e.created or "-")
    Console(width=max(Console().width, 160)).print(table)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
