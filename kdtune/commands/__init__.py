"""One module per ``kdtune`` command (see :mod:`kdtune.cli`), and the option types they share.

``float`` and ``int`` as argparse types let ``nan``, ``inf`` and ``-1`` through to places that hang or crash on
them (``--alpha nan`` trained a chance-level student, ``--threads -1`` was a traceback); these types refuse them
while the command line is parsed: one line, exit code 2, nothing started.
"""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """A float option: NaN and infinity are refused (argparse names the option in its one-line error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text[:40]!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text[:40]!r}")
    return value


def positive_int(text: str) -> int:
    """A count option (threads, concurrent trials): a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {value}")
    return value
