"""The same small MNIST study with and without the malloc thresholds kdtune gives Ray's workers, side by side.

Ray Tune runs a trial's function in a thread of its own. There glibc's malloc hands memory freed at the end of
an epoch back to the kernel and faults it in again at the next large allocation; ``kdtune.study.ray_runtime`` fixes
the workers' thresholds (``WORKER_MALLOC_ENV``) at the values glibc's dynamic rule reaches in a main thread. This
script runs one study both ways, alternating (A B A B), each with its own local Ray started by
``kdtune.study.ray_runtime.init_ray`` (the only difference: ``WORKER_MALLOC_ENV`` emptied on one side), from a warm
teacher cache (a 1-epoch teacher: its quality does not matter for the students' time), one trial at a time so
that no trial competes with another. It prints the students' mean seconds per seed-epoch (train + evaluation,
as ``results.parquet`` records them) for each run; the last line is the ratio of the two sides' means.

    python benchmarks/worker_malloc.py --data-root DIR         # about 3 minutes on 2 cores; DIR/MNIST/raw/*.gz
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from machine import load_average


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("KDTUNE_DATA_ROOT"),
                        help="folder with MNIST/raw/*.gz (default: $KDTUNE_DATA_ROOT)")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not args.data_root:
        parser.error("--data-root is required (a folder with MNIST/raw/*.gz)")

    import pandas as pd
    import ray

    from kdtune.spec.schema import parse_spec
    from kdtune.study import ray_runtime
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study

    work = Path(tempfile.mkdtemp(prefix="kdtune-malloc-"))
    spec = parse_spec({
        "name": "malloc",
        "dataset": {"name": "mnist", "train_size": args.train_size, "data_root": args.data_root},
        "teacher": {"arch": "reference_student", "epochs": 1},
        "student": {"arch": "reference_student", "epochs": 3},
        "conditions": {"noise_level": [0.05]},
        "sampler": "random",
        "budget": {"trials_per_condition": 2, "repeats": 1, "confirm_top_k": 0},
        "scheduler": {"type": "fifo"},
        "tracking": "none",
    })
    kdtune_env = dict(ray_runtime.WORKER_MALLOC_ENV)
    print(f"load before: {load_average()}; kdtune's worker env: {kdtune_env}", flush=True)
    per_epoch: dict[str, list[float]] = {"glibc defaults": [], "kdtune's thresholds": []}
    for run in range(2 * args.rounds):
        side = list(per_epoch)[run % 2]
        ray_runtime.WORKER_MALLOC_ENV = kdtune_env if side == "kdtune's thresholds" else {}
        ray_runtime.init_ray(num_cpus=2)
        try:
            out = run_study(spec, RunOptions(out=work / f"study-{run}", progress=False, max_concurrent=1,
                                             cache_dir=str(work / "cache")))
        finally:
            ray.shutdown()
        seconds = pd.read_parquet(out / "results.parquet")["seconds"]
        per_epoch[side].append(float(seconds.mean()))
        print(f"{side}: {seconds.mean():.2f} s per seed-epoch over {len(seconds)} seed-epochs", flush=True)
    means = {side: statistics.mean(values) for side, values in per_epoch.items()}
    print(f"load after: {load_average()}")
    print(f"seconds per seed-epoch, kdtune's thresholds / glibc defaults: "
          f"{means[list(means)[1]] / means[list(means)[0]]:.2f}")


if __name__ == "__main__":
    main()
