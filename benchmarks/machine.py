"""What the timing benchmarks read about the machine they run on, from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: a busy machine inflates every timing beside it."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_idle(seconds: float = 5.0) -> float:
    """The share of every CPU's time spent idle over the next ``seconds`` (``/proc/stat``): the load average counts
    processes waiting on I/O too and can read high on a machine whose CPUs are idle, so a timing records both."""
    import time

    def counters() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, all but guest time (counted in user)

    idle0, total0 = counters()
    time.sleep(seconds)
    idle1, total1 = counters()
    return (idle1 - idle0) / max(1, total1 - total0)


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid_text, rest = stat.read_text().split(" (", 1)
            ppid = int(rest.rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(ppid, []).append(int(pid_text))
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def with_interval(est: dict[str, Any], pattern: str) -> str:
    """A mean with its interval, ``mean [low, high]`` (the mean alone where there is none), each by ``pattern``."""
    if est["low"] is None:
        return pattern.format(est["mean"])
    return f"{pattern.format(est['mean'])} [{pattern.format(est['low'])}, {pattern.format(est['high'])}]"
