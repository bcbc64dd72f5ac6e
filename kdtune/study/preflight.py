"""Everything about a study that can be checked without training, checked before Ray starts or anything is written.

A mistake found after Ray has started costs seconds of start-up and, worse, used to leave a half-written study
folder that blocked the corrected command. So ``kdtune run`` checks, in one pass that reports every mistake it
finds (one line each, exit code 2):

* the inputs (:func:`check_inputs`, also what ``kdtune plan`` runs): datasets and their options, local data
  files and teacher checkpoints readable, built-in image datasets present under their data root, and every
  architecture (teacher and student, per condition) imported, built with its kwargs and run on one batch of a
  few samples of the dataset's shape. Import paths run the user's code here (``docs/security.md``). With
  student views (``student.augment``) each dataset is loaded and its per-view logits checked: image inputs,
  ``cache.top_k`` at most the class count, the size within ``cache.max_bytes`` (:func:`kdtune.tasks.image.views.check_views`);
* where the study goes (:func:`check_locations`): ``--out`` a folder that can be created, the cache and Tune's
  storage parsed and, for URIs, reachable and writable within :data:`PROBE_TIMEOUT_S`, the Optuna storage
  parsed and (for a server) reachable. Messages show URIs with their secrets redacted.

What needs Ray (a trial's CPUs and GPUs against the cluster's nodes) is checked right after Ray starts, still
before the study folder exists (``kdtune.study.driver``).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from kdtune.errors import DataError
from kdtune.errors import SpecError
from kdtune.errors import SpecErrors
from kdtune.errors import UsageError
from kdtune.errors import one_line
from kdtune.errors import raise_all


if TYPE_CHECKING:
    from kdtune.core.data import DataBundle
    from kdtune.spec.conditions import Condition
    from kdtune.spec.schema import StudySpec
    from kdtune.tasks.base import Task
    from kdtune.tasks.image.views import ViewSpec


#: Seconds a storage endpoint (S3, PostgreSQL) gets to answer the checks before a study starts.
PROBE_TIMEOUT_S = 10.0
#: Input shape and classes of the built-in image datasets, for checking models without loading the images.
_IMAGE_SHAPE = ((1, 28, 28), 10)


@dataclass(frozen=True)
class CheckedInputs:
    """What :func:`check_inputs` found, for the start-of-run estimate to reuse instead of checking again: the
    spec's conditions and task, and the datasets the checks loaded for real, by (dataset, noise level, noise
    type), with the seconds each load took."""

    spec: StudySpec
    conditions: list[Condition]
    task: Task
    loaded: dict[tuple[str, float, str], tuple[DataBundle, float]] = field(default_factory=dict)
    # kdtune plan: a dataset missing on this machine whose shape is known is planned on stand-in images
    # (kdtune.tasks.image.standin) instead of refused; `missing` holds why its data did not load, by the same key.
    stand_in: bool = False
    missing: dict[tuple[str, float, str], str] = field(default_factory=dict)


class Findings:
    """The mistakes of one pass of checks: each check runs whatever the others found, and they are raised
    together at the end (one line each, the same mistake found for several conditions once)."""

    def __init__(self) -> None:
        self.errors: list[UsageError] = []

    def check(self, check: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """``check(*args, **kwargs)``; its mistakes are kept. True when it found none."""
        try:
            check(*args, **kwargs)
        except UsageError as exc:
            self.add(exc)
            return False
        return True

    def add(self, exc: UsageError) -> None:
        self.errors.extend(exc.errors if isinstance(exc, SpecErrors) else [exc])

    def raise_all(self) -> None:
        seen: dict[str, UsageError] = {}
        for e in self.errors:
            seen.setdefault(str(e), e)
        raise_all(list(seen.values()))


def check_study(spec: StudySpec, conditions: list[Condition], *, out: Path, storage: str | None,
                cache_dir: str | None, tune_storage: str | None) -> CheckedInputs:
    """Every check of the module docstring; raises one :class:`SpecError` or :class:`SpecErrors` for several.
    Returns what the input checks found (:class:`CheckedInputs`)."""
    found = Findings()
    checked = None
    try:
        checked = check_inputs(spec, conditions)
    except UsageError as exc:
        found.add(exc)
    found.check(check_folder, "--out", out)
    found.check(check_location, "--cache-dir", cache_dir)
    found.check(check_location, "--tune-storage", tune_storage)
    if storage is not None:
        found.check(check_optuna_storage, storage)
    found.raise_all()
    assert checked is not None  # else its mistakes were raised
    return checked


def check_inputs(spec: StudySpec, conditions: list[Condition], *, stand_in: bool = False) -> CheckedInputs:
    """Datasets, files, data roots and models of every condition (see the module docstring). With ``stand_in``
    (``kdtune plan``), a well-known dataset that is missing here is checked and planned on stand-in images of its
    shape (:attr:`CheckedInputs.missing` says why), not refused."""
    from kdtune.spec.rules import check_confirmation_budget
    from kdtune.tasks import task_for
    from kdtune.tasks.datasets import check_data_args
    from kdtune.tasks.image.datasets import check_data_root
    from kdtune.tasks.image.names import IMAGE_DATASETS
    from kdtune.tasks.image.standin import has_stand_in

    task = task_for(spec)
    checked = CheckedInputs(spec, conditions, task, stand_in=stand_in)
    found = Findings()
    found.check(check_confirmation_budget, spec.budget, len(conditions))  # new studies; a stored one keeps its own
    try:
        own = task.check_inputs(spec, conditions)  # the task checked its own inputs (the language task)
    except UsageError as exc:
        found.add(exc)
        own = True
    if own:
        found.raise_all()
        return checked
    files = [(f"dataset.files[{i}]", f) for i, f in enumerate(spec.dataset.files or [])]
    if spec.teacher.checkpoint is not None:
        files.append(("teacher.checkpoint", spec.teacher.checkpoint))
    unreadable = [f for field_name, f in files if not found.check(_check_readable, field_name, f)]
    teacher_ok = spec.teacher.logits is not None or found.check(task.check_arch, spec.teacher.arch, field="teacher.arch")
    checkable = []  # conditions whose data and student can be built for the model check
    loadable = []  # conditions whose real data can be loaded here
    for c in conditions:
        data_ok = found.check(check_data_args, c.dataset, spec.dataset.val_fraction, c.noise_level, c.noise_type,
                              spec.dataset.train_size, files=c.files(spec))
        if stand_in and data_ok and has_stand_in(c.dataset):
            found.check(_load, checked, c)  # the real data, or a stand-in where they are missing
        root_ok = _key(c) in checked.missing or found.check(check_data_root, c.dataset, spec.dataset.data_root,
                                                            spec.dataset.download)
        if data_ok and root_ok and not unreadable:
            loadable.append(c)
        data_ok = data_ok and (root_ok or c.dataset in IMAGE_DATASETS)  # their models are checked without files
        student_ok = found.check(task.check_arch, c.student_arch, field="student.arch")
        if data_ok and student_ok and teacher_ok and not unreadable:
            checkable.append(c)
    if task.cache_codec is not None:  # a teacher whose outputs are cached is a model: every model run on a batch
        found.check(_check_models, checked, checkable)
        if spec.student.augmented:
            found.check(_check_views, checked, loadable)
    found.raise_all()
    return checked


def _load(checked: CheckedInputs, condition: Condition) -> DataBundle:
    """The condition's real data, loaded once for every check (and for the estimate: :class:`CheckedInputs`); for
    ``kdtune plan``, stand-in images where a well-known dataset is missing here (:attr:`CheckedInputs.stand_in`)."""
    from kdtune.tasks.image.standin import has_stand_in
    from kdtune.tasks.image.standin import stand_in_bundle

    key = _key(condition)
    if key not in checked.loaded:
        start = time.perf_counter()
        try:
            data = condition.load_data(checked.spec)
        except DataError as exc:
            if not (checked.stand_in and has_stand_in(condition.dataset)):
                raise
            d = checked.spec.dataset
            data = stand_in_bundle(condition.dataset, train_size=d.train_size, val_fraction=d.val_fraction,
                                   noise_level=condition.noise_level, noise_type=condition.noise_type, seed=d.seed,
                                   image_size=d.image_size)
            checked.missing[key] = one_line(exc)
        checked.loaded[key] = (data, time.perf_counter() - start)
    return checked.loaded[key][0]


def _key(condition: Condition) -> tuple[str, float, str]:
    """What identifies a condition's data: its dataset, noise level and noise type."""
    return condition.dataset, condition.noise_level, condition.noise_type


def _check_views(checked: CheckedInputs, conditions: list[Condition]) -> None:
    """The per-view teacher logits of every dataset: image inputs, top-k and size (nothing is trained)."""
    from kdtune.tasks.image.views import student_views

    spec = checked.spec
    view_spec = student_views(spec.student.model_dump(), spec.dataset.seed)
    assert view_spec is not None
    found = Findings()
    seen: set[str] = set()
    for c in conditions:
        if c.dataset in seen:  # the noise level changes labels, not the images or their number
            continue
        seen.add(c.dataset)
        found.check(_check_views_of, checked, view_spec, c)
    found.raise_all()


def _check_views_of(checked: CheckedInputs, view_spec: ViewSpec, condition: Condition) -> None:
    from kdtune.tasks.image.views import check_views

    data = _load(checked, condition)
    check_views(view_spec, tuple(data.train.x.shape), data.num_classes, top_k=checked.spec.cache.top_k,
                max_bytes=checked.spec.cache.max_bytes)


def check_folder(flag: str, path: Path | str) -> None:
    """``path`` is a folder, or one can be created there (the nearest existing parent is a writable folder)."""
    try:
        _check_folder(flag, Path(path).expanduser())
    except OSError as exc:  # a name too long for the filesystem, a permission on a parent
        raise SpecError(flag, str(path), f"cannot be used ({exc.strerror or type(exc).__name__})") from None


def _check_folder(flag: str, path: Path) -> None:
    if path.exists():
        if not path.is_dir():
            raise SpecError(flag, str(path), "is a file; must be a folder (created if missing)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise SpecError(flag, str(path), "is a folder you cannot write to")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SpecError(flag, str(path), f"cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SpecError(flag, str(path), f"cannot be created: {parent} is not writable")


def check_location(flag: str, value: str | None) -> None:
    """A local folder (see :func:`check_folder`), or a pyarrow filesystem URI that parses, answers and takes a
    small probe file (written and deleted) within :data:`PROBE_TIMEOUT_S`."""
    if value is None:
        return
    if "://" not in value:
        check_folder(flag, value)
        return
    import pyarrow as pa
    import pyarrow.fs as pafs

    from kdtune.secrets import redact_url

    shown = redact_url(value)
    try:
        fs, base = pafs.FileSystem.from_uri(value)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise SpecError(flag, shown, f"is not a usable filesystem URI ({_scrub(exc, value, shown)})") from None
    _check_endpoint(flag, shown, value)
    probe = f"{base.rstrip('/')}/.kdtune-probe-{secrets.token_hex(4)}"

    def write_and_delete() -> None:
        with fs.open_output_stream(probe) as f:
            f.write(b"kdtune checks that it can write here\n")
        fs.delete_file(probe)

    _within_timeout(flag, shown, write_and_delete, value)


def check_optuna_storage(url: str) -> None:
    """The URL parses as a database URL; a server (not SQLite) accepts a connection within the timeout."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    from kdtune.secrets import redact_url

    shown = redact_url(url)
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise SpecError("--storage", shown, f"is not a database URL ({_scrub(exc, url, shown)})") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            check_folder("--storage", Path(parsed.database).parent)
        return

    def connect() -> None:
        args = {"connect_timeout": int(PROBE_TIMEOUT_S)} if parsed.get_backend_name() == "postgresql" else {}
        engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()

    _within_timeout("--storage", shown, connect, url)


def _check_models(checked: CheckedInputs, conditions: list[Condition]) -> None:
    """Each distinct (architecture, kwargs, dataset) built and run on one batch, before any teacher trains; a model
    whose kwargs a condition's size set is named by that size (``conditions.student_size.w8``)."""
    from kdtune.cache.teacher import build_checked
    from kdtune.core.augment import check_fits

    spec = checked.spec
    found = Findings()
    seen: set[str] = set()
    for c in conditions:
        data = _probe_data(checked, c)
        models: list[tuple[Literal["teacher", "student"], str, dict[str, Any]]] = [
            ("student", c.student_arch, c.student_kwargs(spec))]
        if spec.teacher.logits is None:
            teacher = c.teacher_spec(spec)
            models.append(("teacher", teacher.arch, dict(teacher.kwargs)))
            if teacher.augment is not None and len(data.input_shape) == 3:  # a crop larger than the images
                found.check(check_fits, teacher.augment, data.input_shape[1], data.input_shape[2],
                            field="teacher.augment")
        for role, arch, kwargs in models:
            signature = repr((role, arch, sorted(kwargs.items(), key=str), c.dataset))
            if signature not in seen:
                seen.add(signature)
                found.check(build_checked, arch, data, kwargs=kwargs, field=c.model_field(role))
    found.raise_all()


def _probe_data(checked: CheckedInputs, condition: Condition) -> DataBundle:
    """A few samples of the condition's dataset: digits and the user's data for real (small, or read anyway),
    the built-in image datasets as random images of their shape (their files are checked, not read)."""
    import torch

    from kdtune.cache.teacher import CHECK_BATCH
    from kdtune.core.data import DataBundle
    from kdtune.core.data import Split
    from kdtune.tasks.image.names import IMAGE_DATASETS

    if condition.dataset not in IMAGE_DATASETS:
        return _load(checked, condition)
    shape, classes = _IMAGE_SHAPE
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(CHECK_BATCH) % classes
    split = Split(x=torch.rand((CHECK_BATCH, *shape), generator=generator), y=labels, clean=labels,
                  flipped=torch.zeros(CHECK_BATCH, dtype=torch.bool))
    return DataBundle(name=condition.dataset, task="classification", num_classes=classes, input_shape=shape,
                      train=split, val=split, test=split, description={"name": condition.dataset})


def _check_endpoint(flag: str, shown: str, uri: str) -> None:
    """An S3-compatible ``endpoint_override`` that refuses connections fails at once (the S3 client would retry
    for seconds); one that answers is probed for real by the caller."""
    import socket
    from urllib.parse import parse_qs
    from urllib.parse import urlsplit

    endpoint = parse_qs(urlsplit(uri).query).get("endpoint_override", [""])[0]
    host, _, port = endpoint.split("://")[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise SpecError(flag, shown, f"cannot be used: its endpoint {endpoint} does not answer "
                        f"({exc.strerror or type(exc).__name__})") from None


def _check_readable(field: str, path: str) -> None:
    if "://" in path:
        return  # read where it is used; a URI's endpoint is the user's
    local = Path(path).expanduser()
    if local.exists() and not local.is_dir() and not local.is_file():
        raise SpecError(field, path, "is not a regular file")  # a FIFO or a device: opening a FIFO would block
    try:
        with open(local, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise SpecError(field, path, "file not found") from None
    except IsADirectoryError:
        raise SpecError(field, path, "is a folder; must be a file") from None
    except OSError as exc:
        raise SpecError(field, path, f"cannot be read ({exc.strerror or type(exc).__name__})") from None


def _within_timeout(flag: str, shown: str, action: Callable[[], None], secret_text: str) -> None:
    """Run ``action`` in a daemon thread (a dead endpoint can hang a client for minutes); one line on failure."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            action()
        except BaseException as exc:  # reported below, in the caller's thread
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, name="kdtune-probe", daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    if not outcome:
        raise SpecError(flag, shown, f"did not answer within {PROBE_TIMEOUT_S:g} s")
    if outcome[0] is not None:
        raise SpecError(flag, shown, f"cannot be used ({_scrub(outcome[0], secret_text, shown)})")


def _scrub(exc: BaseException, secret_text: str, shown: str) -> str:
    """An exception's message on one line, with the URL and each of its secrets replaced by the redacted URL."""
    from urllib.parse import parse_qsl
    from urllib.parse import urlsplit

    from kdtune.secrets import REDACTED

    text = " ".join(str(exc).split()).replace(secret_text, shown) or type(exc).__name__
    parts = urlsplit(secret_text)
    hidden = [parts.password or ""] + [v for _, v in parse_qsl(parts.query)]
    for value in hidden:
        if len(value) >= 4 and value not in shown:
            text = text.replace(value, REDACTED)
    return text[:300]
