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
    from kdtune.data import load_dataset

    return load_dataset("digits", noise_level=0.1, seed=0)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="t-", dir=_SANDBOX))
    yield path
    shutil.rmtree(path, ignore_errors=True)
