"""Start or join Ray so that nothing leaves loopback unless the user points kdtune at a cluster.

Ray makes outbound attempts when it starts a local cluster even with usage stats off: its dashboard
process probes cloud-metadata addresses (169.254.169.254, metadata.google.internal) through ``requests``
(``docs/architecture.md``, Ray on one machine). When the user has no proxy configured, kdtune points the proxy variables at a
closed loopback port while the local cluster starts, so those probes die on 127.0.0.1:9, then restores the
driver's environment and clears the variables for the workers. A user's own proxy settings are never touched.

Ray also finds "its" address by a UDP connect to 8.8.8.8 and then binds its services to the machine's
outward interface, even when given 127.0.0.1. A local study is one node, so kdtune switches Ray's cluster
mode off for it (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's own switch for single-machine use): every
Ray address is then 127.0.0.1.

Ray's workers get glibc's malloc thresholds fixed at the values its dynamic rule reaches in a main thread
(:data:`WORKER_MALLOC_ENV`). Tune runs a trial's function in a thread of its own, where glibc hands freed memory
back to the kernel and faults it in again at the next large allocation: 1.4 million page faults in the trial
worker of a 4-trial MNIST study, and a fifth of its students' time (``benchmarks/worker_malloc.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


logger = logging.getLogger(__name__)

_PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")
_NO_PROXY_VARS = ("no_proxy", "NO_PROXY")
DEAD_PROXY = "http://127.0.0.1:9"
_SINGLE_NODE_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: glibc's ceiling for its dynamic mmap threshold on 64-bit machines (32 MiB), and the trim threshold its rule
#: pairs with it (twice that): memory freed in a trial's thread stays in the process for the next epoch. A value
#: the user exported wins.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
#: Variables a trial worker needs from the driver (workers on a ``ray start`` cluster do not inherit them).
FORWARDED_ENV = ("KDTUNE_CACHE_DIR", "KDTUNE_DATA_ROOT", "PYTHONPATH", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED")


def init_ray(address: str | None = None, *, num_cpus: int | None = None, extra_env: dict[str, str] | None = None) -> bool:
    """Start a local Ray (``address=None``) or connect to a cluster; idempotent within a process.

    Returns True when this call started (or joined) Ray, False when it was up already. Values that carry a
    secret (a URL with a password or a secret query parameter) are never put in the runtime env, which Ray
    logs (``runtime_env_agent.log``): workers that need credentials get them from their environment.
    """
    import ray
    from ray._private import ray_constants

    from kdtune.secrets import redact_url

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # kdtune writes its own results
    # Experiment snapshots after every checkpoint are what makes `kdtune resume` lose nothing; Tune warns
    # about their frequency, which is by design here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's newer console output prints its own experiment table even at verbose=0; kdtune shows its own.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Without per-trial loggers there is no result.json for Tune's own analysis to read back; kdtune's
    # results come from results.parquet, so that complaint is noise.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # Ray guards a local cluster with a token (~/.ray/auth_token) by default and says so on every start: a
    # line of noise above kdtune's own output. Its warnings that authentication is *off* still show.
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_quiet_auth_enabled)
    env_vars = {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
    env_vars.update(extra_env or {})
    for name in [n for n, value in env_vars.items() if redact_url(value) != value]:
        logger.warning("not forwarding $%s to Ray's workers: it carries credentials (see docs/security.md)", name)
        del env_vars[name]
    env_vars["RAY_USAGE_STATS_ENABLED"] = "0"
    env_vars.update({name: value for name, value in WORKER_MALLOC_ENV.items() if name not in os.environ})
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    user_has_proxy = any(os.environ.get(v) for v in _PROXY_VARS)
    if address is None and not user_has_proxy:
        saved = {v: os.environ.get(v) for v in _PROXY_VARS + _NO_PROXY_VARS + (_SINGLE_NODE_VAR,)}
        os.environ.update({v: DEAD_PROXY for v in _PROXY_VARS})
        os.environ.update({v: "localhost,127.0.0.1" for v in _NO_PROXY_VARS})
        os.environ[_SINGLE_NODE_VAR] = "0"
        env_vars.update({v: "" for v in _PROXY_VARS + _NO_PROXY_VARS})
        env_vars[_SINGLE_NODE_VAR] = "0"
        single_node = ray_constants.ENABLE_RAY_CLUSTER
        ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time; ray was imported before this point
        try:
            ray.init(num_cpus=num_cpus, runtime_env={"env_vars": env_vars}, **kwargs)
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = single_node
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    else:
        ray.init(address=address, num_cpus=num_cpus if address is None else None,
                 runtime_env={"env_vars": env_vars}, **kwargs)
    logger.debug("ray started: %s", ray.cluster_resources())
    return True


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                extra_env: dict[str, str] | None = None) -> Iterator[bool]:
    """Ray for the duration of the block: a local one started (``address=None``) or a cluster joined
    (:func:`init_ray`), and stopped on every way out if this call started it. A Ray already up in this process (a
    test session's, an API caller's) is used as it is and left running. Yields whether this call started Ray.

    Ray's core installs its own SIGTERM handler in the driver when it starts; while
    :func:`kdtune.study.interrupts.catching_signals` is active, Ctrl-C and SIGTERM are given back to it at once.
    """
    from kdtune.study.interrupts import take_back

    started = init_ray(address, num_cpus=num_cpus, extra_env=extra_env)
    try:
        take_back()
        yield started
    finally:
        if started:
            import ray

            ray.shutdown()


def keep_credentials_out_of_tune() -> None:
    """Stop Ray Tune from copying ``AWS_*`` credentials into every trial actor's runtime env.

    Tune does it so that trials on other nodes can reach S3 storage, and Ray then writes that runtime env,
    secrets included, to ``runtime_env_agent.log``. kdtune's trials need no credentials of their own on a local
    Ray: its workers inherit the environment of the Ray that kdtune started. On a cluster, nodes bring their
    own (an instance role, or ``cluster/``'s secrets), as ``docs/security.md`` says.
    """
    from ray.tune.execution import class_cache

    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if propagated is not None:
        class_cache.ENV_VARS_TO_PROPAGATE = {v for v in propagated if not v.startswith("AWS_")}


def _quiet_auth_enabled(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def cluster_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]
