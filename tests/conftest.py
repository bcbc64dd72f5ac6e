"""Shared fixtures. Tests never write to the real home: HOME, the kdtune cache, W&B and Ray's temp dir all
point into one short temporary folder (Unix socket paths allow ~107 bytes; pytest's tmp_path is long)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
_SANDBOX = Path(tempfile.mkdtemp(prefix="kdt-", dir="/tmp"))
for _var, _sub in (("HOME", "home"), ("KDTUNE_CACHE_DIR", "cache"), ("WANDB_DIR", "wandb"),
                   ("RAY_TMPDIR", "ray"), ("XDG_CACHE_HOME", "xdg")):
    os.environ[_var] = str(_SANDBOX / _sub)
    (_SANDBOX / _sub).mkdir()
os.environ.pop("KDTUNE_DATA_ROOT", None)
os.environ["WANDB_MODE"] = "offline"
os.environ.pop("WANDB_API_KEY", None)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# Ray workers import the test fixtures' model factories (kd_fixtures:...) by import path.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH")) if p)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SANDBOX, ignore_errors=True)


def require_service(reason: str) -> None:
    """Skip with a visible reason on a developer's machine; fail in CI, where .ci/run provides the service."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sandbox() -> Path:
    return _SANDBOX


@pytest.fixture(scope="session")
def test_data_root() -> Path:
    """A writable copy of the real MNIST / Fashion-MNIST ``raw/`` files (the shared folder is read-only)."""
    source = Path(os.environ.get("KDTUNE_TEST_DATA", REPO.parent / "shared" / "datasets"))
    if not (source / "MNIST" / "raw").is_dir():
        require_service(f"real MNIST files not found under {source} (set KDTUNE_TEST_DATA)")
    root = _SANDBOX / "datasets"
    for name in ("MNIST", "FashionMNIST"):
        if (source / name / "raw").is_dir():
            (root / name / "raw").mkdir(parents=True, exist_ok=True)
            for f in (source / name / "raw").glob("*.gz"):
                target = root / name / "raw" / f.name
                if not target.exists():
                    shutil.copyfile(f, target)
    return root


@pytest.fixture(scope="session")
def noisy_digits():  # type: ignore[no-untyped-def]
    from kdtune.tasks.datasets import load_dataset

    return load_dataset("digits", noise_level=0.1, seed=0)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray (2 CPUs) for the whole test session, started the way kdtune starts it."""
    import ray

    from kdtune.study.ray_runtime import init_ray

    init_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def teacher_forwards() -> Iterator[list[int]]:
    """Counts forward calls of every MLP in this process (the teachers of the cache tests are MLPs and their
    students CNNs), training and inference alike."""
    import torch

    from kdtune.tasks.image.models import MLP

    calls = [0]

    def hook(module: torch.nn.Module, inputs: object, output: object) -> None:
        if isinstance(module, MLP):
            calls[0] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield calls
    handle.remove()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="t-", dir=_SANDBOX))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def tiny_study_spec(name: str, **sections: object):  # type: ignore[no-untyped-def]
    """A digits study small enough for a test: MLP teacher and student, few epochs and trials. Confirmation is
    off unless ``budget`` turns it on (tests/test_recommend_e2e.py runs it end to end)."""
    from kdtune.spec.schema import parse_spec

    raw: dict[str, object] = {
        "name": name,
        "dataset": {"name": "digits", "val_fraction": 0.2},
        "teacher": {"arch": "mlp", "epochs": 4, "kwargs": {"widths": [64]}, "lr": 3e-3},
        "student": {"arch": "mlp", "epochs": 4, "kwargs": {"widths": [16]}, "lr": 3e-3},
        "conditions": {"noise_level": [0.0, 0.2]},
        "budget": {"trials_per_condition": 2, "repeats": 2},
        "scheduler": {"type": "asha", "grace_period": 1},
        "tracking": "none",
    }
    raw.update(sections)
    raw["budget"] = {"confirm_top_k": 0, **raw["budget"]}  # type: ignore[dict-item]
    return parse_spec(raw)


@pytest.fixture(scope="session")
def small_study(ray_local: None) -> Path:
    """One small real study (local Ray, SQLite Optuna, digits), shared by the status, recommend, report and
    tracking tests."""
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study

    out = _SANDBOX / "small-study"
    return run_study(tiny_study_spec("small"), RunOptions(out=out, progress=False))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto) on loopback; yields ``host:port``."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        require_service("moto[server] is not installed (pip install 'moto[server]')")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1 (Debian's packages), started for the test session."""
    import glob
    import socket
    import subprocess

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        require_service("PostgreSQL server not installed (apt-get install postgresql)")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="kdt-pg-", dir="/tmp"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run([*ctl, "-l", str(root / "server.log"), "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {root}", "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
