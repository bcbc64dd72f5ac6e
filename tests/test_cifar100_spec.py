"""The CIFAR-100 spec without CIFAR-100: `kdtune plan` says the data are missing and what the study would cost,
on stand-in images of the dataset's size and shape; `kdtune run` refuses in one line and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from kdtune.spec.schema import load_spec
from kdtune.tasks.image.models import build_model
from kdtune.tasks.image.standin import stand_in_bundle


REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "search_spaces" / "cifar100_resnet.yaml"
#: Small CIFAR ResNets in place of resnet32x4 / resnet8x4: the plan times every model on this CPU, where the real
#: pair's calibration alone takes minutes. What is tested is the plan of the spec's data, views and budget.
SMALL = ["--set", "teacher.arch=cifar_resnet", "--set", "teacher.kwargs={depth: 8, widths: [8, 8, 16, 16]}",
         "--set", "student.arch=cifar_resnet", "--set", "student.kwargs={depth: 8, widths: [4, 4, 8, 8]}"]


def kdtune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdtune", *args], capture_output=True, text=True, timeout=600,
                          env=os.environ.copy(), cwd=REPO)


def test_the_spec_is_the_published_pair_and_recipe() -> None:
    spec = load_spec(SPEC)
    assert (spec.dataset.name, spec.teacher.arch, spec.student.arch) == ("torchvision:CIFAR100", "resnet32x4", "resnet8x4")
    assert (spec.student.lr, spec.student.momentum, spec.student.weight_decay, spec.student.epochs) == (0.05, 0.9, 5e-4, 240)
    assert spec.student.augment.model_dump(include={"crop", "padding", "flip"}) == {"crop": 32, "padding": 4, "flip": True}
    assert spec.default_temperature == 4.0 and spec.search["alpha"].low == 0.0 and spec.search["alpha"].high == 1.0
    assert (spec.teacher.precision, spec.student.precision, spec.cache.logits_dtype) == ("bf16", "bf16", "float16")
    for arch in (spec.teacher.arch, spec.student.arch):  # both build for CIFAR-100's images
        assert build_model(arch, input_shape=(3, 32, 32), num_classes=100)(torch.rand(2, 3, 32, 32)).shape == (2, 100)


def test_stand_in_images_have_the_datasets_sizes_and_are_split_like_it() -> None:
    data = stand_in_bundle("torchvision:CIFAR100", train_size=None, val_fraction=0.1, noise_level=0.2,
                           noise_type="symmetric", seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (45_000, 5_000, 10_000)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 100 and data.description["stand_in"] is True
    assert 0.15 < float(data.train.flipped.float().mean()) < 0.25  # noised by the real code
    first = data.train.x.load(slice(0, 2))  # type: ignore[union-attr]
    assert first.shape == (2, 3, 32, 32) and torch.equal(first, data.train.x.load(slice(0, 2)))  # type: ignore[union-attr]


def test_plan_without_the_data_says_they_are_missing_and_what_the_study_costs(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    result = kdtune("plan", str(SPEC), "--set", f"dataset.data_root={empty}", *SMALL, "--format", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    (row,) = plan["conditions"]
    assert "torchvision:CIFAR100" in row["data"]["missing"] and str(empty) in row["data"]["missing"]
    assert row["samples"] == {"train": 45_000, "val": 5_000, "test": 10_000}
    assert row["teacher"]["action"] == "train teacher" and row["teacher"]["teacher_key"] is None
    assert "data missing here" in row["teacher"]["problem"]
    assert row["views"]["views"] == 16 and row["views"]["images"] == 45_000 and row["views"]["classes"] == 100
    assert row["estimate"]["teacher_s"] > 0 and row["estimate"]["run_s"] > 0 and plan["total"]["wall_s"] > 0
    assert any("stand-in images" in line for line in plan["assumptions"])


def test_run_without_the_data_refuses_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = kdtune("run", str(SPEC), "--set", f"dataset.data_root={tmp_path / 'no-data'}", "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "torchvision:CIFAR100" in lines[0], result.stderr
    assert not out.exists()
