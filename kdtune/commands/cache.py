"""Inspect and maintain the teacher-logit cache: list its entries, verify them, prune old ones, import logits.

The cache holds trained teachers (safetensors + JSON sidecar) and their logits (one Parquet file per split),
keyed by content; see the kdtune.cache package. Under lm/ the language task keeps its token blocks (lm-blocks),
trained teachers (lm-teacher) and their targets (lm-targets); ls, verify and prune cover them too (prune removes
a language teacher's targets with it). A damaged entry is never used: `kdtune distill` and studies rebuild it.
`verify` exits with 1 and lists the damaged entries when there are any, so it can gate a job. It checks each
file's checksums, that each split file holds its own split, and the rows and labels against the dataset where
that can be rebuilt here (language entries: every row group's checksum, finite targets with ids in range, the
teacher's weights against its teacher.json); it does not defend against someone who rewrites a file together
with its embedded checksum (docs/security.md).

examples:
  kdtune cache ls
  kdtune cache ls --cache-dir 's3://bucket/kdtune?region=eu-west-1' --format json
  kdtune cache verify
  kdtune cache prune --older-than 30
  kdtune cache import teacher_logits.npz --dataset digits --val-fraction 0.2

`import` stores a teacher's logits computed elsewhere (npz with arrays train, val, test of shape (rows,
classes); or Parquet with columns split and logits) for the dataset the data options produce (the same options
as the study: name or files, train size, validation fraction, data seed; label noise does not matter). It checks
rows, classes and finiteness, and prints the entry's key: use it in a study as `teacher.logits: KEY`.
See docs/byo.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kdtune.commands import finite_float


HELP = "list, verify, prune the teacher-logit cache (and the language task's entries); import precomputed teacher logits"

CACHE_DIR_HELP = ("cache root: a folder or a pyarrow filesystem URI such as s3://bucket/prefix "
                  "(default: $KDTUNE_CACHE_DIR, else $XDG_CACHE_HOME/kdtune/cache, i.e. ~/.cache/kdtune/cache)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", default=None, metavar="DIR", help=CACHE_DIR_HELP)
    # Also after the action (`kdtune cache ls --debug`); SUPPRESS keeps `kdtune cache --debug ls` working.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug messages")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", parents=[common], help="list the entries (kind, key, dataset, noise, teacher or "
                            "contents, accuracy, size, created)")
    ls.add_argument("--format", choices=("table", "json", "csv"), default="table",
                    help="output format (csv: one line per entry; default: %(default)s)")
    actions.add_parser("verify", parents=[common],
                       help="read every entry in full, check each split against its dataset where it can be "
                       "rebuilt here; exit code 1 and a list when any is damaged")
    prune = actions.add_parser("prune", parents=[common], help="remove entries created more than DAYS days ago")
    prune.add_argument("--older-than", type=finite_float, required=True, metavar="DAYS",
                       help="age in days (fractions allowed; 0 removes everything)")
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    imp = actions.add_parser("import", parents=[common], help="import precomputed teacher logits for a dataset "
                             "(npz: train, val, test arrays; Parquet: columns split, logits)")
    imp.add_argument("logits", metavar="LOGITS", help="the logits file (.npz or .parquet)")
    imp.add_argument("--spec", default=None, help="take the dataset options from this study spec's dataset section")
    imp.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
                     help="override a field of --spec (repeatable)")
    imp.add_argument("--dataset", default=None, help="digits, mnist, ..., package.module:loader, or a label with "
                     "--data-file (default: digits)")
    imp.add_argument("--data-file", action="append", default=None, metavar="FILE", dest="data_files",
                     help="your data (.npz or .parquet): the training pool, then optionally the test set")
    imp.add_argument("--data-root", default=None, help="folder with torchvision's layout (MNIST/raw/*.gz)")
    imp.add_argument("--download", action="store_true", help="allow downloading missing dataset files")
    imp.add_argument("--train-size", type=int, default=None, help="as dataset.train_size (default: all)")
    imp.add_argument("--val-fraction", type=finite_float, default=0.1, help="as dataset.val_fraction (default: %(default)s)")
    imp.add_argument("--data-seed", type=int, default=0, help="as dataset.seed (default: %(default)s)")
    imp.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                     help="stored precision (default: %(default)s)")
    imp.add_argument("--format", choices=("table", "json"), default="table",
                     help="output format (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from kdtune.cache import LogitCache
    from kdtune.errors import SpecError

    try:
        cache = LogitCache(args.cache_dir)
        if args.action == "ls":
            return _ls(cache, args.format)
        if args.action == "verify":
            return _verify(cache)
        if args.action == "import":
            return _import(cache, args)
        return _prune(cache, args.older_than, dry_run=args.dry_run)
    except SpecError as exc:  # core errors name API fields; here the user typed flags
        flags = {"cache_dir": "--cache-dir", "older_than_days": "--older-than", "dataset.name": "--dataset",
                 "dataset.train_size": "--train-size", "dataset.val_fraction": "--val-fraction",
                 "dataset.files": "--data-file", "dtype": "--dtype"}
        if args.action == "import" and args.spec:
            flags = {k: v for k, v in flags.items() if not k.startswith("dataset.")}
        raise SpecError(flags.get(exc.field, exc.field), exc.value, exc.allowed) from exc


def _ls(cache: Any, output: str) -> int:
    from dataclasses import asdict

    entries = cache.entries()
    if output == "json":
        json.dump([asdict(e) for e in entries], sys.stdout, indent=2)
        print()
    elif output == "csv":
        from dataclasses import fields

        from kdtune.tables import write_csv

        rows = [asdict(e) for e in entries]
        write_csv(rows, [f.name for f in fields(entries[0])] if entries else ["kind", "key"])
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


def _prune(cache: Any, days: float, *, dry_run: bool) -> int:
    removed = cache.prune(days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for entry in removed:
        print(f"{verb} {entry.kind} {entry.key} (created {entry.created or 'unknown'}, {_size(entry.size)})")
    if dry_run:
        print(f"{len(removed)} entries would be removed, {_size(sum(e.size for e in removed))} freed "
              "(dry run: nothing removed)")
    else:
        print(f"{len(removed)} entries removed, {_size(sum(e.size for e in removed))} freed")
    return 0


def _import(cache: Any, args: argparse.Namespace) -> int:
    from kdtune.tasks.datasets import load_dataset
    from kdtune.tasks.image.files import read_logits_file

    if args.spec:
        from kdtune.spec.schema import load_spec

        d = load_spec(args.spec, overrides=args.overrides).dataset
        options: dict[str, Any] = {"name": d.name, "files": d.files, "data_root": d.data_root, "download": d.download,
                   "train_size": d.train_size, "val_fraction": d.val_fraction, "seed": d.seed, "images": d.images()}
    else:
        files = [_absolute(f) for f in args.data_files] if args.data_files else None
        options = {"name": args.dataset or ("files" if files else "digits"), "files": files,
                   "data_root": args.data_root, "download": args.download, "train_size": args.train_size,
                   "val_fraction": args.val_fraction, "seed": args.data_seed}
    name = options.pop("name")
    data = load_dataset(name, **options)
    prepared = cache.import_logits(read_logits_file(args.logits), data, source=args.logits.rsplit("/", 1)[-1],
                                   dtype=args.dtype)
    record = {"key": prepared.key, "location": prepared.location, "dataset": data.description,
              "rows": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
              "num_classes": data.num_classes, "diagnostics": prepared.diagnostics}
    if args.format == "json":
        json.dump(record, sys.stdout, indent=2)
        print()
    else:
        d = prepared.diagnostics
        print(f"imported {args.logits} as {prepared.key} ({prepared.location})")
        print(f"  rows: train {len(data.train)}, val {len(data.val)}, test {len(data.test)}; "
              f"{data.num_classes} classes; teacher test accuracy {100 * d['test_accuracy']:.1f}%")
        print(f"  use it in a study spec:  teacher: {{logits: {prepared.key}}}")
    return 0


def _absolute(path: str) -> str:
    from pathlib import Path

    return path if "://" in path else str(Path(path).expanduser().absolute())


def _print_table(entries: list[Any], *, title: str) -> None:
    from rich.table import Table

    from kdtune.tables import console

    table = Table(title=title, caption="accuracy: the teacher's test accuracy on clean labels (a language model's: "
                  "next-token accuracy)")
    for header in ("kind", "key", "dataset", "noise", "teacher / contents", "accuracy", "dtype", "size", "created"):
        table.add_column(header, no_wrap=header in ("key", "created"),
                         justify="right" if header in ("accuracy", "size") else "left")
    for e in entries:
        contents = "; ".join(part for part in (e.teacher, e.detail) if part)
        table.add_row(e.kind, e.key, e.dataset or "-", e.noise or "-", e.problem or contents or "-",
                      "-" if e.accuracy is None else f"{100 * e.accuracy:.1f}%", e.dtype or "-", _size(e.size),
                      e.created or "-")
    console().print(table)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
