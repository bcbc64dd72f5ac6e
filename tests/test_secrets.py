"""Secrets given on the command line are never written: a study with a password in ``--storage`` (a real
PostgreSQL on loopback) and an S3 secret key in ``--cache-dir`` (a real S3-compatible server, moto, on loopback)
runs to the end, and neither secret appears in any file of the study folder, the cache, W&B's folder or Ray's
temporary folder (its logs, its runtime env), in the Optuna tables on the PostgreSQL server, or on the console --
in plain or percent-encoded form; nor does a run that fails with ``--debug`` show them. A file the scan cannot
read is a failure, never skipped. Below: the URL helpers' edge cases, as unit tests.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from kdtune.errors import UsageError
from kdtune.secrets import redact_url
from kdtune.secrets import split_credentials


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    """Each file under ``root`` holding a needle, and each file that cannot be read (a scan that skipped it
    would prove nothing)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError as exc:
                hits.append(f"{path}: unreadable ({exc})")
                continue
            hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return hits


def rows_containing(url: str, needles: list[bytes]) -> list[str]:
    """Every table of the PostgreSQL database at ``url`` (Optuna's among them), row by row, as text."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    hits = []
    try:
        tables = sqlalchemy.MetaData()
        tables.reflect(engine)
        assert "trials" in tables.tables and "studies" in tables.tables  # Optuna's schema is really there
        with engine.connect() as connection:
            for table in tables.sorted_tables:
                for row in connection.execute(table.select()):
                    text = repr(tuple(row)).encode()
                    hits += [f"{table.name}: {n.decode()}" for n in needles if n in text]
    finally:
        engine.dispose()
    return hits


@pytest.mark.slow
def test_no_secret_is_written_anywhere(postgres_url: str, s3_server: str, short_tmp: Path) -> None:
    import pyarrow.fs as pafs

    password = f"pg/pw@{uuid.uuid4().hex}:%"  # characters that must be percent-encoded in a URL
    secret_key = f"s3-secret-{uuid.uuid4().hex}"
    needles = [password.encode(), quote(password, safe="").encode(), secret_key.encode()]
    s3 = pafs.S3FileSystem(endpoint_override=s3_server, scheme="http", region="us-east-1", access_key="kdtune",
                           secret_key=secret_key, allow_bucket_creation=True)
    s3.create_dir("kdtune-secrets")
    # trust auth: any password is accepted
    storage = postgres_url.replace("postgres@", f"postgres:{quote(password, safe='')}@")
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
    assert rows_containing(postgres_url, needles) == []

    # A run that fails (its storage's database does not exist) with --debug, which shows the traceback.
    failing = storage.rsplit("/", 1)[0] + "/no_such_database"
    result = subprocess.run([sys.executable, "-m", "kdtune", "run", str(spec), "--out", str(short_tmp / "failed"),
                             "--storage", failing, "--cache-dir", cache, "--no-progress", "--debug"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode != 0 and "no_such_database" in result.stdout + result.stderr, result.stderr[-3000:]
    assert not any(n.decode() in result.stdout + result.stderr for n in needles), result.stderr[-3000:]
    if (short_tmp / "failed").exists():
        assert files_containing(short_tmp / "failed", needles) == []

    assert stat.S_IMODE(study.stat().st_mode) == 0o700
    for name in ("study.json", "spec.yaml", "teachers.json"):
        assert stat.S_IMODE((study / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((study / "tune").stat().st_mode) == 0o700


# -- the URL helpers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "shown"), [
    ("s3://KEY:SECRET@bucket/cache", "s3://KEY:***@bucket/cache"),
    ("postgresql://user:p@ss@db.example:5432/kd", "postgresql://user:***@db.example:5432/kd"),  # "@" in the password
    ("postgresql://user:p%40ss%2Fw%3Ard@db/kd", "postgresql://user:***@db/kd"),  # percent-encoded
    ("postgresql://us%40er:pw@db/kd", "postgresql://us%40er:***@db/kd"),
    ("s3://bucket/p?region=r&secret_key=a%2Fb%26c&access_key=K", "s3://bucket/p?region=r&secret_key=***&access_key=***"),
    ("sqlite:////abs/path/optuna.db", "sqlite:////abs/path/optuna.db"),
    ("postgresql://user@db/kd", "postgresql://user@db/kd"),
    ("/a/plain/path", "/a/plain/path"),
])
def test_redact_url_hides_passwords_and_secret_parameters(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(("uri", "kept", "env"), [
    ("s3://KEY:SECRET@bucket/p?region=r", "s3://bucket/p?region=r",
     {"AWS_ACCESS_KEY_ID": "KEY", "AWS_SECRET_ACCESS_KEY": "SECRET"}),
    ("s3://KEY:se@cr:et@bucket/p", "s3://bucket/p", {"AWS_ACCESS_KEY_ID": "KEY", "AWS_SECRET_ACCESS_KEY": "se@cr:et"}),
    # A "/" or "+" in a secret key is percent-encoded in a URI; the environment gets the key itself.
    ("s3://KEY:a%2Fb%2Bc%40d@bucket/p", "s3://bucket/p", {"AWS_ACCESS_KEY_ID": "KEY", "AWS_SECRET_ACCESS_KEY": "a/b+c@d"}),
    ("s3://bucket/p?access_key=K&secret_key=a%2Fb%26c&region=r", "s3://bucket/p?region=r",
     {"AWS_ACCESS_KEY_ID": "K", "AWS_SECRET_ACCESS_KEY": "a/b&c"}),
    ("s3://KEY@bucket/p", "s3://bucket/p", {"AWS_ACCESS_KEY_ID": "KEY"}),
    ("/local/cache", "/local/cache", {}),
    ("gs://bucket/p", "gs://bucket/p", {}),
])
def test_split_credentials_moves_s3_credentials_to_the_environment(uri: str, kept: str, env: dict[str, str]) -> None:
    assert split_credentials(uri, "--cache-dir") == (kept, env)


@pytest.mark.parametrize("uri", ["postgresql://u:p%40ss@db/kd", "gs://bucket/p?token=abc", "https://u:pw@host/x"])
def test_split_credentials_refuses_other_schemes_with_a_secret_without_showing_it(uri: str) -> None:
    with pytest.raises(UsageError, match=r"^--storage .*\*\*\*.*carries credentials") as error:
        split_credentials(uri, "--storage")
    assert "p%40ss" not in str(error.value) and "abc" not in str(error.value) and ":pw@" not in str(error.value)
