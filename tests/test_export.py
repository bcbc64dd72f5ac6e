"""`kdtune export`: the recommended student of one condition, trained from the cached logits, as safetensors + a
model card; loaded back with build_model + safetensors it reproduces the test accuracy its card records.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdtune.analysis.recommendation import recommend
from kdtune.cli import main
from kdtune.core.train import predict
from kdtune.tasks.datasets import load_dataset
from kdtune.tasks.image.models import build_model


pytestmark = pytest.mark.slow


def test_exported_student_loads_and_reproduces_its_test_accuracy(small_study: Path, short_tmp: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = short_tmp / "student.safetensors"
    assert main(["export", str(small_study), "--condition", "noise_level=0.2", "--out", str(out)]) == 0
    assert f"model card: {out.with_suffix('.json')}" in capsys.readouterr().out
    card = json.loads(out.with_suffix(".json").read_text())

    m = card["model"]
    model = build_model(m["arch"], input_shape=m["input_shape"], num_classes=m["num_classes"], kwargs=m["kwargs"])
    model.load_state_dict(load_file(out))
    data = load_dataset("digits", val_fraction=0.2, noise_level=0.2)  # the study's condition noise_level=0.2
    pred = predict(model, data.test.x).argmax(1)
    assert float((pred == data.test.clean).float().mean()) == card["metrics"]["test_accuracy"]
    val = predict(model, data.val.x).argmax(1)
    assert float((val == data.val.y).float().mean()) == card["metrics"]["val_accuracy"]

    [entry] = [c for c in recommend([small_study])["conditions"] if c["key"] == "noise_level=0.2"]
    recommended = entry["recommended"]["params"]
    assert card["alpha"] == recommended["alpha"] and card["params"]["lr"] == recommended["lr"]
    assert card["condition"]["key"] == "noise_level=0.2" and card["seed"] == 0
    teachers = json.loads((small_study / "teachers.json").read_text())
    assert card["teacher"]["cache_key"] == teachers["noise_level=0.2"]["cache_key"]
    assert card["teacher"]["fingerprint"] == teachers["noise_level=0.2"]["fingerprint"]
    assert card["teacher"]["logits_rebuilt"] is False
    assert card["dataset"]["fingerprint"] == data.fingerprint()
    assert set(card["study_estimates"]["best_observed"]["test"]) == {"mean", "low", "high", "n"}
    assert card["study_estimates"]["verdict"] == entry["verdict"]
    assert card["kdtune_version"] and card["spec"]["name"] == "small"


def test_export_with_another_seed_records_it(small_study: Path, short_tmp: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = short_tmp / "seeded.safetensors"
    assert main(["export", str(small_study), "--condition", "noise_level=0", "--out", str(out), "--seed", "7"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["seed"] == 7 and card["condition"]["noise_level"] == 0.0
    assert all(isinstance(t, torch.Tensor) for t in load_file(out).values())


@pytest.mark.parametrize(
    ("selectors", "message"),
    [
        ([], "--condition (none given): ambiguous, 2 conditions match (noise_level=0.0, noise_level=0.2); "
             "available conditions: noise_level=0.0, noise_level=0.2"),
        (["noise_level=0.3"], "--condition noise_level=0.3: no such condition; available conditions: "
                              "noise_level=0.0, noise_level=0.2"),
        (["noise=0.2"], "--condition 'noise=0.2': must be AXIS=VALUE with an axis of dataset, noise_level, noise_type, "
                        "student_arch, teacher_epochs, teacher_error, teacher_seed, teacher_select; available "
                        "conditions: noise_level=0.0, noise_level=0.2"),
    ],
)
def test_unknown_or_ambiguous_condition_lists_the_available_ones(small_study: Path, short_tmp: Path,
                                                                 selectors: list[str], message: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for s in selectors for a in ("--condition", s)]
    out = short_tmp / "s.safetensors"
    assert main(["export", str(small_study), *args, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"kdtune: error: {message}\n"
    assert not out.exists()
