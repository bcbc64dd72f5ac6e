"""How kdtune prints tables: whole names in a narrow terminal, nothing cut in a file or a pipe, CSV on demand.

rich fits a table into the console's width by wrapping and then cutting cells (``noise_leve…``). In a terminal
the name columns keep their full width and the other columns give way; written to a file or a pipe there is no
width to fit, so the table is printed at its natural width, except in the log of a long command, whose lines are
kept to 120 characters (:mod:`kdtune.log_output`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from kdtune.log_output import text_width


#: Wide enough for any kdtune table: output that is not a terminal is never wrapped or cut.
UNLIMITED = 10_000


def console(*, stderr: bool = False) -> Any:
    """A rich console: the terminal's width; in a log of ``kdtune run`` (:mod:`kdtune.log_output`), the width its
    lines leave after their time stamp; no limit when the output is any other file or pipe."""
    from rich.console import Console

    terminal = Console(stderr=stderr)
    if terminal.is_terminal:
        return terminal
    return Console(stderr=stderr, width=text_width(sys.stderr if stderr else sys.stdout) or UNLIMITED)


def fold(table: Any) -> Any:
    """``table`` with cells that do not fit their column wrapped onto more lines at any character, instead of cut
    with an ellipsis (``incon…``): in a narrow terminal or a log, a cut verdict is a lost one."""
    for column in table.columns:
        column.overflow = "fold"
    return table


def name_column(table: Any, header: str, names: Iterable[str], **kwargs: Any) -> None:
    """A column whose cells (condition names, cache keys) are never wrapped or cut: other columns give way."""
    width = max([len(header), *(len(n) for n in names)])
    table.add_column(header, no_wrap=True, min_width=width, **kwargs)


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rows as CSV on stdout, one line per row, the columns in this order."""
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
