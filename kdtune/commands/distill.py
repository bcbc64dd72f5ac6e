"""Train a teacher, then one student distilled from it and the same student without distillation.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 - alpha).
Both students share their seed (same initial weights, same batch order), so the comparison is paired.
Reported test numbers are at each model's best validation epoch (validation labels carry the same noise
as training labels, as they would for a user).

The teacher and its logits come from the teacher-logit cache (--cache-dir): a second run with the same
teacher options and data trains no teacher and runs no teacher forward pass.

Your own models, data and teacher (docs/byo.md): --teacher/--student take package.module:factory with
--teacher-kwargs/--student-kwargs; --dataset takes package.module:loader; --data-file takes .npz or Parquet
files; --teacher-checkpoint loads your teacher's weights (nothing is trained). Every model is checked on one
batch before anything trains.

examples:
  kdtune distill --dataset digits --noise 0.1 --alpha 0.5 --temperature 4 --epochs 20
  kdtune distill --data-file train.npz --teacher mypkg.models:big --teacher-checkpoint big.safetensors \\
      --student mypkg.models:small --student-kwargs '{width: 64}'
"""

from __future__ import annotations

import argparse
import json
import sys
from types import TracebackType
from typing import Any

from kdtune.commands import finite_float
from kdtune.commands import positive_int


HELP = "distil one student from one teacher and compare it with no distillation (alpha = 1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=None,
                      help="digits (bundled, no download), mnist, fashion_mnist, kmnist, package.module:loader, or "
                      "a label for --data-file (default: digits, or files with --data-file)")
    data.add_argument("--data-file", action="append", default=None, metavar="FILE", dest="data_files",
                      help="your data, .npz (x, y, optional x_test, y_test) or Parquet (columns x, y): the training "
                      "pool; give it twice for pool then test set")
    data.add_argument("--data-root", default=None,
                      help="folder with torchvision's layout, e.g. ROOT/MNIST/raw/*.gz "
                      "(default: $KDTUNE_DATA_ROOT, else ~/.cache/kdtune/datasets)")
    data.add_argument("--download", action="store_true", help="allow downloading missing dataset files")
    data.add_argument("--train-size", type=int, default=None,
                      help="images taken from the official training set, validation included (default: all)")
    data.add_argument("--val-fraction", type=finite_float, default=0.1,
                      help="share of those held out for validation, stratified (default: %(default)s)")
    data.add_argument("--noise", type=finite_float, default=0.0, dest="noise_level",
                      help="label-noise level: share of train/validation labels flipped, in [0, 1) (default: %(default)s)")
    data.add_argument("--noise-type", default="symmetric", choices=("symmetric", "pairflip"),
                      help="symmetric: to a uniformly random other class; pairflip: y -> y-1 (default: %(default)s)")
    data.add_argument("--data-seed", type=int, default=0, help="seed of subset, split and noise (default: %(default)s)")

    models = parser.add_argument_group("models")
    models.add_argument("--teacher", default="reference_teacher", help="teacher architecture (default: %(default)s)")
    models.add_argument("--student", default="reference_student", help="student architecture (default: %(default)s)")
    models.add_argument("--teacher-epochs", type=int, default=8, help="teacher training epochs (default: %(default)s)")
    models.add_argument("--teacher-select", default="best_val", choices=("best_val", "best_val_loss", "final"),
                        help="teacher checkpoint: best validation accuracy, lowest validation loss, or the last epoch "
                        "(default: %(default)s)")
    models.add_argument("--teacher-seed", type=int, default=0,
                        help="teacher initialisation and batch order (default: %(default)s)")
    models.add_argument("--teacher-kwargs", default=None, metavar="MAPPING",
                        help="keyword arguments of the teacher's factory, as YAML/JSON, e.g. '{widths: [512]}'")
    models.add_argument("--student-kwargs", default=None, metavar="MAPPING",
                        help="keyword arguments of the student's factory, as YAML/JSON")
    models.add_argument("--teacher-recipe", default=None, metavar="MAPPING",
                        help="the teacher's recipe, as YAML/JSON: lr, optimizer (adam | sgd), momentum, weight_decay, "
                        "schedule (constant | cosine | step), warmup_epochs, augment ({shift: 2, rotate: 10}), "
                        "ensemble (members); e.g. '{schedule: cosine, augment: {shift: 2}}'")
    models.add_argument("--student-recipe", default=None, metavar="MAPPING",
                        help="the students' recipe, as YAML/JSON: optimizer, momentum, weight_decay, schedule, "
                        "warmup_epochs")
    models.add_argument("--teacher-checkpoint", default=None, metavar="PATH",
                        help="load the teacher's weights (safetensors or a torch state dict; never a pickle) into "
                        "--teacher instead of training it")

    kd = parser.add_argument_group("distillation")
    kd.add_argument("--alpha", type=finite_float, default=0.1,
                    help="weight on the true labels, in [0, 1]; 1 = no distillation, 0 = teacher only "
                    "(default: %(default)s, the Keras tutorial's)")
    kd.add_argument("--temperature", type=finite_float, default=10.0, help="softmax temperature T > 0 (default: %(default)s)")

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=20, help="student training epochs (default: %(default)s)")
    training.add_argument("--batch-size", type=int, default=64, help="samples per step (default: %(default)s)")
    training.add_argument("--lr", type=finite_float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    training.add_argument("--seed", type=int, default=0,
                          help="student seed: initialisation and batch order (default: %(default)s)")
    training.add_argument("--student-augment", default=None, metavar="MAPPING",
                          help="train both students on augmented views, as YAML/JSON {shift: PIXELS, rotate: DEGREES}; "
                          "the teacher's logits are cached per view (docs/views.md)")
    training.add_argument("--views", type=int, default=None,
                          help="augmented views per training image with --student-augment (default: 4)")
    training.add_argument("--top-k", type=int, default=None,
                          help="store each view's top-k logits instead of all (many classes; default: all)")
    training.add_argument("--max-cache-bytes", type=int, default=None,
                          help="the most bytes the per-view logits may take (default: 4 GiB)")
    training.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: all cores)")
    training.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: %(default)s)")
    training.add_argument("--cache-dir", default=None,
                          help="teacher-logit cache: a folder or a pyarrow filesystem URI such as s3://bucket/prefix "
                          "(default: $KDTUNE_CACHE_DIR, else ~/.cache/kdtune/cache)")


_STUDENT_RECIPE = ("optimizer", "momentum", "weight_decay", "schedule", "warmup_epochs")
_TEACHER_RECIPE = ("lr", *_STUDENT_RECIPE, "augment", "ensemble")

# Core errors name spec fields; on this command the user typed flags.
_FLAGS = {"dataset.name": "--dataset", "dataset.train_size": "--train-size", "dataset.val_fraction": "--val-fraction",
          "dataset.files": "--data-file", "teacher.checkpoint": "--teacher-checkpoint",
          "student.arch": "--student", "student.arch kwargs": "--student-kwargs",
          "teacher.arch kwargs": "--teacher-kwargs",
          "noise_level": "--noise", "noise_type": "--noise-type", "teacher.arch": "--teacher",
          "teacher.select": "--teacher-select", "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
          "temperature": "--temperature", "alpha": "--alpha", "cache_dir": "--cache-dir",
          "student.augment": "--student-augment", "student.views": "--views", "cache.top_k": "--top-k",
          "cache.max_bytes": "--max-cache-bytes", "augment.shift": "--student-augment shift",
          "augment.rotate": "--student-augment rotate", "dataset.seed": "--data-seed",
          "student.augment.shift": "--student-augment shift", "student.augment.rotate": "--student-augment rotate",
          **{name: f"--student-recipe {name}" for name in _STUDENT_RECIPE},
          **{f"teacher.{name}": f"--teacher-recipe {name}" for name in _TEACHER_RECIPE}}


def run(args: argparse.Namespace) -> int:
    from kdtune.errors import SpecError

    try:
        return _distill(args)
    except SpecError as exc:
        if exc.field in _FLAGS:
            raise SpecError(_FLAGS[exc.field], exc.value, exc.allowed) from exc
        raise


def _distill(args: argparse.Namespace) -> int:
    """The flags as a teacher spec, a training config and views, checked before any data loads; then the
    paired run (:class:`kdtune.analysis.paired.PairedDistillation`) and its table."""
    import os

    from kdtune.analysis.paired import PairedDistillation
    from kdtune.cache import LogitCache
    from kdtune.cache.teacher import TeacherSpec
    from kdtune.core.distill import check_alpha
    from kdtune.core.train import TrainConfig
    from kdtune.errors import SpecError
    from kdtune.spec.sections import DEFAULT_CACHE_MAX_BYTES
    from kdtune.tasks.datasets import load_dataset

    # Validate every option before loading data or training anything.
    check_alpha(args.alpha, field="--alpha")
    teacher_kwargs = _mapping(args.teacher_kwargs, "--teacher-kwargs")
    student_kwargs = _mapping(args.student_kwargs, "--student-kwargs")
    teacher_recipe = _recipe(args.teacher_recipe, "--teacher-recipe", _TEACHER_RECIPE)
    student_recipe = _recipe(args.student_recipe, "--student-recipe", _STUDENT_RECIPE)
    files = [_absolute(f) for f in args.data_files] if args.data_files else None
    dataset = args.dataset or ("files" if files else "digits")
    checkpoint = _absolute(args.teacher_checkpoint) if args.teacher_checkpoint else None
    if args.teacher_epochs < 1:
        raise SpecError("--teacher-epochs", args.teacher_epochs, "must be a positive integer")
    student_config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, alpha=args.alpha,
                                 temperature=args.temperature, seed=args.seed, **student_recipe)
    teacher_recipe = _checked_as_in_a_spec(args, teacher_recipe)
    teacher_spec = TeacherSpec(**{"arch": args.teacher, "epochs": args.teacher_epochs, "lr": args.lr,
                                  "batch_size": args.batch_size, "seed": args.teacher_seed,
                                  "select": args.teacher_select, "kwargs": teacher_kwargs, "checkpoint": checkpoint,
                                  **teacher_recipe})
    view_spec = _view_spec(args)
    threads = args.threads or os.cpu_count() or 1
    cache = LogitCache(args.cache_dir)
    max_bytes = args.max_cache_bytes if args.max_cache_bytes is not None else DEFAULT_CACHE_MAX_BYTES

    data = load_dataset(dataset, data_root=args.data_root, download=args.download, train_size=args.train_size,
                        val_fraction=args.val_fraction, noise_level=args.noise_level, noise_type=args.noise_type,
                        seed=args.data_seed, files=files)
    pair = PairedDistillation(data, cache, teacher_spec, args.student, student_kwargs, student_config,
                              views=view_spec, top_k=args.top_k, max_bytes=max_bytes)
    with _Progress() as progress:
        result = pair.run(progress, threads=threads)
    if args.format == "json":
        json.dump({"teacher_diagnostics": result.diagnostics, "models": result.rows, "cache": result.cache},
                  sys.stdout, indent=2)
        print()
    else:
        _print_table(result.rows, data_name=dataset, noise=args.noise_level, diagnostics=result.diagnostics)
    return 0


def _view_spec(args: argparse.Namespace) -> Any:
    """The students' views (``--student-augment``, ``--views``), or None; ``--views`` / ``--top-k`` need them."""
    from kdtune.core.train import Augment
    from kdtune.errors import SpecError
    from kdtune.tasks.image.names import DEFAULT_VIEWS
    from kdtune.tasks.image.views import ViewSpec

    augment = _recipe(args.student_augment, "--student-augment", ("shift", "rotate"))
    if not augment:
        for flag, value in (("--views", args.views), ("--top-k", args.top_k)):
            if value is not None:
                raise SpecError(flag, value, "needs --student-augment (the per-view logits of augmented students)")
        return None
    if args.top_k is not None and args.top_k < 1:
        raise SpecError("--top-k", args.top_k, "must be a positive integer at most the class count")
    return ViewSpec(Augment(**augment), DEFAULT_VIEWS if args.views is None else args.views, args.data_seed)


def _checked_as_in_a_spec(args: argparse.Namespace, teacher_recipe: dict[str, Any]) -> dict[str, Any]:
    """The options a study spec also has, checked by the spec's own rules (types, bounds, finiteness: a string
    ``lr``, ``ensemble: two``, ``--data-seed -1`` and ``shift: 1.5`` are refused in one line each); returns the
    teacher recipe with the spec's typed values."""
    from kdtune.spec.schema import parse_spec

    augment = _recipe(args.student_augment, "--student-augment", ("shift", "rotate"))
    spec = parse_spec({"name": "distill", "dataset": {"name": "digits", "seed": args.data_seed},
                       "teacher": {"arch": args.teacher, "epochs": args.teacher_epochs, **teacher_recipe},
                       "student": {"arch": args.student, "epochs": args.epochs, "augment": augment},
                       "scheduler": {"type": "fifo"}, "tracking": "none"})
    return {name: getattr(spec.teacher, name) for name in teacher_recipe}


def _mapping(text: str | None, flag: str) -> dict[str, Any]:
    """A YAML/JSON mapping given on the command line (``{widths: [64]}``)."""
    import yaml

    from kdtune.errors import SpecError

    if text is None:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise SpecError(flag, text, "must be a YAML/JSON mapping, e.g. '{widths: [64]}'")
    return value


def _recipe(text: str | None, flag: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A recipe mapping with only the keys ``allowed`` (values are checked by TrainConfig / TeacherSpec)."""
    from kdtune.errors import SpecError

    recipe = _mapping(text, flag)
    for key in recipe:
        if key not in allowed:
            raise SpecError(f"{flag} {key}", recipe[key], f"is not a recipe field; allowed: {', '.join(allowed)}")
    return recipe


def _absolute(path: str) -> str:
    from pathlib import Path

    return path if "://" in path else str(Path(path).expanduser().absolute())


def _print_table(rows: list[dict[str, Any]], *, data_name: str, noise: float, diagnostics: dict[str, Any]) -> None:
    from rich.table import Table

    from kdtune.tables import console as make_console

    table = Table(title=f"{data_name}, {noise:.0%} label noise (alpha = weight on true labels; 1 = no distillation)",
                  caption="test accuracy on clean labels at each model's best validation epoch; "
                  "corrected / memorised: flipped training labels predicted as the clean / the noisy label")
    table.add_column("model", no_wrap=True)
    for header in ("alpha", "T", "epoch", "test acc", "val acc", "corrected", "memorised"):
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(row["model"], _num(row["alpha"]), _num(row["temperature"]), str(row["epoch"]),
                      *(_pct(row[k]) for k in ("test_accuracy", "val_accuracy", "correction_rate", "memorisation_rate")))
    console = make_console()
    console.print(table)
    entropy = ", ".join(f"T={float(t):g}: {v:.2f}" for t, v in sorted(diagnostics["entropy"].items(), key=lambda i: float(i[0])))
    console.print(f"teacher calibration error (ECE) {diagnostics['ece']:.3f}; soft-target entropy as a share of "
                  f"log K: {entropy} (near 1 the soft targets are almost uniform)")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


class _Progress:
    """One progress bar per trained model on stderr, with the latest validation accuracy."""

    def __enter__(self) -> _Progress:
        from rich.console import Console
        from rich.progress import BarColumn
        from rich.progress import MofNCompleteColumn
        from rich.progress import Progress
        from rich.progress import TextColumn
        from rich.progress import TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                  console=Console(stderr=True))
        self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._progress.__exit__(exc_type, exc, traceback)

    def tracker(self, name: str, epochs: int, *, lazy: bool = False) -> Any:
        """A per-epoch callback; with ``lazy`` its bar appears only once an epoch runs (a cached teacher has none)."""
        tasks = [] if lazy else [self._progress.add_task(name, total=epochs, status="")]

        def on_epoch(metrics: Any) -> None:
            if not tasks:
                tasks.append(self._progress.add_task(name, total=epochs, status=""))
            status = f"val {metrics.val_accuracy:.3f}"
            if metrics.test_accuracy == metrics.test_accuracy:  # NaN where the teacher's epoch was validated only
                status += f"  test {metrics.test_accuracy:.3f}"
            self._progress.update(tasks[0], completed=metrics.epoch, status=status)

        return on_epoch

    def note(self, text: str) -> None:
        """A line on stderr above the bars."""
        self._progress.console.print(text, highlight=False, soft_wrap=True)
