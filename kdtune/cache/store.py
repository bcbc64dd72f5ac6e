"""Where cache files live: a root on any pyarrow filesystem, written atomically where the filesystem can rename.

Local (and NFS) roots get a temporary file in the same folder, flushed and renamed over the final name, so
readers never see half a file; object stores get the final key directly (an object appears whole when its
upload completes). Every message shows the root with credentials redacted.
"""

from __future__ import annotations

import os
import secrets
import socket
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from kdtune.errors import CacheError
from kdtune.errors import SpecError
from kdtune.errors import one_line


HOST = socket.gethostname()
TMP_MARK = ".tmp-"  # in the name of every temporary file: listings skip them, prune removes old ones


class MissingFile(CacheError):
    """An entry file that does not exist: built, not reported."""


class Store:
    """A root on a pyarrow filesystem, with the one difference that matters: local roots can rename."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        text = os.fspath(root)
        if "://" in text:
            try:
                self.fs, base = pafs.FileSystem.from_uri(text)
            except (pa.ArrowException, ValueError, OSError) as exc:
                reason = one_line(exc).replace(text, redact(text))  # never echo credentials
                raise SpecError("cache_dir", redact(text), f"is not a usable filesystem URI ({reason})") from None
            self.display = redact(text).rstrip("/")
        else:
            self.fs, base = pafs.LocalFileSystem(), str(Path(text).expanduser().absolute())
            self.display = base
            try:
                is_file = Path(base).exists() and not Path(base).is_dir()
            except OSError as exc:  # a name too long for the filesystem
                raise SpecError("cache_dir", base, f"cannot be used ({exc.strerror or exc})") from None
            if is_file:
                raise SpecError("cache_dir", base, "is a file; the cache is a folder (created if missing)")
        self.base = base.rstrip("/")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def relative(self, path: str) -> str:
        return path[len(self.base) + 1:] if path.startswith(self.base + "/") else path

    def show(self, rel: str) -> str:
        return f"{self.display}/{rel}" if rel else self.display

    def local_path(self, rel: str) -> Path | None:
        return Path(self.path(rel)) if self.is_local else None

    @contextmanager
    def open(self, rel: str) -> Iterator[Any]:
        try:
            f = self.fs.open_input_file(self.path(rel))
        except FileNotFoundError:
            raise MissingFile(f"{self.show(rel)}: not in the cache") from None
        except (OSError, pa.ArrowException) as exc:
            raise CacheError(f"{self.show(rel)}: unreadable ({one_line(exc)})") from None
        with f:
            yield f

    def read(self, rel: str) -> bytes:
        with self.open(rel) as f:
            try:
                return f.read()
            except (OSError, pa.ArrowException) as exc:
                raise CacheError(f"{self.show(rel)}: unreadable ({one_line(exc)})") from None

    def write(self, rel: str, data: bytes) -> None:
        """Local: a temporary file in the same folder, renamed over the final name. Elsewhere: the final key."""
        local = self.local_path(rel)
        try:
            if local is None:
                with self.fs.open_output_stream(self.path(rel)) as f:
                    f.write(data)
            else:
                write_atomic(local, data)
        except (OSError, pa.ArrowException) as exc:
            raise CacheError(f"{self.show(rel)}: cannot write ({one_line(exc)})") from None

    def list(self, rel: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.path(rel), recursive=True, allow_not_found=True)
        try:
            return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]
        except (OSError, pa.ArrowException) as exc:
            raise CacheError(f"{self.show(rel)}: cannot list ({one_line(exc)})") from None

    def delete_dir(self, rel: str) -> None:
        try:
            self.fs.delete_dir(self.path(rel))
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as exc:
            raise CacheError(f"{self.show(rel)}: cannot remove ({one_line(exc)})") from None

    def delete_file(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as exc:
            raise CacheError(f"{self.show(rel)}: cannot remove ({one_line(exc)})") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write a temporary file in the same folder, flush it to disk, and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{HOST}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def redact(uri: str) -> str:
    """A URI without user info or query (where S3 keys and secrets can hide)."""
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_cache_root() -> str | Path:
    """``$KDTUNE_CACHE_DIR`` (a folder or a URI such as ``s3://bucket/prefix``), else
    ``$XDG_CACHE_HOME/kdtune/cache`` (``~/.cache/kdtune/cache``)."""
    value = os.environ.get("KDTUNE_CACHE_DIR")
    if value:
        return value if "://" in value else Path(value).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "kdtune" / "cache"
