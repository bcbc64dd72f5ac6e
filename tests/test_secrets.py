"""Secrets given on the command line are never written: a study with a password in ``--storage`` (a real
PostgreSQL on loopback) and an S3 secret key in ``--cache-dir`` (a real S3-compatible server, moto, on loopback)
runs to the end, and neither secret appears in any file of the study folder, the cache, W&B's folder or Ray's
temporary folder (its logs, its runtime env) -- nor on the console.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return hits


@pytest.mark.slow
def test_no_secret_is_written_anywhere(postgres_url: str, s3_server: str, short_tmp: Path) -> None:
    import pyarrow.fs as pafs

    password = f"pg-pw-{uuid.uuid4().hex}"
    secret_key = f"s3-secret-{uuid.uuid4().hex}"
    needles = [password.encode(), secret_key.encode()]
    s3 = pafs.S3FileSystem(endpoint_override=s3_server, scheme="http", region="us-east-1", access_key="kdtune",
                           secret_key=secret_key, allow_bucket_creation=True)
    s3.create_dir("kdtune-secrets")
    storage = postgres_url.replace("postgres@", f"postgres:{password}@")  # trust auth: any password is accepted
    cache = (f"s3://kdtune-secrets/cache?endpoint_override={s3_server}&scheme=http&region=us-east-1"
             f"&access_key=kdtune&secret_key={secret_key}")
    spec = short_tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": f"secrets-{uuid.uuid4().hex[:8]}",
        "dataset": {"name": "digits", "val_fraction": 0.2},
        "teacher": {"arch": "mlp", "epochs": 1, "kwargs": {"widths": [16]}},
        "student": {"arch": "mlp", "epochs": 1, "kwargs": {"widths": [8]}},
        "budget": {"trials_per_condition": 1, "repeats": 1},
        "scheduler": {"type": "fifo"},
        "tracking": {"wandb": {"mode": "offline"}},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "KDTUNE_STORAGE"}
    env.update({"RAY_TMPDIR": str(short_tmp / "ray"), "WANDB_DIR": str(short_tmp / "wandb"),
                "AWS_EC2_METADATA_DISABLED": "true"})
    (short_tmp / "ray").mkdir()
    (short_tmp / "wandb").mkdir()
    study = short_tmp / "study"
    result = subprocess.run([sys.executable, "-m", "kdtune", "run", str(spec), "--out", str(study), "--storage",
                             storage, "--cache-dir", cache, "--no-progress", "--max-concurrent", "1"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(n.decode() in result.stdout + result.stderr for n in needles)

    written = s3.get_file_info(pafs.FileSelector("kdtune-secrets/cache", recursive=True))
    assert any(i.path.endswith("train.parquet") for i in written)  # the cache really is on S3
    bucket = short_tmp / "bucket"
    for info in written:
        if info.type == pafs.FileType.File:
            target = bucket / info.path
            target.parent.mkdir(parents=True, exist_ok=True)
            with s3.open_input_file(info.path) as f:
                target.write_bytes(f.read())
    assert (study / "tune").is_dir() and any((short_tmp / "ray").rglob("*.log"))
    assert any((short_tmp / "wandb").rglob("*")) or any((study / "wandb").rglob("*"))
    for root in (study, short_tmp / "ray", short_tmp / "wandb", bucket):
        assert files_containing(root, needles) == []

    assert stat.S_IMODE(study.stat().st_mode) == 0o700
    for name in ("study.json", "spec.yaml", "teachers.json"):
        assert stat.S_IMODE((study / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((study / "tune").stat().st_mode) == 0o700
