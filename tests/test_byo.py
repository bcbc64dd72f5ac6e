"""Bring your own models, data, teacher weights and teacher logits (docs/byo.md).

The user's code is played by tests/kd_fixtures.py (model factories and data loaders loaded by import path, also
inside Ray workers); everything else is the real thing: real files, the real cache, real studies on a local Ray.
alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import tiny_study_spec
from kd_fixtures import blobs

from kdtune.cache import LogitCache
from kdtune.cache import logits_key
from kdtune.cache.teacher import TeacherSpec
from kdtune.cache.teacher import build_checked
from kdtune.cache.teacher import train_teacher
from kdtune.cache.teacher import weights_fingerprint
from kdtune.cli import main
from kdtune.core.data import DataBundle
from kdtune.core.train import EVAL_BATCH_SIZE
from kdtune.core.train import predict
from kdtune.errors import CacheError
from kdtune.errors import DataError
from kdtune.errors import SpecError
from kdtune.records.results import read_trials
from kdtune.spec.schema import parse_spec
from kdtune.study.driver import RunOptions
from kdtune.study.driver import run_study
from kdtune.tasks.datasets import load_dataset


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset("digits", val_fraction=0.2)


def _accuracy(model: torch.nn.Module, data: DataBundle) -> float:
    return float((predict(model, data.test.x).argmax(1) == data.test.clean).double().mean())


def _blobs_npz(path: Path, **changes: Any) -> Path:
    arrays = {"x": blobs()["x_train"], "y": blobs()["y_train"]}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


# ---------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ("kd_fixtures:wrong_classes", r"^student\.arch = 'kd_fixtures:wrong_classes': returned outputs of shape "
                                      r"\(4, 7\); expected \(4, 10\) logits for 10 classes$"),
        ("kd_fixtures:no_such_factory", "does not import: module 'kd_fixtures' has no attribute 'no_such_factory'"),
        ("no_such_pkg.models:make", "does not import: No module named 'no_such_pkg'"),
        ("kd_fixtures:NOT_CALLABLE", "'kd_fixtures:NOT_CALLABLE': is not callable"),
        ("kd_fixtures:raises_on_call", r"failed when called as factory\(\(1, 8, 8\), 10\): RuntimeError: cannot "
                                       "build this model here"),
        ("kd_fixtures:flat_only", r"failed on a batch of shape \(4, 1, 8, 8\): RuntimeError: mat1 and mat2"),
        ("kd_fixtures:tuple_output", r"returned tuple from forward; expected a tensor of shape \(4, 10\)"),
    ],
)
def test_malformed_model_gets_its_one_line_message(digits: DataBundle, arch: str, match: str) -> None:
    with pytest.raises(SpecError, match=match) as info:
        build_checked(arch, digits, field="student.arch")
    assert "\n" not in str(info.value)


def test_user_factory_gets_its_kwargs_and_passes_the_check(digits: DataBundle) -> None:
    model = build_checked("kd_fixtures:small_mlp", digits, kwargs={"width": 5}, field="student.arch")
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [5, 10]
    with pytest.raises(SpecError, match=r"student\.arch kwargs = \{'widht': 5\}: not accepted by small_mlp"):
        build_checked("kd_fixtures:small_mlp", digits, kwargs={"widht": 5}, field="student.arch")


def test_distill_refuses_a_wrong_student_before_any_teacher_trains(short_tmp: Path, teacher_forwards: list[int],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["distill", "--teacher", "mlp", "--student", "kd_fixtures:wrong_classes", "--teacher-epochs", "1",
                 "--cache-dir", str(short_tmp)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("kdtune: error: --student = 'kd_fixtures:wrong_classes': returned outputs of shape (4, 7); "
                   "expected (4, 10) logits for 10 classes\n")
    assert teacher_forwards[0] == 1  # the student's one check batch (an MLP too); no teacher forward, no training
    assert list(short_tmp.iterdir()) == []


@pytest.mark.slow
def test_study_stops_early_with_the_models_one_line_error(ray_local: None, short_tmp: Path) -> None:
    spec = tiny_study_spec("byo-wrong", student={"arch": "kd_fixtures:wrong_classes", "epochs": 2})
    with pytest.raises(SpecError) as info:
        run_study(spec, RunOptions(out=short_tmp / "study", cache_dir=str(short_tmp / "cache"), progress=False))
    assert str(info.value) == ("student.arch = 'kd_fixtures:wrong_classes': returned outputs of shape (4, 7); "
                               "expected (4, 10) logits for 10 classes")
    assert not (short_tmp / "cache" / "teachers").exists()  # checked before any teacher trained
    assert not (short_tmp / "study" / "results.parquet").exists()


# ------------------------------------------------------------------------------------------------ data


def test_loader_data_goes_through_the_same_subset_split_and_noise() -> None:
    clean = load_dataset("kd_fixtures:blobs", train_size=400, val_fraction=0.1, seed=3)
    noisy = load_dataset("kd_fixtures:blobs", train_size=400, val_fraction=0.1, noise_level=0.2, seed=3)
    assert (noisy.num_classes, noisy.input_shape) == (4, (12,))
    assert len(noisy.test) == 120 and np.bincount(noisy.test.y.numpy()).tolist() == [30, 30, 30, 30]  # 20% held out
    assert len(noisy.train) + len(noisy.val) == 400 and len(noisy.val) == 40
    assert int(noisy.train.flipped.sum()) == round(0.2 * len(noisy.train))
    assert torch.equal(noisy.train.x, clean.train.x) and torch.equal(noisy.train.clean, clean.train.clean)
    assert noisy.fingerprint() != clean.fingerprint()
    assert noisy.samples_fingerprint() == clean.samples_fingerprint()
    again = load_dataset("kd_fixtures:blobs", train_size=400, val_fraction=0.1, noise_level=0.2, seed=3)
    assert again.fingerprint() == noisy.fingerprint()


def test_loader_may_return_tensors_a_test_split_and_a_class_count() -> None:
    data = load_dataset("kd_fixtures:blobs_tensors")
    assert len(data.test) == 200 and len(data.train) + len(data.val) == 600 and data.num_classes == 4


def test_the_same_arrays_from_a_loader_or_a_file_are_the_same_dataset(short_tmp: Path) -> None:
    from_file = load_dataset("mine", files=[str(_blobs_npz(short_tmp / "blobs.npz"))], noise_level=0.1)
    from_loader = load_dataset("kd_fixtures:blobs", noise_level=0.1)
    assert from_file.fingerprint() == from_loader.fingerprint()  # content-addressed: the cache works unchanged


def test_parquet_files_with_a_sample_shape_and_a_test_file(short_tmp: Path, digits: DataBundle) -> None:
    def write(path: Path, x: np.ndarray, y: np.ndarray) -> str:
        flat = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), 64)
        table = pa.table({"x": flat, "y": pa.array(y, pa.int64())})
        pq.write_table(table.replace_schema_metadata({"shape": "[1, 8, 8]", "num_classes": "10"}), path)
        return str(path)

    pool_x = torch.cat([digits.train.x, digits.val.x]).numpy()
    pool_y = torch.cat([digits.train.clean, digits.val.clean]).numpy()
    files = [write(short_tmp / "train.parquet", pool_x, pool_y),
             write(short_tmp / "test.parquet", digits.test.x.numpy(), digits.test.clean.numpy())]
    data = load_dataset("mine", files=files, val_fraction=0.2)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.test) == len(digits.test) and torch.equal(data.test.x, digits.test.x)
    assert len(data.train) + len(data.val) == len(pool_y)


def _ragged(path: Path) -> None:
    x = pa.array([[0.0] * 12] * 3 + [[0.0] * 11], pa.list_(pa.float32()))
    pq.write_table(pa.table({"x": x, "y": pa.array([0, 1, 0, 1])}), path)


def _null_label(path: Path) -> None:
    pq.write_table(pa.table({"x": pa.array([[0.0] * 12] * 4, pa.list_(pa.float32())),
                             "y": pa.array([0, 1, None, 1], pa.int64())}), path)


def _bad_shape(path: Path) -> None:
    table = pa.table({"x": pa.array([[0.0] * 12] * 4, pa.list_(pa.float32())), "y": pa.array([0, 1, 0, 1])})
    pq.write_table(table.replace_schema_metadata({"shape": "[2, 5]"}), path)


def _nan_at_137() -> dict[str, Any]:
    x = blobs()["x_train"].copy()
    x[137, 3] = np.nan
    return {"x": x}


def _inf_at_5() -> dict[str, Any]:
    x = blobs()["x_train"].copy()
    x[5, 0] = -np.inf
    return {"x": x}


def _label(i: int, value: int) -> dict[str, Any]:
    y = blobs()["y_train"].copy()
    y[i] = value
    return {"y": y}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_nan_at_137, r"^dataset\.files: .*blobs\.npz: x\[137\] contains NaN$"),
        (_inf_at_5, r"x\[5\] contains inf$"),
        (lambda: {"y": blobs()["y_train"].astype(np.float64)}, r"y has dtype float64: must be integer class labels"),
        (lambda: {**_label(12, 7), "num_classes": np.array(4)}, r"y\[12\] = 7: labels must be in \[0, 4\)$"),
        (lambda: _label(3, -1), r"y\[3\] = -1: labels must be >= 0$"),
        (lambda: {"x": blobs()["x_train"][:, 0]}, r"x has shape \(600,\): must be \(N, features\.\.\.\)"),
        (lambda: {"y": blobs()["y_train"][:-1]}, r"x has 600 rows but .*y has 599$"),
        (lambda: {"y": blobs()["y_train"][:, None]}, r"y has shape \(600, 1\): must be \(N,\) class labels"),
        (lambda: {"x": blobs()["x_train"].astype(object)}, r"array 'x' cannot be read without unpickling"),
        (lambda: {"X": blobs()["x_train"]}, r"unexpected array 'X' \(allowed: x, y, x_test, y_test, num_classes\)"),
        (lambda: {"x_test": blobs()["x_train"]}, r"x_test without .*y_test \(give both or neither\)"),
        (lambda: {"x_test": blobs()["x_train"][:, :11], "y_test": blobs()["y_train"]},
         r"x_test samples have shape \(11,\) but .*x samples have shape \(12,\)"),
    ],
)
def test_malformed_npz_gets_its_one_line_message(short_tmp: Path, make: Any, match: str) -> None:
    path = _blobs_npz(short_tmp / "blobs.npz", **make())
    with pytest.raises(DataError, match=match) as info:
        load_dataset("mine", files=[str(path)])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (_ragged, r"x\[3\] has 11 values but x\[0\] has 12$"),
        (_null_label, r"y\[2\] is null$"),
        (_bad_shape, r"metadata shape \[2, 5\] holds 10 values but each x row has 12$"),
    ],
)
def test_malformed_parquet_gets_its_one_line_message(short_tmp: Path, write: Any, match: str) -> None:
    path = short_tmp / "data.parquet"
    write(path)
    with pytest.raises(DataError, match=match):
        load_dataset("mine", files=[str(path)])


@pytest.mark.parametrize(
    ("loader", "error", "match"),
    [
        ("kd_fixtures:blobs_with_nan", DataError, r"^dataset\.name = 'kd_fixtures:blobs_with_nan': x_train\[137\] "
                                                  "contains NaN$"),
        ("kd_fixtures:blobs_float_labels", DataError, "y_train has dtype float64: must be integer class labels"),
        ("kd_fixtures:loader_raises", DataError, "the loader raised OSError: the data server is down"),
        ("kd_fixtures:no_such_loader", SpecError, "does not import: AttributeError: module 'kd_fixtures' has no attribute"),
        ("kd_fixtures:NOT_CALLABLE", SpecError, "is not callable"),
    ],
)
def test_malformed_loader_gets_its_one_line_message(loader: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        load_dataset(loader)


@pytest.mark.parametrize(
    ("dataset", "match"),
    [
        ({"files": ["train.csv"]}, r"dataset\.files\[0\] = 'train\.csv': must be a \.npz or \.parquet file"),
        ({"name": "mnist", "files": ["train.npz"]}, r"dataset\.name = 'mnist': must be a label of your own"),
        ({"files": ["a.npz", "b.npz", "c.npz"]}, r"dataset\.files = .*: must list one file .* or two"),
    ],
)
def test_spec_refuses_bad_dataset_files(dataset: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_spec({"name": "s", "dataset": dataset})


def test_missing_data_file_is_refused_by_name(short_tmp: Path) -> None:
    with pytest.raises(SpecError, match=r"dataset\.files\[0\] = '.*nothing\.npz': file not found"):
        load_dataset("mine", files=[str(short_tmp / "nothing.npz")])


# ------------------------------------------------------------------------------------- teacher checkpoint


@pytest.fixture(scope="module")
def trained_mlp(digits: DataBundle) -> torch.nn.Module:
    return train_teacher(TeacherSpec(arch="mlp", kwargs={"widths": [32]}, epochs=2, lr=3e-3), digits).model


def test_checkpoint_teacher_trains_nothing_and_is_keyed_by_its_weights(
        short_tmp: Path, digits: DataBundle, trained_mlp: torch.nn.Module, teacher_forwards: list[int]) -> None:
    from safetensors.torch import save_file

    torch.save(trained_mlp.state_dict(), short_tmp / "teacher.pt")
    save_file({k: v.contiguous() for k, v in trained_mlp.state_dict().items()}, short_tmp / "teacher.safetensors")
    cache = LogitCache(short_tmp / "cache")
    teacher_forwards[0] = 0
    spec = TeacherSpec(arch="mlp", kwargs={"widths": [32]}, checkpoint=str(short_tmp / "teacher.pt"))
    built = cache.prepare(spec, digits)
    # one check batch + the evaluation batches of each split: no training step
    passes = sum(math.ceil(len(s.y) / EVAL_BATCH_SIZE) for s in (digits.train, digits.val, digits.test))
    assert (built.trained, built.hit, teacher_forwards[0]) == (False, False, 1 + passes)
    assert built.key == logits_key(weights_fingerprint(trained_mlp), digits.fingerprint())
    assert built.diagnostics["test_accuracy"] == pytest.approx(_accuracy(trained_mlp, digits))
    assert built.teacher is not None and built.teacher.selected_epoch == 0
    assert not (short_tmp / "cache" / "teachers").exists()  # a given teacher is not stored

    teacher_forwards[0] = 0
    from_safetensors = cache.prepare(TeacherSpec(arch="mlp", kwargs={"widths": [32]},
                                                 checkpoint=str(short_tmp / "teacher.safetensors")), digits)
    assert (from_safetensors.key, from_safetensors.hit, teacher_forwards[0]) == (built.key, True, 0)


def test_checkpoint_refuses_pickles_and_mismatched_weights(short_tmp: Path, digits: DataBundle,
                                                           trained_mlp: torch.nn.Module) -> None:
    torch.save(trained_mlp, short_tmp / "model.pt")  # a pickled module: never unpickled
    with pytest.raises(SpecError, match=r"is neither safetensors nor a state dict that torch\.load\(weights_only="
                                        r"True\) accepts \(.*Unsupported global"):
        LogitCache(short_tmp).prepare(TeacherSpec(arch="mlp", checkpoint=str(short_tmp / "model.pt")), digits)
    torch.save(trained_mlp.state_dict(), short_tmp / "teacher.pt")
    with pytest.raises(SpecError, match=r"teacher\.checkpoint = '.*teacher\.pt': does not fit teacher\.arch = "
                                        r"'mlp': .*size mismatch"):
        LogitCache(short_tmp).prepare(TeacherSpec(arch="mlp", kwargs={"widths": [16]},
                                                  checkpoint=str(short_tmp / "teacher.pt")), digits)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"teacher": {"checkpoint": "t.pt"}, "conditions": {"teacher_epochs": [2, 4]}},
         r"conditions\.teacher_epochs = \[2, 4\]: has no effect with teacher\.checkpoint"),
        ({"teacher": {"checkpoint": "t.pt", "logits": "0" * 32}}, r"teacher\.logits = .*: cannot be combined with "
                                                                   r"teacher\.checkpoint"),
        ({"teacher": {"logits": "not-a-key"}}, r"teacher\.logits = 'not-a-key': must be the 32-hex-digit key"),
        ({"teacher": {"logits": "0" * 32}, "conditions": {"teacher_seeds": [0, 1]}},
         r"conditions\.teacher_seeds = \[0, 1\]: has no effect with teacher\.logits"),
    ],
)
def test_spec_refuses_contradictory_teacher_sources(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_spec({"name": "s", **raw})


# ------------------------------------------------------------------------------------------ imported logits


def _oracle_logits(data: DataBundle) -> dict[str, np.ndarray]:
    """A perfect outside teacher: 4 on the clean class, 0 elsewhere."""
    return {name: 4.0 * np.eye(data.num_classes, dtype=np.float32)[getattr(data, name).clean.numpy()]
            for name in ("train", "val", "test")}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: {**a, "train": a["train"][:-1]},
         r"logits\.npz: train has 1149 rows; the dataset \(name=digits, .*val_fraction=0\.2.*\) has 1150 "
         "train samples"),
        (lambda a: {**a, "val": a["val"][:, :9]}, r"logits\.npz: val has 9 columns; the dataset has 10 classes"),
        (lambda a: {**a, "test": np.where(np.arange(len(a["test"]))[:, None] == 7, np.nan, a["test"])},
         r"logits\.npz: test\[7\] contains NaN"),
        (lambda a: {k: v for k, v in a.items() if k != "val"}, r"logits\.npz: no val logits"),
        (lambda a: {**a, "train": a["train"].astype(np.int64)}, r"train has dtype int64: logits must be floating"),
    ],
)
def test_import_checks_rows_classes_and_finiteness(short_tmp: Path, digits: DataBundle, change: Any, match: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(short_tmp / "logits.npz", **change(_oracle_logits(digits)))
    code = main(["cache", "import", str(short_tmp / "logits.npz"), "--dataset", "digits", "--val-fraction", "0.2",
                 "--cache-dir", str(short_tmp / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert re.search(match, err), err
    assert not (short_tmp / "cache" / "logits").exists()


def test_imported_npz_and_parquet_are_one_entry_for_every_noise_level(short_tmp: Path, digits: DataBundle,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    arrays = _oracle_logits(digits)
    np.savez(short_tmp / "logits.npz", **arrays)
    splits = [name for name in ("train", "val", "test") for _ in range(len(arrays[name]))]
    rows = [row.tolist() for name in ("train", "val", "test") for row in arrays[name]]
    pq.write_table(pa.table({"split": splits, "logits": rows}), short_tmp / "logits.parquet")
    cache_dir = str(short_tmp / "cache")
    keys = []
    for name in ("logits.npz", "logits.parquet"):
        assert main(["cache", "import", str(short_tmp / name), "--dataset", "digits", "--val-fraction", "0.2",
                     "--cache-dir", cache_dir, "--format", "json"]) == 0
        keys.append(json.loads(capsys.readouterr().out)["key"])
    assert keys[0] == keys[1]
    noisy = load_dataset("digits", val_fraction=0.2, noise_level=0.3)
    prepared = LogitCache(cache_dir).prepare(TeacherSpec(logits=keys[0]), noisy)
    assert (prepared.teacher, prepared.trained, prepared.hit) == (None, False, True)
    assert prepared.diagnostics["test_accuracy"] == 1.0 and prepared.diagnostics["correction_rate"] == 1.0
    assert np.array_equal(prepared.arrays["train"], arrays["train"])
    other = load_dataset("digits", val_fraction=0.1)
    with pytest.raises(CacheError, match="do not fit this dataset|imported for other samples"):
        LogitCache(cache_dir).prepare(TeacherSpec(logits=keys[0]), other)
    with pytest.raises(SpecError, match=r"teacher\.logits = '0{32}': is not in the cache at "):
        LogitCache(cache_dir).prepare(TeacherSpec(logits="0" * 32), noisy)


# ------------------------------------------------------------------------------------------ whole studies


@pytest.mark.slow
def test_study_with_a_loader_a_user_student_and_a_checkpoint_teacher(ray_local: None, short_tmp: Path) -> None:
    data = load_dataset("kd_fixtures:blobs", val_fraction=0.2)
    teacher = train_teacher(TeacherSpec(arch="mlp", kwargs={"widths": [32]}, epochs=3, lr=3e-3), data).model
    torch.save(teacher.state_dict(), short_tmp / "teacher.pt")
    spec = tiny_study_spec(
        "byo-model", dataset={"name": "kd_fixtures:blobs", "val_fraction": 0.2},
        teacher={"arch": "mlp", "kwargs": {"widths": [32]}, "checkpoint": str(short_tmp / "teacher.pt")},
        student={"arch": "kd_fixtures:small_mlp", "kwargs": {"width": 8}, "epochs": 2, "lr": 3e-3},
        conditions={"noise_level": [0.1]}, budget={"trials_per_condition": 1, "repeats": 1},
        scheduler={"type": "fifo"})
    cache = short_tmp / "cache"
    study = run_study(spec, RunOptions(out=short_tmp / "study", cache_dir=str(cache), progress=False))
    info = json.loads((study / "teachers.json").read_text())["all"]
    assert (info["source"], info["trained"], info["selected_epoch"]) == ("checkpoint", False, 0)
    assert info["fingerprint"] == weights_fingerprint(teacher)
    noisy = load_dataset("kd_fixtures:blobs", val_fraction=0.2, noise_level=0.1)
    assert info["cache_key"] == logits_key(weights_fingerprint(teacher), noisy.fingerprint())
    assert info["diagnostics"]["test_accuracy"] == pytest.approx(_accuracy(teacher, noisy))
    assert not (cache / "teachers").exists()  # nothing was trained
    assert [t["state"] for t in read_trials(study).to_pylist()] == ["COMPLETE"] * 3


@pytest.mark.slow
def test_study_with_data_files_and_imported_logits(ray_local: None, short_tmp: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(_blobs_npz(short_tmp / "blobs.npz"))]
    data = load_dataset("mine", files=files, val_fraction=0.2)
    np.savez(short_tmp / "logits.npz", **_oracle_logits(data))
    cache = str(short_tmp / "cache")
    assert main(["cache", "import", str(short_tmp / "logits.npz"), "--dataset", "mine", "--data-file", files[0],
                 "--val-fraction", "0.2", "--cache-dir", cache, "--format", "json"]) == 0
    key = json.loads(capsys.readouterr().out)["key"]
    spec = tiny_study_spec(
        "byo-data", dataset={"name": "mine", "files": files, "val_fraction": 0.2}, teacher={"logits": key},
        student={"arch": "mlp", "kwargs": {"widths": [8]}, "epochs": 2, "lr": 3e-3},
        conditions={"noise_level": [0.0, 0.2]}, budget={"trials_per_condition": 1, "repeats": 1},
        scheduler={"type": "fifo"})
    study = run_study(spec, RunOptions(out=short_tmp / "study", cache_dir=cache, progress=False))
    teachers = json.loads((study / "teachers.json").read_text())
    assert {k: (v["cache_key"], v["source"], v["trained"]) for k, v in teachers.items()} == {
        "noise_level=0.0": (key, "imported", False), "noise_level=0.2": (key, "imported", False)}
    assert teachers["noise_level=0.2"]["diagnostics"]["correction_rate"] == 1.0  # against this condition's labels
    assert teachers["noise_level=0.0"]["diagnostics"]["correction_rate"] is None
    trials = read_trials(study).to_pylist()
    assert len(trials) == 6 and {t["state"] for t in trials} == {"COMPLETE"}
