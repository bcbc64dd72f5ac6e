"""Optuna storage from a URL: SQLite in the study folder by default, PostgreSQL on a cluster.

No Ray here: ``kdtune report`` reads the Optuna studies through it too. Optuna (~0.5 s) is imported where a
storage is opened, so that the study folder's readers can resolve a URL without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import TypeVar


if TYPE_CHECKING:
    import optuna

T = TypeVar("T")
#: Redacted storage URL -> the full URL, known to this driver process only (never pickled, never written).
_FULL_URLS: dict[str, str] = {}


def remember_storage(url: str) -> None:
    """Let what holds ``redact_url(url)`` (a searcher, new or restored by Tune) connect with ``url``."""
    from kdtune.secrets import redact_url

    _FULL_URLS[redact_url(url)] = url


def full_storage_url(url: str) -> str:
    """The full URL of a (possibly redacted) storage URL that this driver was given."""
    from kdtune.errors import StudyError
    from kdtune.secrets import REDACTED

    if url in _FULL_URLS:
        return _FULL_URLS[url]
    if REDACTED in url:
        raise StudyError(f"the study's storage URL has a password ({url}); pass it again with $KDTUNE_STORAGE")
    return url


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage for ``sqlite:///...`` or ``postgresql://...`` (SQLite with a generous lock timeout).

    Two drivers opening a fresh database at once race to create its tables; the loser retries.
    """
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return retrying(lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs))


def retrying(action: Callable[[], T], attempts: int = 6) -> T:
    """Run ``action``, retrying on the integrity/operational errors of concurrent schema or study creation."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return action()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
