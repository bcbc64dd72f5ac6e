"""How kdtune starts Ray's workers (the loopback guarantee has its own test, ``test_network.py``)."""

from __future__ import annotations

import os


def test_workers_get_the_malloc_thresholds_that_keep_a_trials_memory(ray_local: None) -> None:
    """Without them, glibc returns a trial thread's freed memory to the kernel and faults it in again at every
    large allocation (benchmarks/worker_malloc.py measures what that costs)."""
    import ray

    from kdtune.study.ray_runtime import WORKER_MALLOC_ENV

    @ray.remote
    def worker_env() -> dict[str, str | None]:
        return {name: os.environ.get(name) for name in WORKER_MALLOC_ENV}

    # A value the environment exports wins (kdtune leaves it alone); every other name gets kdtune's value.
    assert ray.get(worker_env.remote()) == {name: os.environ.get(name, value) for name, value in WORKER_MALLOC_ENV.items()}
    assert int(WORKER_MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"]) > int(WORKER_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"])


def test_ray_session_stops_the_ray_it_started_and_only_that() -> None:
    """One owner of Ray's lifetime: a session that started Ray stops it on the way out, an error included; a
    session inside it (Ray already up) leaves it running. In a fresh process, apart from the tests' own Ray."""
    import subprocess
    import sys

    code = """
import ray
from kdtune.study.ray_runtime import ray_session
try:
    with ray_session(num_cpus=1) as started:
        with ray_session() as inner:
            pass
        print("outer", started, "inner", inner, "up after inner", ray.is_initialized())
        raise RuntimeError("a failure inside the session")
except RuntimeError:
    pass
print("up after outer", ray.is_initialized())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["outer True inner False up after inner True", "up after outer False"], done.stdout
