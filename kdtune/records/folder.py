"""The study folder: the one owner of its file names, of reading and updating them, and of its storage URL.

A study folder holds everything a study produced::

    runs/<name>/
      study.json          id, resolved spec, conditions, kdtune version, storage URL (password redacted)
      .lock               held by the one process writing the study (``kdtune run`` / ``resume``)
      spec.yaml           the resolved spec, readable
      teachers.json       per condition: cache key, selected epoch, teacher diagnostics (and α* for linear)
      results.parquet/    one row per (trial, seed, epoch)  -- see kdtune.records.results
      trials.parquet/     one row per ended trial
      optuna.db           the Optuna studies (SQLite default; --storage for PostgreSQL)
      tune/               Ray Tune's experiment (checkpoints; what `kdtune resume` restores)
      wandb/              W&B's run folders (``offline-run-*`` until synced), and which teacher runs are logged
      recommendation.json ``kdtune recommend``'s default output (``kdtune run`` writes it at the end)
      report.html         ``kdtune report``'s default output, its PNGs (and ``figures.json``) in ``report/``

Every file name is spelled here once, and reached as a path: ``StudyFolder(d).results``, ``.trials``,
``.optuna_db``, ``.tune_dir``, ``.wandb_dir``, ``.recommendation``, ``.report``, ...: the modules that write
or read a file ask the folder where it is.

One error policy for every reader: a path that is not a folder, or a folder without ``study.json``, is the
user's mistake (:class:`~kdtune.errors.UsageError`, exit 2); a file that is there but unreadable (not JSON, a
recorded spec that does not validate) is a :class:`~kdtune.errors.StudyError` (exit 1). ``teachers.json`` is
absent until the teachers are prepared, and reads as ``{}`` then. Every write is atomic (:func:`atomic_write`).

A folder can be moved or copied: nothing in it names its own location. The default SQLite storage is recorded
as :data:`FOLDER_STORAGE` (the folder's ``optuna.db``, wherever the folder is), Tune's experiment is found
under the folder, and what Tune saved with an absolute path is pointed back at the folder being run
(:func:`running_study`). A storage outside the folder (PostgreSQL, an explicit ``--storage``) is shared by
every copy: their Optuna studies are the same ones, named after the study's id.

No Ray, no torch, no Optuna at import: the read-only commands (``status``, ``report``, ``recommend``) use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.errors import StudyError
from kdtune.errors import UsageError


if TYPE_CHECKING:
    from kdtune.spec.schema import StudySpec

STUDY_JSON = "study.json"
SPEC_YAML = "spec.yaml"
TEACHERS_JSON = "teachers.json"
RESULTS = "results.parquet"
TRIALS = "trials.parquet"
OPTUNA_DB = "optuna.db"
TUNE_DIR = "tune"
#: W&B's own name for the folder it makes under the ``dir`` a run is given (the study folder).
WANDB_DIR = "wandb"
#: In the W&B folder: the teacher runs already written (a resumed study does not write them again).
TEACHERS_LOGGED = "kdtune-teachers.json"
RECOMMENDATION_JSON = "recommendation.json"
REPORT_HTML = "report.html"
#: The report's PNGs, in a folder of this name beside its HTML page (in the study folder, or beside ``--out``).
FIGURES_DIR = "report"
LOCK = ".lock"
#: The storage URL recorded for the default SQLite file: relative to the study folder, so that it moves with it.
FOLDER_STORAGE = f"sqlite:///{OPTUNA_DB}"
#: The study folder this process writes, once ``kdtune run`` / ``resume`` has locked it (see :func:`running_study`).
_RUNNING: list[Path] = []


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, mode: int | None = 0o600) -> Path:
    """Write ``data`` under a temporary name beside ``path``, then rename it: a reader never sees half a file.

    ``mode`` 0o600 (the default: a study folder's files are the user's alone) is set even when an older file
    of the temporary name had another; ``mode=None`` leaves it to the umask, for files written to share
    (a report, a recommendation, a model card). The one implementation in kdtune for local files; the logit
    cache keeps its own, which also writes through pyarrow filesystems (S3).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    if mode is not None:
        os.chmod(tmp, mode)  # an older file of that name kept its mode through O_CREAT
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class StudyFolder:
    """A study folder on the local filesystem (see the module docstring for its files)."""

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    # -- the files, as paths -------------------------------------------------------------------------------
    @property
    def study_json(self) -> Path:
        return self.path / STUDY_JSON

    @property
    def spec_yaml(self) -> Path:
        return self.path / SPEC_YAML

    @property
    def teachers_json(self) -> Path:
        return self.path / TEACHERS_JSON

    @property
    def results(self) -> Path:
        """``results.parquet/``: a Parquet dataset folder (see :mod:`kdtune.records.results`)."""
        return self.path / RESULTS

    @property
    def trials(self) -> Path:
        """``trials.parquet/``: a Parquet dataset folder (see :mod:`kdtune.records.results`)."""
        return self.path / TRIALS

    @property
    def optuna_db(self) -> Path:
        """The default SQLite Optuna storage (absent when the study was run with ``--storage``)."""
        return self.path / OPTUNA_DB

    @property
    def tune_dir(self) -> Path:
        """Ray Tune's experiment folder (without ``--tune-storage``)."""
        return self.path / TUNE_DIR

    @property
    def wandb_dir(self) -> Path:
        """Where the study's W&B runs are: W&B makes it under the study folder, the ``dir`` its runs get."""
        return self.path / WANDB_DIR

    @property
    def teachers_logged(self) -> Path:
        """Which conditions' teacher runs W&B tracking has written (once per study, not again on resume)."""
        return self.wandb_dir / TEACHERS_LOGGED

    @property
    def recommendation(self) -> Path:
        return self.path / RECOMMENDATION_JSON

    @property
    def report(self) -> Path:
        return self.path / REPORT_HTML

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK

    # -- study.json ---------------------------------------------------------------------------------------
    def has_study(self) -> bool:
        """Whether ``study.json`` exists (a study was created here)."""
        return self.study_json.exists()

    def meta(self, *, missing_ok: bool = False) -> dict[str, Any]:
        """``study.json``, its shape checked; ``{}`` when ``missing_ok`` and it does not exist (yet, or any more)."""
        if missing_ok and not self.has_study():
            return {}
        if not self.path.is_dir():
            raise UsageError(f"{self.path}: no such study folder")
        if not self.has_study():
            raise UsageError(f"{self.path} is not a kdtune study folder (no {STUDY_JSON})")
        file = self.study_json
        try:
            meta = json.loads(file.read_text())
        except ValueError as exc:
            raise StudyError(f"{file}: not valid JSON ({exc})") from None
        _check_meta(file, meta)
        return dict(meta)

    def spec(self) -> StudySpec:
        """The resolved spec recorded in ``study.json``."""
        from kdtune.errors import SpecError
        from kdtune.spec.schema import parse_spec

        meta = self.meta()
        if "spec" not in meta:
            raise StudyError(f"{self.study_json}: no recorded spec")
        try:
            return parse_spec(meta["spec"])
        except SpecError as exc:
            raise StudyError(f"{self.study_json}: the recorded spec is not valid: {exc}") from None

    def optuna_prefix(self) -> str:
        """What the names of the study's Optuna studies start with: ``<spec name>/<study id>`` (unique per
        study, so that two studies of one spec on one storage never share an Optuna study; folders written
        before the id existed: the spec name alone)."""
        meta = self.meta()
        name = str(self.spec().name)
        return f"{name}/{meta['id']}" if meta.get("id") else name

    def create(self, meta: dict[str, Any], spec_yaml: str) -> None:
        """Write a new study's ``study.json`` and ``spec.yaml``."""
        atomic_write(self.study_json, json.dumps(meta, indent=2, sort_keys=True))
        atomic_write(self.spec_yaml, spec_yaml)

    def update(self, **fields: Any) -> None:
        """Record facts learnt while running (``trials_started_at``, ``finished_at``, ``cut_short``)."""
        meta = self.meta()
        meta.update(fields)
        atomic_write(self.study_json, json.dumps(meta, indent=2, sort_keys=True))

    # -- teachers.json ------------------------------------------------------------------------------------
    def teachers(self) -> dict[str, Any]:
        """Per condition key, what its teacher's preparation recorded; ``{}`` before the teachers are ready."""
        if not self.teachers_json.exists():
            return {}
        return _read_json(self.teachers_json)

    def write_teachers(self, teachers: dict[str, Any]) -> None:
        atomic_write(self.teachers_json, json.dumps(teachers, indent=2, sort_keys=True))

    # -- the one writer -------------------------------------------------------------------------------------
    def writer_lock(self) -> StudyLock:
        """The lock that ``kdtune run`` and ``resume`` hold while they write this study (:class:`StudyLock`)."""
        return StudyLock(self.lock_file)

    # -- the Optuna storage -------------------------------------------------------------------------------
    def default_storage_url(self) -> str:
        """SQLite in the study folder, the storage of a study run without ``--storage`` (absolute, for this
        process; study.json records :data:`FOLDER_STORAGE`)."""
        return f"sqlite:///{self.optuna_db.resolve()}"

    def storage_is_shared(self) -> bool:
        """Whether the study's Optuna storage lies outside the folder: a copy of the folder writes to it too."""
        url = self.meta().get("storage_url") or FOLDER_STORAGE
        return url != FOLDER_STORAGE and not (url.startswith("sqlite:///") and self.optuna_db.exists())

    def recorded_storage_url(self) -> str | None:
        """The storage URL as ``study.json`` records it (password redacted), for showing; None before then."""
        from kdtune.secrets import redact_url

        url = self.meta(missing_ok=True).get("storage_url")
        return redact_url(url) if url else None

    def storage_url(self) -> str | None:
        """The full Optuna storage URL, or None when its password is not known in this process.

        A redacted URL's password is known when this process was given it (``remember_storage``) or from
        ``$KDTUNE_STORAGE``. :data:`FOLDER_STORAGE` is this folder's ``optuna.db``, wherever the folder is; so
        is an absolute SQLite path (recorded before paths were relative) when the folder has its own
        ``optuna.db``: the folder was moved or copied, and its own file is its study's.
        """
        meta = self.meta()
        url: str | None = meta.get("storage_url") or FOLDER_STORAGE
        if meta.get("storage_redacted"):
            url = _full_url(str(url)) or os.environ.get("KDTUNE_STORAGE") or None
        if url == FOLDER_STORAGE or (url and url.startswith("sqlite:///") and self.optuna_db.exists()):
            url = self.default_storage_url()
        return url



def _read_json(file: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(file.read_text()))
    except ValueError as exc:
        raise StudyError(f"{file}: not valid JSON ({exc})") from None


def _full_url(redacted: str) -> str | None:
    """The full URL this process was given for ``redacted`` (``remember_storage``), else None."""
    from kdtune.records.optuna_storage import full_storage_url

    try:
        return full_storage_url(redacted)
    except StudyError:
        return None


#: study.json's fields that every reader relies on, and their JSON types.
_META_TYPES: dict[str, tuple[type, ...]] = {"spec": (dict,), "conditions": (list,), "created_at": (int, float),
                                            "storage_url": (str, type(None)), "id": (str,),
                                            "margin": (int, float, type(None))}


def _check_meta(file: Path, meta: Any) -> None:
    """A study.json that is not the object kdtune wrote (a list, a garbage field) is a damaged study folder."""
    if not isinstance(meta, dict):
        raise StudyError(f"{file}: holds a JSON {type(meta).__name__}, not the study's record (an object)")
    for field, types in _META_TYPES.items():
        if field in meta and not isinstance(meta[field], types):
            raise StudyError(f"{file}: field {field!r} is a {type(meta[field]).__name__}; kdtune wrote "
                             f"{' or '.join('null' if t is type(None) else t.__name__ for t in types)}")
    for i, condition in enumerate(meta.get("conditions", [])):
        if not isinstance(condition, dict) or not isinstance(condition.get("key"), str):
            raise StudyError(f"{file}: conditions[{i}] is not a condition (an object with a key)")


class StudyLock:
    """An exclusive ``flock`` on the study folder's lock file, so that one process writes a study at a time.

    The kernel drops the lock when its process dies (``kill -9`` included), so a lock is never stuck; the
    file keeps the PID and host of its holder, and one that still names a process when it is taken (the
    holder died, or the folder is a copy) is reported as taken over. A second writer is refused in one line
    (:class:`~kdtune.errors.StudyError`, exit code 1). Study folders are local (``--out`` is refused as a
    URI), where ``flock`` holds.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def holder(self) -> str | None:
        """Who holds the lock now ("process PID on HOST"), or None; takes nothing and writes nothing."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 200).decode(errors="replace").strip() or "another process"
        finally:
            os.close(fd)
        return None

    def __enter__(self) -> StudyLock:
        import fcntl
        import socket
        import sys

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise StudyError(f"{self.path.parent} is being written by {holder}: one `kdtune run` or "
                                 "`kdtune resume` per study folder at a time") from None
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the file was removed (a refused run cleaning up) between open and lock: again
        previous = os.read(fd, 200).decode(errors="replace").strip()
        if previous:
            print(f"kdtune: taking over the study lock of {previous} (it no longer holds it)", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._fd = fd
        _RUNNING[:] = [self.path.parent.resolve()]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)  # a clean release: the next writer has nothing to take over
            finally:
                os.close(self._fd)  # closing the descriptor drops the flock
                self._fd = None
        _RUNNING.clear()


def running_folder() -> Path | None:
    """The study folder this process writes (has locked), or None."""
    return _RUNNING[0] if _RUNNING else None


def running_study(saved: Path) -> Path:
    """The study folder this process writes, for what Tune gives back from its saved state (a searcher, the
    callbacks), which names the folder where the study was when Tune saved it: after a move or a copy that
    is another folder, whose files must never be written. ``saved`` when no study is locked here."""
    return running_folder() or Path(saved)
