"""Plan a study before paying for it: its conditions, trials and runs, what the cache holds, and a cost estimate.

A dry run: no Ray, no study folder, nothing trained or written. For each condition it loads the real data
(digits in a moment; MNIST from its files) and asks the teacher-logit cache, with the cache's own key
functions, whether the teacher and its logits exist already (cached), need one teacher forward pass
(compute logits), or need the teacher trained (train teacher). It then times a few training steps on this
machine, after a warm-up: the student's on the threads a trial has (resources.cpu), the teacher's on the
threads its preparation will have (an equal share of the CPUs among the conditions), and one evaluation pass,
and estimates compute (CPU seconds) and wall time for the spec's resources:

  student epoch = steps per epoch x step time + evaluation (validation, test, flipped training samples)
  seed-epochs   = per condition: proposals x repeats x their expected epochs under ASHA (Ray's rule, simulated)
                  + baselines x repeats x epochs + each confirmation round's (candidates + alpha = 1) x its
                  fresh seeds x epochs
  trials        = seed-epochs x student epoch + Tune's overhead (0.3 s per trial + 25 ms per reported epoch:
                  trial actors are reused, and a trial waits for the driver after each epoch's report) + the
                  driver's CPU, 70 ms per reported epoch, taken from the trials' cores
  concurrency   = CPUs // resources.cpu (or --max-concurrent / resources.max_concurrent)
  wall          = start-up + teacher preparation (conditions in parallel, each on its share) + trials / concurrency

The wall time is given as "about A-B (at most C)": A if each verdict is clear at the first look that can give
it (a distil or hurts verdict waits for enough paired seeds that budget.confirm_failure_rate would show), B if
every round runs, both with ASHA's expected stopping; C if ASHA stops nothing as well. Teacher
patience is assumed to stop nothing, and searched epochs / batch sizes sit at their most expensive values. A
sampler that learns proposes better configurations, which ASHA stops less often than the simulation's. Costs
are for CPU training (a GPU study is usually faster). While a study runs, its time left (the live table, the
log's progress lines, `kdtune status`) counts the same seed-epochs at the pace measured so far.

examples:
  kdtune plan search_spaces/quickstart.yaml
  kdtune plan search_spaces/mnist_noise.yaml --set dataset.data_root=/data --format json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


HELP = "dry run: conditions, trials, cached teachers, and a compute / wall-time estimate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the study spec (YAML)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
                        help="override a spec field, value parsed as YAML (repeatable), as for `kdtune run`")
    parser.add_argument("--cache-dir", default=None,
                        help="teacher/logit cache to look in (default: $KDTUNE_CACHE_DIR, else ~/.cache/kdtune/cache)")
    parser.add_argument("--cpus", type=int, default=None,
                        help="CPUs the study will have (default: this machine's, %s)" % (os.cpu_count() or 1))
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="trials at once, as for `kdtune run` (default: CPUs // resources.cpu)")
    parser.add_argument("--ray-running", action="store_true",
                        help="a Ray cluster is up already (no Ray start-up in the estimate)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="output format (csv: one line per condition; default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from kdtune.errors import SpecError
    from kdtune.spec.schema import load_spec
    from kdtune.study.estimate import make_plan

    for flag, value in (("--cpus", args.cpus), ("--max-concurrent", args.max_concurrent)):
        if value is not None and value < 1:
            raise SpecError(flag, value, "must be a positive integer")
    spec = load_spec(args.spec, overrides=args.overrides)
    result = make_plan(spec, cache_dir=args.cache_dir, cpus=args.cpus, max_concurrent=args.max_concurrent,
                       ray_running=args.ray_running)
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        print()
    elif args.format == "csv":
        from kdtune.tables import write_csv

        write_csv([{"condition": r["key"], "trials": r["trials"] + r["confirm_trials"], "runs": r["runs"],
                    "teacher": r["teacher"]["action"], **r["estimate"]} for r in result["conditions"]],
                  ("condition", "trials", "runs", "teacher", "data_load_s", "teacher_s", "run_s", "trial_s", "cpu_s"))
    else:
        _print(result)
    return 0


def _print(result: dict[str, Any]) -> None:
    from rich.table import Table

    from kdtune.study.estimate import duration
    from kdtune.study.estimate import estimate_line
    from kdtune.tables import console as make_console
    from kdtune.tables import name_column

    total = result["total"]
    table = Table(title=f"plan for study {result['spec']}: {total['conditions']} conditions, {total['trials']} trials, "
                  f"{total['runs']} runs",
                  caption="runs = trials x repeats (+ confirmation at its most: every round; it stops once the "
                  "verdict is clear); teacher: cached / compute logits (one forward pass) / train teacher")
    name_column(table, "condition", [row["key"] for row in result["conditions"]])
    for header in ("trials", "runs", "teacher", "teacher key", "logits key", "compute"):
        table.add_column(header, justify="right" if header in ("trials", "runs", "compute") else "left",
                         no_wrap=header.endswith("key"))
    for row in result["conditions"]:
        t = row["teacher"]
        table.add_row(row["key"], str(row["trials"] + row["confirm_trials"]), str(row["runs"]),
                      f"{t['action']} ({t['source']})", t.get("teacher_key") or "-", t.get("logits_key") or "-",
                      duration(row["estimate"]["cpu_s"]))
    console = make_console()
    console.print(table)
    console.print(f"compute: {duration(total['cpu_s'])} CPU time; {estimate_line(result)}", highlight=False)
    if total.get("stages"):
        console.print(total["stages"], highlight=False)
    console.print(f"to build: {total['teachers_to_train']} teachers to train, {total['logits_to_compute']} logits "
                  f"to compute, {total['cached']} cached", highlight=False)
    for row in result["conditions"]:
        m = row.get("models")
        if m:
            console.print(f"models {row['key']}: " + "; ".join(
                f"{role} {m[role]['arch']} {json.dumps(m[role]['kwargs'], sort_keys=True)}"
                + (f" (size {m[role]['size']})" if m[role]["size"] is not None else "") for role in ("teacher", "student")),
                highlight=False)
    for row in result["conditions"]:
        v = row.get("views")
        if v:
            shape = f"top {v['top_k']} of {v['classes']} classes" if v["top_k"] else f"{v['classes']} classes x 4 bytes"
            console.print(f"view logits {row['key']}: {v['views']} views x {v['images']:,} images x {shape} = "
                          f"{_size(v['bytes'])} (cache.max_bytes {_size(v['max_bytes'])}), "
                          f"{'cached' if v['cached'] else 'to compute'}", highlight=False)
    for row in result["conditions"]:
        c = row.get("token_cache")
        if c:
            shape = f"top {c['k']} of {c['vocab_size']:,} ids" if c["layout"] == "topk" else (
                f"{c['k']} sampled ids" if c["layout"] == "sampled" else f"{c['vocab_size']:,} ids x 4 bytes (dense)")
            console.print(f"token cache {row['key']}: {c['train_tokens']:,} training tokens x {shape} = "
                          f"{_size(c['bytes'])} (cache.max_bytes {_size(c['max_bytes'])}), "
                          f"{'cached' if row['teacher']['action'] == 'cached' else 'to compute'}", highlight=False)
    for row in result["conditions"]:
        if row["teacher"].get("problem"):
            console.print(f"[bold]missing[/bold] {row['key']}: {row['teacher']['problem']}", highlight=False)
    for line in result["assumptions"]:
        console.print(f"assumed: {line}", highlight=False)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
