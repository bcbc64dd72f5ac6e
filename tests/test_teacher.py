"""Teacher checkpoint selection, safe checkpoints, fingerprints and diagnostics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from kdtune.cache.teacher import TeacherSpec
from kdtune.cache.teacher import load_teacher
from kdtune.cache.teacher import save_teacher
from kdtune.cache.teacher import teacher_logits
from kdtune.cache.teacher import train_teacher
from kdtune.core.metrics import teacher_diagnostics
from kdtune.core.train import TeacherLogits
from kdtune.errors import SpecError
from kdtune.tasks.datasets import load_dataset


@pytest.fixture(scope="module")
def noisy():  # type: ignore[no-untyped-def]
    return load_dataset("digits", noise_level=0.3, seed=2)


@pytest.fixture(scope="module")
def teachers(noisy):  # type: ignore[no-untyped-def]
    # A small MLP memorises 30% flipped labels within a few epochs: validation accuracy peaks early.
    spec = TeacherSpec(arch="mlp", kwargs={"widths": [256]}, epochs=12, lr=3e-3, batch_size=32, seed=0)
    return {select: train_teacher(TeacherSpec(**{**spec.to_dict(), "select": select}), noisy)
            for select in ("best_val", "final")}


def test_best_val_picks_the_maximum_of_the_curve(teachers) -> None:  # type: ignore[no-untyped-def]
    t = teachers["best_val"]
    vals = [e["val_accuracy"] for e in t.curve]
    assert len(vals) == 12
    assert t.selected_epoch == vals.index(max(vals)) + 1
    assert t.selected["val_accuracy"] == max(vals)


def test_final_picks_the_last_epoch(teachers, noisy) -> None:  # type: ignore[no-untyped-def]
    t = teachers["final"]
    assert t.selected_epoch == 12
    # The selected weights are really the ones evaluated at that epoch.
    logits = t.logits(noisy)
    assert teacher_diagnostics(logits, noisy)["test_accuracy"] == pytest.approx(t.selected["test_accuracy"], abs=1e-6)


def test_selection_validates_only_and_measures_the_selected_epoch_once(teachers, noisy) -> None:  # type: ignore[no-untyped-def]
    spec = teachers["best_val"].spec
    full = train_teacher(spec, noisy, full_curve=True)
    lean = teachers["best_val"]
    # The same teacher, epoch for epoch: evaluating test and flipped labels changes nothing it learns.
    assert lean.fingerprint == full.fingerprint and lean.selected_epoch == full.selected_epoch
    assert [r["val_accuracy"] for r in lean.curve] == [r["val_accuracy"] for r in full.curve]
    # Only the selected epoch's row has the test and flipped-label numbers, and they are the full curve's.
    for row in lean.curve:
        assert ("test_accuracy" in row) == (row["epoch"] == lean.selected_epoch)
    keys = ("test_accuracy", "test_loss", "correction_rate", "memorisation_rate")
    assert {k: lean.selected[k] for k in keys} == pytest.approx({k: full.selected[k] for k in keys}, abs=1e-6)
    assert all("test_accuracy" in row for row in full.curve)
    # The logits measured for the kept epoch are the teacher's logits: the cache reuses them, with no second pass.
    assert lean.computed_logits is not None and full.computed_logits is None
    fresh = teacher_logits(lean.model, noisy)
    for name in ("train", "val", "test"):
        assert torch.allclose(getattr(lean.logits(noisy), name), getattr(fresh, name), atol=1e-6)


def test_selection_policies_give_different_identities(teachers) -> None:  # type: ignore[no-untyped-def]
    assert teachers["best_val"].spec.to_dict() != teachers["final"].spec.to_dict()


def test_patience_stops_early(noisy) -> None:  # type: ignore[no-untyped-def]
    t = train_teacher(TeacherSpec(arch="linear", epochs=40, patience=2, lr=1e-2), noisy)
    best = max(range(len(t.curve)), key=lambda i: t.curve[i]["val_accuracy"]) + 1
    assert len(t.curve) < 40 and len(t.curve) == best + 2


def test_checkpoint_round_trip_without_pickle(teachers, noisy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = teachers["best_val"]
    save_teacher(t, tmp_path / "teacher.safetensors")
    assert (tmp_path / "teacher.safetensors").read_bytes()[8:9] == b"{"  # safetensors: JSON header, no pickle
    loaded = load_teacher(tmp_path / "teacher.safetensors", noisy)
    assert loaded.fingerprint == t.fingerprint and loaded.selected_epoch == t.selected_epoch
    assert torch.equal(loaded.logits(noisy).test, t.logits(noisy).test)


def test_tampered_checkpoint_is_refused(teachers, noisy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "teacher.safetensors"
    save_teacher(teachers["final"], path)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="do not match the fingerprint"):
        load_teacher(path, noisy)


def test_diagnostics_match_a_hand_computation() -> None:
    data = load_dataset("digits", noise_level=0.1, seed=0)
    n_train, n_val, n_test = len(data.train), len(data.val), len(data.test)
    flipped = data.train.flipped
    # A "teacher" that predicts the clean label on the first half of the flipped samples and the noisy label on
    # the rest, with one-hot logits of height 50.
    target = data.train.clean.clone()
    flipped_idx = flipped.nonzero().flatten()
    half = len(flipped_idx) // 2
    target[flipped_idx[half:]] = data.train.y[flipped_idx[half:]]
    logits = TeacherLogits(
        train=50 * torch.nn.functional.one_hot(target, 10).float(),
        val=50 * torch.nn.functional.one_hot(data.val.y, 10).float(),
        # Always class 0 with confidence exactly 0.5: softmax([ln 9, 0, ..., 0]) = [0.5, 1/18, ..., 1/18].
        test=torch.zeros(n_test, 10).index_fill_(1, torch.tensor([0]), math.log(9)),
    )
    d = teacher_diagnostics(logits, data)
    assert d["correction_rate"] == pytest.approx(half / len(flipped_idx))
    assert d["memorisation_rate"] == pytest.approx(1 - half / len(flipped_idx))
    assert d["val_accuracy"] == 1.0
    assert d["test_accuracy"] == pytest.approx(float((data.test.clean == 0).double().mean()))
    assert d["entropy"]["1.0"] == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(1 / 18)) / math.log(10))
    assert d["ece"] == pytest.approx(0.5 - d["test_accuracy"], abs=1e-6)  # one bin, at confidence 0.5
    assert n_train and n_val


def test_bad_select_is_refused() -> None:
    with pytest.raises(SpecError, match="teacher.select = 'best': must be one of best_val, best_val_loss, final"):
        TeacherSpec(select="best")
