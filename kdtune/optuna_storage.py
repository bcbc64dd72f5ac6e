"""Optuna storage from a URL: SQLite in the study folder by default, PostgreSQL on a cluster.

No Ray here: ``kdtune report`` reads the Optuna studies through it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import optuna


T = TypeVar("T")


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage for ``sqlite:///...`` or ``postgresql://...`` (SQLite with a generous lock timeout).

    Two drivers opening a fresh database at once race to create its tables; the loser retries.
    """
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return retrying(lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs))


def retrying(action: Callable[[], T], attempts: int = 6) -> T:
    """Run ``action``, retrying on the integrity/operational errors of concurrent schema or study creation."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return action()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
