"""How a long command writes to a file or a pipe (``kdtune run spec > log``): every line starts with its local date
and time, and no line is longer than :data:`LINE_WIDTH` characters.

A log is read later, often beside other logs, so each line says when it was written; and it is read in editors and
CI pages that do not scroll sideways, so a long line is wrapped at a word, its continuation indented, instead of
running to 500 characters. Tables printed through :func:`kdtune.tables.console` are laid out to the width that is
left after the time stamp. A terminal is left alone: it gets the live progress table, which redraws itself.

What a line says is its writer's; this module only stamps and fits every line, whoever prints it (kdtune's progress,
the recommendation table, a library's warning).
"""

from __future__ import annotations

import io
import logging
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


#: The longest line written to a log, time stamp included.
LINE_WIDTH = 120
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S "
#: What is left of a line for its text.
TEXT_WIDTH = LINE_WIDTH - len(time.strftime(STAMP_FORMAT, time.localtime(0)))
CONTINUATION = "    "  # the indent of a wrapped line's continuation, after its own indent


class StampedLines(io.TextIOBase):
    """A text stream that writes each complete line to ``target`` with a time stamp, wrapped to :data:`LINE_WIDTH`.

    Thread-safe (Ray's and W&B's threads print too); a partial line waits for its newline, or for :meth:`end`.
    """

    def __init__(self, target: TextIO, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.target = target
        self.clock = clock
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def text_width(self) -> int:
        return TEXT_WIDTH

    @property
    def encoding(self) -> str:  # type: ignore[override]  # TextIOBase declares it a plain attribute
        return getattr(self.target, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.target.fileno()  # what is written to the descriptor directly is not stamped

    def write(self, text: str) -> int:
        """Complete lines are written at once, and flushed: a log is read while it grows (``tail -f``)."""
        with self._lock:
            *lines, self._pending = (self._pending + text).split("\n")
            for line in lines:
                self._write_line(line)
            if lines:
                self.target.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.target.flush()

    def end(self) -> None:
        """Write a last line that has no newline, and flush."""
        with self._lock:
            if self._pending:
                self._write_line(self._pending)
                self._pending = ""
            self.target.flush()

    def _write_line(self, line: str) -> None:
        stamp = time.strftime(STAMP_FORMAT, time.localtime(self.clock()))
        self.target.write("".join(f"{stamp}{part}".rstrip() + "\n" for part in fit(line)))


def fit(line: str, width: int = TEXT_WIDTH) -> list[str]:
    """``line`` as lines of at most ``width`` characters: whole when it fits, else wrapped at spaces (a word longer
    than a line, such as a path, is cut), each continuation indented below the line's own indent."""
    line = line.rstrip("\r").expandtabs()
    if len(line) <= width:
        return [line]
    indent = line[:len(line) - len(line.lstrip())]
    return textwrap.wrap(line, width=width, initial_indent="", subsequent_indent=indent + CONTINUATION,
                         break_long_words=True, break_on_hyphens=False) or [""]


@contextmanager
def stamped_output() -> Iterator[None]:
    """While inside, standard output and error that are not a terminal are :class:`StampedLines`; so is the stream
    of any logging handler that wrote to them. Everything is put back on the way out, also when an error leaves
    (so the command line's one-line error is printed as it always is)."""
    swapped: list[tuple[str, TextIO, StampedLines]] = []
    for name in ("stdout", "stderr"):
        stream: TextIO = getattr(sys, name)
        if not stream.isatty() and not isinstance(stream, StampedLines):
            swapped.append((name, stream, StampedLines(stream)))
    handlers = [h for h in logging.root.handlers if isinstance(h, logging.StreamHandler)]
    moved: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
    for name, stream, stamped in swapped:
        setattr(sys, name, stamped)
        for handler in handlers:
            if handler.stream is stream:
                moved.append((handler, stream))
                handler.setStream(stamped)
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)
        for name, stream, stamped in swapped:
            stamped.end()
            setattr(sys, name, stream)


def text_width(stream: object) -> int | None:
    """The width a table printed to ``stream`` may take: :data:`TEXT_WIDTH` for a stamped log, else None."""
    return stream.text_width if isinstance(stream, StampedLines) else None
