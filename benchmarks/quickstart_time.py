"""The quickstart as a new user runs it: `kdtune run search_spaces/quickstart.yaml`, cold, timed end to end.

Cold means an empty teacher cache (a fresh ``--cache-dir``, so the three teachers are trained) and a fresh study
folder; the command runs in a child process exactly as typed on a terminal whose output goes to a file. The script
prints the machine's load (``/proc/loadavg``) and CPU count before and after, because the target (at most 3
minutes) is for an idle 2-core machine and a busy one inflates every figure; then where the time went, from the
study folder: before the trials (Ray's start and the teachers' preparation), the search and confirmation trials,
the recommendation at the end, and the students' own training time summed over runs (from ``results.parquet``); and
the verdict of each condition, which must be confirmed (``distil``, ``hurts`` or ``no_gain`` from confirmation
runs, not ``unconfirmed``).

    python benchmarks/quickstart_time.py                                      # the shipped spec: minutes
    python benchmarks/quickstart_time.py --set budget.trials_per_condition=4  # a reduced run (say so with its figure)

The last line is the result: ``quickstart: 2 min 51 s cold (load before 0.08, 2 CPUs), 3 confirmed verdicts``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import load_average
from machine import process_tree


SPEC = Path(__file__).resolve().parent.parent / "search_spaces" / "quickstart.yaml"
CONFIRMED = ("distil", "hurts", "no_gain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(SPEC), help="the study spec (default: the shipped quickstart)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
                        help="passed to kdtune run --set (a reduced run; say so with its figure)")
    parser.add_argument("--keep", action="store_true", help="keep the study folder and cache (printed)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kdtune-quickstart-"))
    out, cache = work / "study", work / "cache"
    command = [sys.executable, "-m", "kdtune", "run", args.spec, "--out", str(out), "--cache-dir", str(cache),
               *(f"--set={o}" for o in args.overrides)]
    env = {k: v for k, v in os.environ.items() if k not in ("KDTUNE_CACHE_DIR", "KDTUNE_STORAGE", "RAY_ADDRESS")}
    load_before = load_average()
    print(f"load before: {load_before} (1, 5, 15 min), {os.cpu_count()} CPUs", flush=True)
    start = time.perf_counter()
    with open(work / "run.log", "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        cpu = CpuByKind(child.pid)
        while child.poll() is None:
            cpu.sample()
            time.sleep(1.0)
        code = child.returncode
    wall = time.perf_counter() - start
    load_after = load_average()
    print(f"load after:  {load_after}")
    if code != 0:
        print((work / "run.log").read_text()[-3000:])
        raise SystemExit(f"kdtune run exited with {code} (log: {work / 'run.log'})")
    plan = next((line for line in (work / "run.log").read_text().splitlines() if line.startswith("plan:")), None)
    print(plan or "plan: (no estimate printed)")
    verdicts = _breakdown(out, wall)
    print("CPU seconds by process (sampled each second; on 2 CPUs the wall time holds at most "
          f"{2 * wall:.0f}): " + ", ".join(f"{kind} {seconds:.0f}" for kind, seconds in cpu.totals().items()))
    print("  busiest: " + "; ".join(f"{command} {seconds:.0f} s" for command, seconds in cpu.top()))
    confirmed = sum(v in CONFIRMED for v in verdicts.values())
    if args.keep:
        print(f"kept: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    minutes, seconds = divmod(round(wall), 60)
    reduced = f", reduced: {' '.join(args.overrides)}" if args.overrides else ""
    print(f"quickstart: {minutes} min {seconds:02d} s cold (load before {load_before.split()[0]}, {os.cpu_count()} "
          f"CPUs{reduced}), {confirmed} of {len(verdicts)} verdicts confirmed")


def _breakdown(out: Path, wall: float) -> dict[str, str]:
    """Print where the wall time went and each condition's verdict; return condition -> verdict kind."""
    import pyarrow.compute as pc

    from kdtune.records.results import read_results

    meta = json.loads((out / "study.json").read_text())
    created, started, finished = meta["created_at"], meta["trials_started_at"], meta["finished_at"]
    results = read_results(out)
    student_s = pc.sum(results["seconds"]).as_py() or 0.0
    phases = results["phase"].to_pylist() if "phase" in results.column_names else []
    seed_epochs = len(phases) or results.num_rows
    print(f"teachers (data, training or cache, logits): {started - created:.1f} s; trials: {finished - started:.1f} s; "
          f"the rest (Python and Ray start, plan estimate, recommendation): "
          f"{wall - (finished - created):.1f} s")
    print(f"students' own training and evaluation: {student_s:.1f} s over {seed_epochs} seed-epochs "
          f"({1000 * student_s / max(1, seed_epochs):.1f} ms each), i.e. {student_s / max(1e-9, finished - started):.2f} "
          "of the trial phase's wall time (2 cores: at most 2.00)")
    recommendation = json.loads((out / "recommendation.json").read_text())
    verdicts = {}
    for condition in recommendation["conditions"]:
        verdict = condition["verdict"]
        verdicts[condition["key"]] = verdict["kind"]
        print(f"  {condition['key']}: {verdict['kind']} ({verdict.get('text', '')[:100]})")
    return verdicts


class CpuByKind:
    """CPU time (user + system) of the run's process tree, by kind of process: the driver (``kdtune run``), Ray's
    workers (trials and teacher tasks), W&B's service, and Ray's own processes (GCS, raylet, ...).

    Each process's counters are read from ``/proc/PID/stat`` once a second while it lives; the last reading
    counts, so up to a second of a short-lived process's end can be missed.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, tuple[str, float]] = {}
        self.commands: dict[int, str] = {}
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        for pid in process_tree(self.root):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError):
                continue  # ended meanwhile
            self.seen[pid] = (_kind(pid, self.root, cmd), (float(stat[11]) + float(stat[12])) / self.tick)
            self.commands[pid] = " ".join(cmd.split()[:2])[-60:]

    def top(self, n: int = 6) -> list[tuple[str, float]]:
        """The ``n`` processes that used the most CPU: (command, seconds)."""
        ranked = sorted(self.seen.items(), key=lambda kv: -kv[1][1])[:n]
        return [(self.commands[pid], seconds) for pid, (_, seconds) in ranked]

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, seconds in self.seen.values():
            out[kind] = out.get(kind, 0.0) + seconds
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _kind(pid: int, root: int, cmd: str) -> str:
    if pid == root:
        return "driver"
    if "wandb" in cmd:
        return "W&B"
    if "default_worker.py" in cmd or cmd.startswith("ray::"):
        return "Ray workers (trials, teachers)"
    return "Ray's own processes"






if __name__ == "__main__":
    main()
