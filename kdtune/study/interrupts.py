"""Ctrl-C and SIGTERM while ``kdtune run`` or ``resume`` writes a study: one way out, whatever the phase.

Ray Tune catches SIGINT itself, ends its loop and returns normally; the trials that exist at that moment may
all have ended, so a study cut short looked finished. Here the driver owns both signals for the whole
command: during Tune's loop the first one is passed to Tune's own stop handler (Tune's SIGINT handler is
turned off, its SIGUSR1 handler does the same), so Tune saves its state one last time and returns, and the
driver knows the study was interrupted; anywhere else (the checks, the teachers' preparation) a signal
raises :class:`KeyboardInterrupt` at once. A second signal while Tune winds down raises it too.
``kdtune.study.driver`` then leaves the study folder for ``kdtune resume`` (:class:`kdtune.errors.Interrupted`).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


_STATE: dict[str, object] = {"received": None, "tune": False, "passed": False, "active": False}


def received() -> int | None:
    """The first SIGINT or SIGTERM this command received, or None."""
    value = _STATE["received"]
    return value if isinstance(value, int) else None


@contextmanager
def catching_signals() -> Iterator[None]:
    """Own SIGINT and SIGTERM for the duration (only in the main thread: elsewhere Python cannot)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _STATE.update(received=None, tune=False, passed=False, active=True)
    tune_setting = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # see the module docstring: SIGUSR1 stops Tune instead
    for s in previous:
        signal.signal(s, _handle)
    try:
        yield
    finally:
        _STATE.update(active=False)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if tune_setting is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = tune_setting


def take_back() -> None:
    """After ``ray.init``: Ray's core installs its own SIGTERM handler in the driver (it logs a stack and aborts,
    exit code -6); the signals are this module's again while :func:`catching_signals` is active."""
    if _STATE["active"] and threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _handle)


@contextmanager
def tune_loop() -> Iterator[None]:
    """Around ``Tuner.fit``: a signal asks Tune to stop (it saves its state) instead of raising."""
    _STATE.update(tune=True)
    try:
        yield
    finally:
        _STATE.update(tune=False)


def _handle(signum: int, frame: FrameType | None) -> None:
    if received() is None:
        _STATE["received"] = signum
    if _STATE["tune"] and not _STATE["passed"]:
        tune_stop = signal.getsignal(signal.SIGUSR1)  # installed by Tune when its loop starts
        if callable(tune_stop):
            _STATE["passed"] = True
            tune_stop(signum, frame)
            signal.signal(signal.SIGINT, _handle)  # Tune's handler put back what it found: keep ours
            return
    raise KeyboardInterrupt
