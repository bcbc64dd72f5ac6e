"""How kdtune starts Ray's workers (the loopback guarantee has its own test, ``test_network.py``)."""

from __future__ import annotations

import os

import pytest


def test_workers_get_the_malloc_thresholds_that_keep_a_trials_memory(ray_local: None) -> None:
    """Without them, glibc returns a trial thread's freed memory to the kernel and faults it in again at every
    large allocation (benchmarks/worker_malloc.py measures what that costs)."""
    import ray

    from kdtune.study.ray_runtime import WORKER_MALLOC_ENV

    if any(name in os.environ for name in WORKER_MALLOC_ENV):
        pytest.skip("this environment exports its own malloc thresholds, which kdtune leaves alone")

    @ray.remote
    def worker_env() -> dict[str, str | None]:
        return {name: os.environ.get(name) for name in WORKER_MALLOC_ENV}

    assert ray.get(worker_env.remote()) == WORKER_MALLOC_ENV
    assert int(WORKER_MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"]) > int(WORKER_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"])
