"""The study folder: the one owner of its file names, of reading and updating them, and of its storage URL.

A study folder holds everything a study produced::

    runs/<name>/
      study.json          resolved spec, conditions, kdtune version, storage URL (password redacted)
      spec.yaml           the resolved spec, readable
      teachers.json       per condition: cache key, selected epoch, teacher diagnostics (and α* for linear)
      results.parquet/    one row per (trial, seed, epoch)  -- see kdtune.records.results
      trials.parquet/     one row per ended trial
      optuna.db           the Optuna studies (SQLite default; --storage for PostgreSQL)
      tune/               Ray Tune's experiment (checkpoints; what `kdtune resume` restores)

One error policy for every reader: a path that is not a folder, or a folder without ``study.json``, is the
user's mistake (:class:`~kdtune.errors.UsageError`, exit 2); a file that is there but unreadable (not JSON, a
recorded spec that does not validate) is a :class:`~kdtune.errors.StudyError` (exit 1). ``teachers.json`` is
absent until the teachers are prepared, and reads as ``{}`` then. Every write is atomic (:func:`atomic_write`).

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
OPTUNA_DB = "optuna.db"
TUNE_DIR = "tune"


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

    # -- study.json ---------------------------------------------------------------------------------------
    def has_study(self) -> bool:
        """Whether ``study.json`` exists (a study was created here)."""
        return (self.path / STUDY_JSON).exists()

    def meta(self, *, missing_ok: bool = False) -> dict[str, Any]:
        """``study.json``; ``{}`` when ``missing_ok`` and it does not exist (yet, or any more)."""
        if missing_ok and not self.has_study():
            return {}
        if not self.path.is_dir():
            raise UsageError(f"{self.path}: no such study folder")
        if not self.has_study():
            raise UsageError(f"{self.path} is not a kdtune study folder (no {STUDY_JSON})")
        return self._read_json(STUDY_JSON)

    def spec(self) -> StudySpec:
        """The resolved spec recorded in ``study.json``."""
        from kdtune.errors import SpecError
        from kdtune.spec.schema import parse_spec

        meta = self.meta()
        try:
            return parse_spec(meta["spec"])
        except (SpecError, KeyError) as exc:
            raise StudyError(f"{self.path / STUDY_JSON}: the recorded spec is not valid: {exc}") from None

    def create(self, meta: dict[str, Any], spec_yaml: str) -> None:
        """Write a new study's ``study.json`` and ``spec.yaml``."""
        atomic_write(self.path / STUDY_JSON, json.dumps(meta, indent=2, sort_keys=True))
        atomic_write(self.path / SPEC_YAML, spec_yaml)

    def update(self, **fields: Any) -> None:
        """Record facts learnt while running (``trials_started_at``, ``finished_at``, ``cut_short``)."""
        meta = self.meta()
        meta.update(fields)
        atomic_write(self.path / STUDY_JSON, json.dumps(meta, indent=2, sort_keys=True))

    # -- teachers.json ------------------------------------------------------------------------------------
    def teachers(self) -> dict[str, Any]:
        """Per condition key, what its teacher's preparation recorded; ``{}`` before the teachers are ready."""
        if not (self.path / TEACHERS_JSON).exists():
            return {}
        return self._read_json(TEACHERS_JSON)

    def write_teachers(self, teachers: dict[str, Any]) -> None:
        atomic_write(self.path / TEACHERS_JSON, json.dumps(teachers, indent=2, sort_keys=True))

    # -- the Optuna storage -------------------------------------------------------------------------------
    def default_storage_url(self) -> str:
        """SQLite in the study folder, the storage of a study run without ``--storage``."""
        return f"sqlite:///{(self.path / OPTUNA_DB).resolve()}"

    def recorded_storage_url(self) -> str | None:
        """The storage URL as ``study.json`` records it (password redacted), for showing; None before then."""
        from kdtune.secrets import redact_url

        url = self.meta(missing_ok=True).get("storage_url")
        return redact_url(url) if url else None

    def storage_url(self) -> str | None:
        """The full Optuna storage URL, or None when its password is not known in this process.

        A redacted URL's password is known when this process was given it (``remember_storage``) or from
        ``$KDTUNE_STORAGE``. A recorded SQLite file that is gone while the folder has its own ``optuna.db``
        means the folder was moved: the folder's file is the study's.
        """
        meta = self.meta()
        url: str | None = meta.get("storage_url") or self.default_storage_url()
        if meta.get("storage_redacted"):
            url = _full_url(str(url)) or os.environ.get("KDTUNE_STORAGE") or None
        if url and url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
            if (self.path / OPTUNA_DB).exists():
                url = f"sqlite:///{self.path / OPTUNA_DB}"
        return url

    def _read_json(self, name: str) -> dict[str, Any]:
        file = self.path / name
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
