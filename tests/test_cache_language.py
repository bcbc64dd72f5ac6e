"""`kdtune cache ls / verify / prune` on the language task's entries (``<cache root>/lm/``): token blocks, a trained
teacher and its targets, built by the task's own preparation (a tiny corpus, the byte tokenizer, a tiny teacher).

``ls`` describes them from their footers and sidecars without importing torch or Ray; ``verify`` names each damaged
entry in one line and exits 1, whether the damage breaks a checksum or is written with a valid one (non-finite
targets, ids out of range, a teacher.json that describes another model); a study that finds a damaged entry builds
it again; ``prune`` removes entries by age as it does image entries, and abandoned temporaries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_language_study import _corpus
from test_language_study import _spec

from kdtune.cli import main
from kdtune.spec.conditions import expand
from kdtune.spec.schema import parse_spec
from kdtune.tasks import task_for


def _prepare(root: Path, corpus: Path) -> dict[str, Any]:
    """The language task's preparation of one condition into the cache ``root``: what it returns about its entries."""
    spec = parse_spec(_spec(corpus, "lm-cache", cache={"top_k": 8}))
    (condition,) = expand(spec)
    info, _ = task_for(spec).prepare(spec, condition, cache_dir=str(root), on_epoch=lambda epoch: None)
    return info


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One cache with a blocks, a teacher and a targets entry; each test gets a copy (:func:`lm_cache`)."""
    folder = tmp_path_factory.mktemp("lm-cache")
    corpus = _corpus(folder / "corpus.txt")
    info = _prepare(folder / "cache", corpus)
    return {"root": folder / "cache", "corpus": corpus, "info": info}


@pytest.fixture
def lm_cache(built: dict[str, Any], short_tmp: Path) -> dict[str, Any]:
    root = short_tmp / "cache"
    shutil.copytree(built["root"], root)
    info = built["info"]
    lm = root / "lm"
    return {"root": root, "corpus": built["corpus"], "info": info, "blocks": lm / "blocks" / info["blocks_key"],
            "teacher": lm / "teachers" / info["teacher_key"], "targets": lm / "targets" / f"{info['cache_key']}.parquet"}


def _cache(*args: str) -> tuple[int, str, str]:
    """``kdtune cache ARGS`` in a process of its own, which also reports whether torch, Ray or W&B were imported."""
    code = ("import sys\nfrom kdtune.cli import main\nrc = main(sys.argv[1:])\n"
            "print('imported:', sorted(m for m in ('ray', 'torch', 'wandb') if m in sys.modules), file=sys.stderr)\n"
            "sys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code, "cache", *args], capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def test_ls_describes_the_language_entries_without_torch(lm_cache: dict[str, Any]) -> None:
    info = lm_cache["info"]
    code, out, err = _cache("ls", "--cache-dir", str(lm_cache["root"]), "--format", "json")
    assert code == 0, err
    assert "imported: []" in err, err  # footers and sidecars only: no torch, no Ray
    rows = {row["kind"]: row for row in json.loads(out)}
    assert set(rows) == {"lm-blocks", "lm-teacher", "lm-targets"}
    blocks, teacher, targets = rows["lm-blocks"], rows["lm-teacher"], rows["lm-targets"]
    assert blocks["key"] == info["blocks_key"] and teacher["key"] == info["teacher_key"]
    assert targets["key"] == info["cache_key"] == f"{info['teacher_key']}-topk-8"
    n = info["blocks"]
    assert blocks["detail"] == (f"byte tokenizer (257 ids), context 16; {n['train']['blocks']}/{n['val']['blocks']}/"
                                f"{n['test']['blocks']} blocks (train/val/test)")
    assert blocks["dtype"] == "uint16"
    assert teacher["teacher"] == "transformer (d_model 48, n_heads 2, n_layers 2) seed 0, epoch " \
        f"{info['selected_epoch']}/3 (best_val)"
    assert teacher["test_loss"] == info["diagnostics"]["test_loss"]
    assert teacher["accuracy"] == info["diagnostics"]["test_accuracy"]
    assert targets["teacher"] == teacher["teacher"]
    assert targets["detail"] == f"top-8 of 257 ids, context 16; {n['train']['blocks']:,} training blocks"
    for row in rows.values():
        assert row["dataset"] == str(lm_cache["corpus"]) and row["created"] and row["size"] > 0, row
        assert row["problem"] is None and row["location"].startswith(str(lm_cache["root"] / "lm"))
    code, table, err = _cache("ls", "--cache-dir", str(lm_cache["root"]))
    assert code == 0 and "3 entries" in table and "test loss" in table and "top-8 of 257 ids" in table, table + err


def test_verify_passes_intact_entries(lm_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "verify", "--cache-dir", str(lm_cache["root"])]) == 0
    assert f"all 3 entries in {lm_cache['root']} are intact" in capsys.readouterr().out


# -- damage, and what verify and the next study say about it ----------------------------------------------------


def _flip_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def _rewrite_targets(path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """The targets written again with their checksums valid, after ``change`` on each row group's arrays."""
    from kdtune.tasks.language.cache_codec import TargetFile
    from kdtune.tasks.language.cache_codec import TargetWriter

    found = TargetFile(path)
    groups = [found.read_row_group(g) for g in range(found.num_row_groups)]
    with TargetWriter(path, found.format, found.meta) as writer:
        for arrays in groups:
            arrays = {name: np.array(a) for name, a in arrays.items()}
            change(arrays)
            writer.add(arrays.pop("index"), **arrays)


def _drop_a_row_group_checksum(path: Path) -> None:
    """The blocks written again, row group for row group, with the footer's last row-group checksum left out."""
    import pyarrow.parquet as pq

    from kdtune.tasks.language.blocks import METADATA_KEY

    file = pq.ParquetFile(path)
    meta = json.loads(file.metadata.metadata[METADATA_KEY])
    assert file.num_row_groups >= 2
    meta["group_sha256"] = meta["group_sha256"][:-1]
    schema = file.schema_arrow.with_metadata({METADATA_KEY: json.dumps(meta)})
    groups = [file.read_row_group(g) for g in range(file.num_row_groups)]
    with pq.ParquetWriter(path, schema) as writer:
        for group in groups:
            writer.write_table(group.replace_schema_metadata(schema.metadata), row_group_size=group.num_rows)


def _edit_teacher_json(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(cache: dict[str, Any]) -> None:
        path = cache["teacher"] / "teacher.json"
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))
    return edit


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        for key in keys[:-1]:
            record = record[key]
        record[keys[-1]] = value
    return change


# id, damage, the entry named, words of its problem, whether the next study builds it again
DAMAGE: list[tuple[str, Callable[[dict[str, Any]], None], str, str, bool]] = [
    ("blocks-byte", lambda c: _flip_byte(c["blocks"] / "train.parquet", 0.3), "blocks", "train.parquet", True),
    ("blocks-footer-checksums", lambda c: _drop_a_row_group_checksum(c["blocks"] / "train.parquet"), "blocks",
     "footer's checksums do not describe its", True),
    ("blocks-missing-split", lambda c: (c["blocks"] / "val.parquet").unlink(), "blocks", "val.parquet: missing", True),
    ("teacher-weights", lambda c: _flip_byte(c["teacher"] / "model.pt", 0.7), "teacher",
     "model.pt: does not match the sha256", True),
    ("teacher-recipe", _edit_teacher_json(_set("teacher", "kwargs", "d_model", value=32)), "teacher",
     "not those its key", True),
    ("teacher-vocabulary", _edit_teacher_json(_set("vocab_size", value=300)), "teacher",
     "does not load as the teacher its teacher.json describes", False),
    ("targets-truncated", lambda c: c["targets"].write_bytes(c["targets"].read_bytes()[:-100]), "targets",
     "not a kdtune target cache", True),
    ("targets-not-finite", lambda c: _rewrite_targets(c["targets"], lambda a: a["logits"].__setitem__((0, 0, 0), np.nan)),
     "targets", "invalid logits values", True),
    ("targets-ids-out-of-range", lambda c: _rewrite_targets(c["targets"], lambda a: a["ids"].__setitem__((0, 0, 0), 300)),
     "targets", "invalid ids values", True),
]


@pytest.mark.parametrize(("damage", "entry", "problem", "rebuilt"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_verify_names_a_damaged_entry_in_one_line_and_a_study_builds_it_again(
        lm_cache: dict[str, Any], capsys: pytest.CaptureFixture[str], damage: Callable[[dict[str, Any]], None],
        entry: str, problem: str, rebuilt: bool) -> None:
    root = str(lm_cache["root"])
    damage(lm_cache)
    assert main(["cache", "verify", "--cache-dir", root]) == 1
    out = capsys.readouterr()
    key = {"blocks": "blocks_key", "teacher": "teacher_key", "targets": "cache_key"}[entry]
    (line,) = out.out.splitlines()  # the damaged entry, and only it, in one line
    assert line.startswith(f"damaged lm-{entry} {lm_cache['info'][key]}: {lm_cache[entry]}") and problem in line, line
    assert "1 damaged entries" in out.err and "Traceback" not in out.err
    if not rebuilt:
        return
    info = _prepare(lm_cache["root"], lm_cache["corpus"])
    assert info["trained"] is (entry == "teacher")  # a teacher is trained again only when it was the damaged one
    assert info["teacher_key"] == lm_cache["info"]["teacher_key"]
    assert main(["cache", "verify", "--cache-dir", root]) == 0
    assert "all 3 entries" in capsys.readouterr().out


# -- prune -----------------------------------------------------------------------------------------------------


def _age(path: Path, days: float) -> None:
    then = time.time() - days * 86400
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (then, then))


def test_prune_removes_entries_by_age_and_abandoned_temporaries(lm_cache: dict[str, Any],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    root, info = str(lm_cache["root"]), lm_cache["info"]
    assert main(["cache", "prune", "--older-than", "7", "--cache-dir", root]) == 0
    assert "0 entries removed" in capsys.readouterr().out
    # the teacher was made 30 days ago (its record says so); the blocks' files are 30 days old (no record read)
    (lm_cache["blocks"] / "blocks.json").unlink()
    _age(lm_cache["blocks"], 30)
    _edit_teacher_json(_set("created", value=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                           time.gmtime(time.time() - 30 * 86400))))(lm_cache)
    assert main(["cache", "prune", "--older-than", "7", "--dry-run", "--cache-dir", root]) == 0
    out = capsys.readouterr().out
    assert f"would remove lm-teacher {info['teacher_key']}" in out and f"would remove lm-blocks {info['blocks_key']}" in out
    assert "lm-targets" not in out and "2 entries would be removed" in out
    assert lm_cache["teacher"].is_dir() and lm_cache["blocks"].is_dir()  # a dry run removes nothing
    # what killed builders leave: temporaries older than the age (and an hour) go, one being written now stays
    stale = [lm_cache["root"] / "lm" / "blocks" / "abc.tmp", lm_cache["root"] / "lm" / "targets" / "x-topk-8.parquet.tmp"]
    fresh = lm_cache["root"] / "lm" / "teachers" / "def.tmp"
    for folder in (stale[0], fresh):
        folder.mkdir()
        (folder / "train.parquet").write_bytes(b"half")
    stale[1].write_bytes(b"half")
    for path in stale:
        _age(path, 2 / 24)
    assert main(["cache", "prune", "--older-than", "0.05", "--cache-dir", root]) == 0  # 72 minutes
    out = capsys.readouterr().out
    assert "2 entries removed" in out and info["teacher_key"] in out and info["blocks_key"] in out
    assert not lm_cache["teacher"].exists() and not lm_cache["blocks"].exists() and lm_cache["targets"].is_file()
    assert not any(p.exists() for p in stale) and (fresh / "train.parquet").is_file()
    assert main(["cache", "ls", "--cache-dir", root, "--format", "json"]) == 0
    (targets,) = json.loads(capsys.readouterr().out)
    assert targets["kind"] == "lm-targets" and targets["teacher"] == f"teacher {info['teacher_key']} (no longer in the cache)"
    assert main(["cache", "prune", "--older-than", "0", "--cache-dir", root]) == 0
    assert "1 entries removed" in capsys.readouterr().out and not lm_cache["targets"].exists()
