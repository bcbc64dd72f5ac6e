"""A damaged cache that cannot be repaired, a cache "folder" that is a file, and files moved or rewritten between
the splits of an entry: one line each from every cache command, never a traceback; verify finds the moves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kdtune.cache import METADATA_KEY
from kdtune.cli import main


DISTILL = ["distill", "--dataset", "digits", "--noise", "0.1", "--teacher", "mlp", "--teacher-epochs", "1",
           "--student", "mlp", "--epochs", "1", "--threads", "1", "--format", "json"]


@pytest.fixture
def entry(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A cache with one teacher and one logits entry, built by `kdtune distill`."""
    root = short_tmp / "cache"
    assert main([*DISTILL, "--cache-dir", str(root)]) == 0
    cache = json.loads(capsys.readouterr().out)["cache"]
    return {"root": root, "logits": root / "logits" / cache["logits_key"], **cache}


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdtune: error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_cache_path_that_is_a_file_is_one_line(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = short_tmp / "afile"
    path.write_text("x")
    for argv in (["cache", "ls"], ["cache", "verify"], ["cache", "prune", "--older-than", "0"],
                 [*DISTILL]):
        assert main([*argv, "--cache-dir", str(path)]) == 2
        assert "is a file" in one_error_line(capsys.readouterr().err)
    assert path.read_text() == "x"


def test_damage_in_a_cache_that_cannot_be_written_is_one_line(entry: dict[str, Any],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Read-only for a user; root ignores file modes, so there the lock folder is made unusable instead (`cache
    prune` is checked as an unprivileged user below)."""
    root: Path = entry["root"]
    train = entry["logits"] / "train.parquet"
    train.write_bytes(train.read_bytes()[:-100])  # truncated: damaged
    if os.geteuid() == 0:
        import shutil

        shutil.rmtree(root / "locks", ignore_errors=True)
        (root / "locks").write_text("not a folder")
    folders = [p for p in [root, *root.rglob("*")] if p.is_dir()]
    for p in folders:
        p.chmod(0o555)
    try:
        assert main(["cache", "ls", "--cache-dir", str(root)]) == 0
        assert "Traceback" not in capsys.readouterr().err
        assert main(["cache", "verify", "--cache-dir", str(root)]) == 1
        out = capsys.readouterr()
        assert f"damaged logits {entry['logits_key']}" in out.out and "Traceback" not in out.err
        assert main([*DISTILL, "--cache-dir", str(root)]) == 1
        assert "cannot write" in one_error_line(capsys.readouterr().err)
    finally:
        for p in folders:
            p.chmod(0o755)


def _bound_by_file_modes() -> None:
    """In the child before it starts: drop the capabilities that let root ignore file modes (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH, CAP_FOWNER) from its bounding set, so that the program it runs as root has them no more."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {capability})")


def test_prune_in_a_cache_that_cannot_be_written_is_one_line(entry: dict[str, Any]) -> None:
    """`cache prune` on read-only folders: one line, exit 1, nothing removed. It runs in a child process which,
    when the tests run as root (as in CI), gives up root's power to ignore file modes, so the modes really bind."""
    import subprocess
    import sys

    root: Path = entry["root"]
    files = sorted(p.relative_to(root) for p in root.rglob("*"))
    folders = [p for p in [root, *root.rglob("*")] if p.is_dir()]
    for p in folders:
        p.chmod(0o555)
    try:
        result = subprocess.run([sys.executable, "-m", "kdtune", "cache", "prune", "--older-than", "0", "--cache-dir",
                                 str(root)], capture_output=True, text=True, timeout=120,
                                preexec_fn=_bound_by_file_modes if os.geteuid() == 0 else None)
    finally:
        for p in folders:
            p.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "cannot remove" in one_error_line(result.stderr)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == files


def test_verify_finds_split_files_swapped_between_splits(entry: dict[str, Any],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    val, test = entry["logits"] / "val.parquet", entry["logits"] / "test.parquet"
    val_bytes = val.read_bytes()
    val.write_bytes(test.read_bytes())
    test.write_bytes(val_bytes)
    assert main(["cache", "verify", "--cache-dir", str(entry["root"])]) == 1
    assert "holds the 'test' split, not 'val'" in capsys.readouterr().out


def test_verify_finds_labels_rewritten_with_a_valid_checksum(entry: dict[str, Any],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The logits checksum does not cover the labels: verify compares them with the rebuilt dataset."""
    path = entry["logits"] / "train.parquet"
    table = pq.read_table(path)
    labels = table.column("label").to_numpy().copy()
    labels[:5] = (labels[:5] + 1) % 10
    table = table.set_column(table.schema.get_field_index("label"), table.schema.field("label"),
                             pa.array(labels))
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)}), path)
    assert main(["cache", "verify", "--cache-dir", str(entry["root"])]) == 1
    assert "rows or labels do not match the dataset" in capsys.readouterr().out


def test_verify_passes_an_intact_entry(entry: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "verify", "--cache-dir", str(entry["root"])]) == 0
    assert "are intact" in capsys.readouterr().out
