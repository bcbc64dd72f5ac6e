"""`kdtune cache ls|verify|prune` and `kdtune distill`'s use of the cache, run in-process through kdtune.cli.main.

In-process so that teacher forward passes can be counted with a global forward hook: the second identical
`kdtune distill` must train no teacher and run no teacher forward at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kdtune.cli import main


DISTILL = ["distill", "--dataset", "digits", "--noise", "0.1", "--teacher", "mlp", "--teacher-epochs", "2",
           "--epochs", "1", "--threads", "1", "--format", "json"]


@pytest.fixture
def filled_cache(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A cache holding one teacher and one logits entry, built by `kdtune distill`."""
    assert main([*DISTILL, "--cache-dir", str(short_tmp)]) == 0
    out = json.loads(capsys.readouterr().out)
    return {"root": short_tmp, **out["cache"]}


def test_second_distill_trains_no_teacher_and_runs_no_forward(short_tmp: Path, teacher_forwards: list[int],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*DISTILL, "--cache-dir", str(short_tmp)]) == 0
    first = capsys.readouterr()
    assert teacher_forwards[0] > 0 and "from the cache" not in first.err
    teacher_forwards[0] = 0

    assert main([*DISTILL, "--cache-dir", str(short_tmp)]) == 0
    second = capsys.readouterr()
    assert teacher_forwards[0] == 0
    out, before = json.loads(second.out), json.loads(first.out)
    assert out["cache"]["hit"] and not before["cache"]["hit"]
    assert f"teacher from the cache: {out['cache']['teacher_key']}" in second.err
    assert out["cache"]["logits_key"] in second.err
    assert out["models"] == before["models"]  # same teacher, same logits, same paired students
    assert out["teacher_diagnostics"] == before["teacher_diagnostics"]


def test_distill_rejects_an_unusable_cache_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*DISTILL, "--cache-dir", "nosuchfs://x"]) == 2
    assert "--cache-dir = 'nosuchfs://x'" in capsys.readouterr().err


def test_ls_shows_the_entries(filled_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = str(filled_cache["root"])
    assert main(["cache", "ls", "--cache-dir", root, "--format", "json"]) == 0
    rows = {row["kind"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["logits"]["key"] == filled_cache["logits_key"]
    assert rows["teacher"]["key"] == filled_cache["teacher_key"]
    for row in rows.values():
        assert row["dataset"] == "digits" and row["noise"] == "10% symmetric" and row["teacher"].startswith("mlp")
        assert 0 < row["accuracy"] <= 1 and row["size"] > 0 and row["created"] and row["problem"] is None
    assert main(["cache", "ls", "--cache-dir", root]) == 0
    table = capsys.readouterr().out
    assert filled_cache["logits_key"] in table and "digits" in table and "2 entries" in table


def test_verify_exit_codes(filled_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = filled_cache["root"]
    assert main(["cache", "verify", "--cache-dir", str(root)]) == 0
    assert "all 2 entries" in capsys.readouterr().out
    damaged = root / "logits" / filled_cache["logits_key"] / "test.parquet"
    damaged.write_bytes(damaged.read_bytes()[:-40])
    assert main(["cache", "verify", "--cache-dir", str(root)]) == 1
    out = capsys.readouterr()
    assert f"damaged logits {filled_cache['logits_key']}: {damaged}" in out.out
    assert filled_cache["teacher_key"] not in out.out  # only the damaged entry is listed
    assert "1 damaged" in out.err


def test_prune_removes_old_entries(filled_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = str(filled_cache["root"])
    assert main(["cache", "prune", "--older-than", "7", "--cache-dir", root]) == 0
    assert "0 entries removed" in capsys.readouterr().out
    assert main(["cache", "prune", "--older-than", "0", "--dry-run", "--cache-dir", root, "--debug"]) == 0
    out = capsys.readouterr().out
    assert f"would remove logits {filled_cache['logits_key']}" in out and "2 entries would be removed" in out
    assert main(["cache", "ls", "--cache-dir", root, "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2  # the dry run removed nothing
    assert main(["cache", "prune", "--older-than", "0", "--cache-dir", root]) == 0
    out = capsys.readouterr().out
    assert filled_cache["logits_key"] in out and "2 entries removed" in out
    assert main(["cache", "ls", "--cache-dir", root, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_prune_refuses_a_negative_age(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "prune", "--older-than", "-1", "--cache-dir", str(short_tmp)]) == 2
    assert "--older-than = -1.0: must be a number of days >= 0" in capsys.readouterr().err


def test_default_cache_dir_is_the_environment_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "ls", "--format", "table"]) == 0
    assert os.environ["KDTUNE_CACHE_DIR"] in " ".join(capsys.readouterr().out.split())
