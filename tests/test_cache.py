"""The teacher-logit cache on real files: round trip, float16, damage and rebuild, locks, concurrent builders, S3.

Run: .venv/bin/python -m pytest -q tests/test_cache.py
Teachers are tiny (an MLP with 32 hidden units, 2 epochs on the bundled digits) so that the file runs fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from kdtune.cache import SPLITS
from kdtune.cache import LogitCache
from kdtune.cache import default_cache_root
from kdtune.cache import teacher_key
from kdtune.cache.teacher import TeacherSpec
from kdtune.core.data import DataBundle
from kdtune.errors import CacheError
from kdtune.errors import SpecError


SPEC = TeacherSpec(arch="mlp", kwargs={"widths": [32]}, epochs=2, lr=3e-3)


@pytest.fixture(scope="module")
def data(noisy_digits: DataBundle) -> DataBundle:
    return noisy_digits


def _split_file(root: Path, key: str, split: str = "train") -> Path:
    return root / "logits" / key / f"{split}.parquet"


def test_round_trip_keeps_values_dtypes_and_order(short_tmp: Path, data: DataBundle) -> None:
    built = LogitCache(short_tmp).prepare(SPEC, data, threads=1)
    assert (built.hit, built.trained) == (False, True)
    expected = built.teacher.logits(data)
    for name, split, tensor, want in zip(SPLITS, (data.train, data.val, data.test),
                                         (built.logits.train, built.logits.val, built.logits.test),
                                         (expected.train, expected.val, expected.test)):
        assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (len(split), data.num_classes)
        assert torch.equal(tensor, want)  # float32 is stored exactly
        table = pq.read_table(_split_file(short_tmp, built.key, name))
        assert table.schema.field("index").type == pa.int32()
        assert table.schema.field("logits").type == pa.list_(pa.field("element", pa.float32(), nullable=False),
                                                             data.num_classes)
        assert table.column("index").to_pylist() == list(range(len(split)))
        assert np.array_equal(table.column("label").to_numpy(), split.clean.numpy())
        assert np.array_equal(table.column("train_label").to_numpy(), split.y.numpy())
        assert np.array_equal(table.column("flipped").to_numpy(), split.flipped.numpy())
    assert int(data.train.flipped.sum()) > 0  # the noisy labels really are recorded, not just the clean ones

    # The tensors are views of the decoded Arrow buffers: no copy between Parquet and torch.
    assert built.logits.train.data_ptr() == built.arrays["train"].ctypes.data
    assert not built.arrays["train"].flags.writeable

    again = LogitCache(short_tmp).prepare(SPEC, data, threads=1)
    assert (again.hit, again.trained, again.key) == (True, False, built.key)
    for name in SPLITS:
        assert np.array_equal(again.arrays[name], built.arrays[name])
    assert again.diagnostics == built.diagnostics
    assert again.teacher.fingerprint == built.teacher.fingerprint


def test_file_metadata_records_provenance_and_checksum(short_tmp: Path, data: DataBundle) -> None:
    built = LogitCache(short_tmp).prepare(SPEC, data, threads=1)
    path = _split_file(short_tmp, built.key, "val")
    meta = json.loads(pq.read_metadata(path).metadata[b"kdtune"])
    assert meta["teacher"]["spec"] == SPEC.to_dict()
    assert meta["teacher"]["selected_epoch"] == built.teacher.selected_epoch
    assert meta["teacher"]["val_accuracy"] == built.teacher.selected["val_accuracy"]
    assert meta["diagnostics"] == built.diagnostics and meta["diagnostics"]["memorisation_rate"] is not None
    assert meta["dataset"]["description"] == data.description
    assert meta["dataset"]["fingerprint"] == data.fingerprint()
    assert meta["rows"] == len(data.val) and meta["split"] == "val" and meta["dtype"] == "float32"
    assert meta["logits_sha256"] == hashlib.sha256(np.ascontiguousarray(built.arrays["val"]).tobytes()).hexdigest()
    assert meta["kdtune_version"] and meta["created"].endswith("Z")
    assert pq.ParquetFile(path).metadata.row_group(0).column(1).compression == "ZSTD"


def test_float16_entry_is_close_and_does_not_retrain(short_tmp: Path, data: DataBundle) -> None:
    cache = LogitCache(short_tmp)
    full = cache.prepare(SPEC, data, threads=1)
    half = cache.prepare(SPEC, data, dtype="float16", threads=1)
    assert half.key != full.key and half.teacher_key == full.teacher_key
    assert (half.hit, half.trained) == (False, False)  # same teacher from the cache, new logits entry
    assert half.arrays["test"].dtype == np.float16 and half.logits.test.dtype == torch.float32
    assert pq.read_schema(_split_file(short_tmp, half.key)).field("logits").type.value_type == pa.float16()
    for name in SPLITS:
        error = np.abs(half.arrays[name].astype(np.float32) - full.arrays[name]).max()
        assert 0 < error < 0.01
    with pytest.raises(SpecError, match="dtype = 'bfloat16'"):
        cache.prepare(SPEC, data, dtype="bfloat16")


def test_cache_hit_runs_no_teacher_at_all(short_tmp: Path, data: DataBundle,
                                          teacher_forwards: list[int]) -> None:
    epochs: list[int] = []
    LogitCache(short_tmp).prepare(SPEC, data, threads=1, on_epoch=lambda m: epochs.append(m.epoch))
    assert epochs == [1, 2] and teacher_forwards[0] > 0
    teacher_forwards[0] = 0
    hit = LogitCache(short_tmp).prepare(SPEC, data, threads=1, on_epoch=lambda m: epochs.append(m.epoch))
    assert hit.hit and epochs == [1, 2] and teacher_forwards[0] == 0


def test_keys_follow_content(short_tmp: Path, data: DataBundle) -> None:
    fp = data.fingerprint()
    assert teacher_key(SPEC, fp) == teacher_key(TeacherSpec(**SPEC.to_dict()), fp)
    for change in ({"select": "final"}, {"seed": 1}, {"epochs": 3}, {"kwargs": {"widths": [33]}}):
        assert teacher_key(TeacherSpec(**{**SPEC.to_dict(), **change}), fp) != teacher_key(SPEC, fp)
    assert teacher_key(SPEC, fp) != teacher_key(SPEC, "0" * 32)


# -- damage ---------------------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bit_in_logits_page(path: Path) -> None:
    chunk = pq.read_metadata(path).row_group(0).column(1)
    assert chunk.path_in_schema == "logits.list.element"
    raw = bytearray(path.read_bytes())
    raw[chunk.data_page_offset + chunk.total_compressed_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    """Decode, change, and write back as a perfectly valid Parquet file with the original metadata."""
    table = pq.ParquetFile(path).read()
    changed = change(table)
    assert changed.schema.metadata == table.schema.metadata
    pq.write_table(changed, path, compression="zstd", row_group_size=table.num_rows)


def _logits_to_float64(table: pa.Table) -> pa.Table:
    values = table.column("logits").combine_chunks().flatten().cast(pa.float64())
    k = table.schema.field("logits").type.list_size
    return table.set_column(1, "logits", pa.FixedSizeListArray.from_arrays(values, k))


def _logits_plus_one(table: pa.Table) -> pa.Table:
    field = table.schema.field("logits")
    values = pa.array(table.column("logits").combine_chunks().flatten().to_numpy() + np.float32(1))
    return table.set_column(1, field, pa.FixedSizeListArray.from_arrays(values, type=field.type))


DAMAGE = {
    "truncated": (_truncate, "damaged"),
    "bit flip in the logits page": (_flip_bit_in_logits_page, "damaged"),
    "schema changed": (lambda p: _rewrite(p, _logits_to_float64), "schema changed"),
    "values changed, file valid": (lambda p: _rewrite(p, _logits_plus_one), "checksum mismatch"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_detected_and_rebuilt(short_tmp: Path, data: DataBundle, damage: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    corrupt, message = DAMAGE[damage]
    cache = LogitCache(short_tmp)
    built = cache.prepare(SPEC, data, threads=1)
    path = _split_file(short_tmp, built.key)
    corrupt(path)

    with pytest.raises(CacheError, match=f"{path}: .*{message}"):
        cache.read(built.key)
    (problem,) = cache.verify()
    assert problem.key == built.key and str(path) in (problem.problem or "")

    with caplog.at_level(logging.WARNING, logger="kdtune.cache"):
        rebuilt = cache.prepare(SPEC, data, threads=1)
    assert f"{path}" in caplog.text and "rebuilding" in caplog.text
    assert (rebuilt.hit, rebuilt.trained, rebuilt.key) == (False, False, built.key)  # teacher intact: logits only
    assert np.array_equal(rebuilt.arrays["train"], built.arrays["train"])
    assert cache.verify() == []
    assert cache.prepare(SPEC, data, threads=1).hit


def test_damaged_teacher_checkpoint_is_retrained(short_tmp: Path, data: DataBundle) -> None:
    cache = LogitCache(short_tmp)
    built = cache.prepare(SPEC, data, threads=1)
    (weights,) = (short_tmp / "teachers" / built.teacher_key).glob("weights-*.safetensors")
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x01
    weights.write_bytes(bytes(raw))
    (problem,) = cache.verify()
    assert problem.kind == "teacher" and weights.name in (problem.problem or "")
    again = cache.prepare(SPEC, data, threads=1)
    assert again.trained and not again.hit
    assert cache.verify() == []


def test_missing_entry_is_a_cache_error_naming_the_file(short_tmp: Path) -> None:
    with pytest.raises(CacheError, match=r"logits/0123/train\.parquet: not in the cache"):
        LogitCache(short_tmp).read("0123")


# -- locks and concurrent builders ------------------------------------------------------------------------


def _write_lock(root: Path, data: DataBundle, record: dict[str, Any], age_seconds: float = 0.0) -> Path:
    lock = root / "locks" / f"{teacher_key(SPEC, data.fingerprint())}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"token": "someone-else", **record}))
    stamp = time.time() - age_seconds
    os.utime(lock, (stamp, stamp))
    return lock


def test_lock_of_a_dead_process_is_broken(short_tmp: Path, data: DataBundle,
                                          caplog: pytest.LogCaptureFixture) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    lock = _write_lock(short_tmp, data, {"pid": int(finished.stdout), "host": socket.gethostname()})
    with caplog.at_level(logging.WARNING, logger="kdtune.cache"):
        built = LogitCache(short_tmp).prepare(SPEC, data, threads=1)
    assert built.trained
    assert f"PID {int(finished.stdout)}" in caplog.text and "is gone" in caplog.text  # not the heartbeat timeout
    assert not lock.exists()


def test_lock_without_heartbeat_is_broken(short_tmp: Path, data: DataBundle,
                                          caplog: pytest.LogCaptureFixture) -> None:
    lock = _write_lock(short_tmp, data, {"pid": 1, "host": "another-node"}, age_seconds=3600)
    with caplog.at_level(logging.WARNING, logger="kdtune.cache"):
        assert LogitCache(short_tmp).prepare(SPEC, data, threads=1).trained
    assert "no heartbeat" in caplog.text
    assert not lock.exists()


def test_live_lock_makes_builders_wait(short_tmp: Path, data: DataBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The order of events, not a duration: a live lock is held, the builder finds it held (the lock's own
    staleness check runs, observed, and says live) and writes nothing; only after the lock is released does the
    builder train its first teacher epoch."""
    from kdtune.cache import lock as lock_module

    lock = _write_lock(short_tmp, data, {"pid": os.getpid(), "host": socket.gethostname()})
    events: list[str] = []
    waiting = threading.Event()
    judge = lock_module._stale_reason

    def observed(owner: dict[str, Any] | None, mtime: float) -> str | None:
        reason = judge(owner, mtime)
        events.append("found it held" if reason is None else f"broke it: {reason}")
        if (short_tmp / "teachers").exists() or (short_tmp / "logits").exists():
            events.append("wrote while it was held")
        waiting.set()
        return reason

    monkeypatch.setattr(lock_module, "_stale_reason", observed)
    results: list[Any] = []
    builder = threading.Thread(target=lambda: results.append(
        LogitCache(short_tmp).prepare(SPEC, data, threads=1, on_epoch=lambda m: events.append("teacher epoch"))))
    builder.start()
    while not waiting.wait(timeout=0.05) and builder.is_alive():
        pass
    assert waiting.is_set(), f"the builder never met the held lock: {events}"
    events.append("released")
    lock.unlink()
    builder.join(timeout=300)
    assert not builder.is_alive() and results and results[0].trained
    released = events.index("released")
    assert events[:released] and set(events[:released]) == {"found it held"}, events
    assert "teacher epoch" in events[released:] and set(events[released:]) <= {"found it held", "released", "teacher epoch"}


def _builder(root: str, out: str, barrier: Any) -> None:
    """One process of the concurrency test: leaves a marker only if it really trained a teacher."""
    from kdtune.tasks.datasets import load_dataset

    log = os.open(Path(out) / f"stderr-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT, 0o644)  # shown if it fails
    os.dup2(log, 2)

    data = load_dataset("digits", noise_level=0.1, seed=0)
    marker = Path(out) / f"trained-{os.getpid()}"
    barrier.wait(timeout=120)
    prepared = LogitCache(root).prepare(SPEC, data, threads=1, on_epoch=lambda m: marker.touch())
    np.savez(Path(out) / f"arrays-{os.getpid()}.npz", key=prepared.key, **prepared.arrays)
    # Skip interpreter finalisation: pyarrow's Parquet threads can abort a process at exit, after its work is
    # done ("terminate called without an active exception", apache/arrow#34314; seen here about once in ten).
    os._exit(0)


def test_concurrent_builders_train_once_and_agree(short_tmp: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    root, out = short_tmp / "cache", short_tmp / "out"
    out.mkdir()
    barrier = ctx.Barrier(4)
    workers = [ctx.Process(target=_builder, args=(str(root), str(out), barrier)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    logs = "\n".join(f"{f.name}: {f.read_text()[-2000:]}" for f in sorted(out.glob("stderr-*.log")))
    assert [w.exitcode for w in workers] == [0, 0, 0, 0], logs
    assert len(list(out.glob("trained-*"))) == 1  # one teacher training on this machine
    results = [np.load(f) for f in sorted(out.glob("arrays-*.npz"))]
    assert len(results) == 4 and len({str(r["key"]) for r in results}) == 1
    for r in results[1:]:
        for name in SPLITS:
            assert np.array_equal(r[name], results[0][name])
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    key = str(results[0]["key"])
    assert [f for f in files if f.startswith("logits/")] == [f"logits/{key}/{s}.parquet" for s in sorted(SPLITS)]
    assert len([f for f in files if f.startswith("teachers/")]) == 2  # weights + sidecar, nothing half-written
    assert not [f for f in files if f.startswith("locks/")]  # released


# -- roots ------------------------------------------------------------------------------------------------


def test_default_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, short_tmp: Path) -> None:
    monkeypatch.setenv("KDTUNE_CACHE_DIR", str(short_tmp / "here"))
    assert default_cache_root() == short_tmp / "here" and LogitCache().location == str(short_tmp / "here")
    monkeypatch.delenv("KDTUNE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(short_tmp / "xdg"))
    assert default_cache_root() == short_tmp / "xdg" / "kdtune" / "cache"


def test_file_uri_and_plain_path_are_the_same_root(short_tmp: Path, data: DataBundle) -> None:
    built = LogitCache(f"file://{short_tmp}").prepare(SPEC, data, threads=1)
    assert built.location == f"file://{short_tmp}/logits/{built.key}"
    assert LogitCache(short_tmp).prepare(SPEC, data, threads=1).hit


def test_unusable_uri_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="cache_dir = 'nosuchfs://x/y'"):
        LogitCache("nosuchfs://x/y")


# -- entries and prune --------------------------------------------------------------------------------------


def test_entries_and_prune(short_tmp: Path, data: DataBundle) -> None:
    cache = LogitCache(short_tmp)
    built = cache.prepare(SPEC, data, threads=1)
    entries = {e.kind: e for e in cache.entries()}
    assert set(entries) == {"teacher", "logits"}
    assert entries["logits"].key == built.key and entries["teacher"].key == built.teacher_key
    assert entries["logits"].dataset == "digits" and entries["logits"].noise == "10% symmetric"
    assert entries["logits"].accuracy == pytest.approx(built.diagnostics["test_accuracy"])
    assert entries["logits"].size == sum(_split_file(short_tmp, built.key, s).stat().st_size for s in SPLITS)
    leftover = short_tmp / "logits" / built.key / "train.parquet.tmp-deadhost-1-abcd"
    leftover.write_bytes(b"half a file")
    os.utime(leftover, (time.time() - 3 * 86400,) * 2)

    assert cache.prune(1.0) == [] and len(cache.entries()) == 2
    assert not leftover.exists()  # an old temporary file from a killed writer goes
    removed = cache.prune(0)
    assert {e.key for e in removed} == {built.key, built.teacher_key}
    assert cache.entries() == []
    assert not cache.prepare(SPEC, data, threads=1).hit
    with pytest.raises(SpecError, match="older_than_days"):
        cache.prune(-1)


def test_readonly_arrays_reach_torch_without_a_warning(short_tmp: Path) -> None:
    code = ("import warnings; warnings.simplefilter('error', UserWarning);"
            "from kdtune.cache import LogitCache; from kdtune.tasks.datasets import load_dataset;"
            "from kdtune.cache.teacher import TeacherSpec;"
            f"spec = TeacherSpec(**{SPEC.to_dict()!r}); data = load_dataset('digits');"
            f"[LogitCache({str(short_tmp)!r}).prepare(spec, data, threads=1) for _ in range(2)]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


# -- S3 ---------------------------------------------------------------------------------------------------




@pytest.fixture
def s3_root(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import pyarrow.fs as pafs

    for var, value in (("AWS_EC2_METADATA_DISABLED", "true"), ("AWS_ACCESS_KEY_ID", "kdtune-test"),
                       ("AWS_SECRET_ACCESS_KEY", "kdtune-test-secret"), ("AWS_DEFAULT_REGION", "us-east-1"),
                       ("AWS_REGION", "us-east-1")):
        monkeypatch.setenv(var, value)
    assert s3_server.startswith("127.0.0.1:")
    pafs.S3FileSystem(endpoint_override=s3_server, scheme="http", region="us-east-1",
                      allow_bucket_creation=True).create_dir("kdtune-test")
    return f"s3://kdtune-test/cache?endpoint_override={s3_server}&scheme=http&region=us-east-1"


def test_s3_round_trip_damage_and_prune(s3_root: str, data: DataBundle) -> None:
    import pyarrow.fs as pafs

    built = LogitCache(s3_root).prepare(SPEC, data, threads=1)
    assert built.trained and built.location == f"s3://kdtune-test/cache/logits/{built.key}"  # no query shown
    hit = LogitCache(s3_root).prepare(SPEC, data, threads=1)
    assert hit.hit and hit.key == built.key
    for name in SPLITS:
        assert np.array_equal(hit.arrays[name], built.arrays[name])
    cache = LogitCache(s3_root)
    assert {e.kind for e in cache.entries()} == {"teacher", "logits"} and cache.verify() == []

    fs, base = pafs.FileSystem.from_uri(s3_root)
    obj = f"{base}/logits/{built.key}/val.parquet"
    raw = fs.open_input_file(obj).read()
    with fs.open_output_stream(obj) as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(CacheError, match=f"s3://kdtune-test/cache/logits/{built.key}/val.parquet: damaged"):
        cache.read(built.key)
    rebuilt = cache.prepare(SPEC, data, threads=1)
    assert not rebuilt.hit and not rebuilt.trained and cache.verify() == []

    assert len(cache.prune(0)) == 2 and cache.entries() == []
