"""A lock file per key, so that builders of one cache entry on a local or NFS root serialise (object stores have none)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from kdtune.cache.store import HOST
from kdtune.cache.store import TMP_MARK
from kdtune.cache.store import utc_now


HEARTBEAT_SECONDS = 5.0
STALE_LOCK_SECONDS = 60.0
LOCK_POLL_SECONDS = 0.2

_LOG = logging.getLogger(__name__)


class LocalLock:
    """An exclusive lock file for one key on a local or NFS root, safe against killed owners.

    The file is created atomically with its content (a hard link of a finished temporary file) and holds
    the owner's PID, host and a random token; a thread refreshes its mtime every :data:`HEARTBEAT_SECONDS`.
    A waiter breaks it when the owner is dead (same host) or the heartbeat stopped for
    :data:`STALE_LOCK_SECONDS`. Breaking moves the lock aside first and puts it back if what it moved was
    not the lock it judged stale, so two waiters can never delete each other's fresh lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LocalLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"pid": os.getpid(), "host": HOST, "token": self.token, "created": utc_now()})
        while not self._try_create(record):
            self._wait_or_break()
        self._thread = threading.Thread(target=self._heartbeat, name=f"kdtune-lock-{self.path.stem[:8]}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if (_read_lock(self.path) or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def _try_create(self, record: str) -> bool:
        tmp = self.path.with_name(f"{self.path.name}{TMP_MARK}{self.token}")
        tmp.write_text(record)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _wait_or_break(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return
        owner = _read_lock(self.path)
        reason = _stale_reason(owner, mtime)
        if reason is None:
            time.sleep(LOCK_POLL_SECONDS)
            return
        _LOG.warning("breaking stale cache lock %s: %s", self.path, reason)
        aside = self.path.with_name(f"{self.path.name}{TMP_MARK}broken-{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if (_read_lock(aside) or {}).get("token") != (owner or {}).get("token"):
            try:  # someone else broke it and locked again in between: give their lock back
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if (_read_lock(self.path) or {}).get("token") != self.token:
                _LOG.warning("cache lock %s was broken by another process while held", self.path)
                return
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stale_reason(owner: dict[str, Any] | None, mtime: float) -> str | None:
    if owner is not None and owner.get("host") == HOST and not _pid_alive(int(owner.get("pid", -1))):
        return f"its owner (PID {owner['pid']} on {HOST}) is gone"
    silent = time.time() - mtime
    if silent > STALE_LOCK_SECONDS:
        return f"no heartbeat for {silent:.0f} s"
    return None


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` runs on this host; a zombie (killed, not yet reaped) counts as dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
