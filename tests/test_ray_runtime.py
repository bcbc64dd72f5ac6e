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
