"""The errors kdtune raises on purpose.

Every error a user can cause is a :class:`KdtuneError`; the CLI prints it as one line and exits with
its ``exit_code`` (2 for usage and spec mistakes, 1 for runtime failures), as ``docs/architecture.md`` says.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class KdtuneError(Exception):
    """Base class: a failure kdtune explains in one line."""

    exit_code = 1


class UsageError(KdtuneError):
    """The user asked for something invalid (a bad option, a bad spec value, missing input files)."""

    exit_code = 2


class SpecError(UsageError, ValueError):
    """A field of a study spec or a command-line option has a value that is not allowed.

    The message always names the field, the value and what is allowed, e.g.
    ``search.alpha.high = 1.5: must be in [0, 1] (alpha is the weight on the true labels)``.
    A ``ValueError`` too, so that pydantic collects one raised by a spec's own validator with every other
    mistake of the spec instead of stopping at it (``kdtune.spec.schema.parse_spec``: one line each).
    """

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{shorten(field)} = {shorten(repr(value))}: {' '.join(str(allowed).split())}")

    def __reduce__(self) -> tuple[type[SpecError], tuple[str, Any, str]]:
        # Pickled by Ray when raised inside a task: rebuild from the three parts, not from the message.
        return type(self), (self.field, self.value, self.allowed)


class SpecErrors(UsageError):
    """Several mistakes found in one pass (a spec, or the checks before a study starts): one line each.

    Raised only for two or more; a single mistake stays a plain :class:`SpecError`.
    """

    def __init__(self, errors: list[UsageError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def __reduce__(self) -> tuple[type[SpecErrors], tuple[list[UsageError]]]:
        return type(self), (self.errors,)


def raise_all(errors: Sequence[UsageError]) -> None:
    """Raise nothing, the one error, or :class:`SpecErrors` for several."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise SpecErrors(list(errors))


#: Longest echo of a user's value in a message: a 50 MB spec value must not become a 50 MB "line".
MAX_ECHO = 120
#: Longest caught exception quoted in a note (a report's, a W&B run's): the first words say what failed.
MAX_NOTE = 200


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """A caught exception as one line of a message (its lines joined; its type when it says nothing), cut to
    ``limit`` characters when given (a note in a report or a W&B run, where a traceback-sized text would not fit)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if limit is None else shorten(text, limit)


class DataError(UsageError):
    """A dataset cannot be loaded as asked (missing files, malformed user data)."""


class CacheError(KdtuneError):
    """A cache entry is missing, damaged or unreadable; the message names the file."""


class StudyError(KdtuneError):
    """A study cannot run or resume (bad study folder, storage mismatch, cluster misconfiguration)."""


class Interrupted(KdtuneError):
    """Ctrl-C (SIGINT) or SIGTERM stopped a study that ``kdtune resume`` continues: exit code 128 + the signal
    (130, 143), as a shell reports a process the signal ended. Printed without ``error:``: nothing failed."""

    def __init__(self, study_dir: object, signum: int) -> None:
        self.study_dir = study_dir
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted: continue with `kdtune resume {study_dir}`")

    def __reduce__(self) -> tuple[type[Interrupted], tuple[object, int]]:
        return type(self), (self.study_dir, self.signum)
