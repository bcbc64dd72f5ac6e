"""How close `kdtune plan`'s estimate comes to the measured wall time of the same small study.

The teacher is prepared (cached) first, as `kdtune plan` would report it; then the plan's estimate is taken
and the study is run for real on a local Ray with the same concurrency. The last line is the ratio
estimate / measured (the issue's target: within a factor of 3 either way; the estimate assumes no early
stopping, so it is a worst case).

    python benchmarks/plan_estimate.py          # digits, about 1-2 minutes
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    from kdtune.cache import LogitCache
    from kdtune.cli import main as kdtune
    from kdtune.spec.conditions import expand
    from kdtune.spec.schema import parse_spec
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study
    from kdtune.study.ray_runtime import init_ray

    work = Path(tempfile.mkdtemp(prefix="kdtune-plan-"))
    spec = parse_spec({
        "name": "plan-estimate",
        "dataset": {"name": "digits", "val_fraction": 0.2},
        "teacher": {"arch": "mlp", "epochs": 4, "kwargs": {"widths": [64]}},
        "student": {"arch": "mlp", "epochs": 6, "kwargs": {"widths": [32]}},
        "conditions": {"noise_level": [0.0, 0.2]},
        "budget": {"trials_per_condition": 4, "repeats": 2},
        "scheduler": {"type": "fifo"},
        "tracking": "none",
    })
    spec_path = work / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec.to_dict()))
    cache = work / "cache"
    for condition in expand(spec):
        LogitCache(cache).prepare(condition.teacher_spec(spec), condition.load_data(spec))
    init_ray(num_cpus=2)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        kdtune(["plan", str(spec_path), "--cache-dir", str(cache), "--cpus", "2", "--ray-running", "--format", "json"])
    estimate = json.loads(out.getvalue())["total"]["wall_s"]
    start = time.perf_counter()
    run_study(spec, RunOptions(out=work / "study", cache_dir=str(cache), progress=False))
    measured = time.perf_counter() - start
    print(f"plan estimate {estimate:.1f} s, measured {measured:.1f} s")
    print(f"plan estimate / measured: {estimate / measured:.2f}")


if __name__ == "__main__":
    main()
