"""Crop and flip views (kdtune/core/augment.py, kdtune/tasks/image/views.py): each view keeps only its box and flip,
re-rendered from them wherever it is needed; the rendering matches torchvision's own crops and flips; the teacher's
logits per view are cached as shift and rotate views are, on images in memory and on disk; a study on an image
folder with crop and flip views ends in a verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
import yaml
from image_folders import write_digits_folder

from kdtune.cache import LogitCache
from kdtune.cache.teacher import TeacherSpec
from kdtune.cli import main
from kdtune.core.augment import Augment
from kdtune.core.augment import affine_warp
from kdtune.core.augment import augment_batch
from kdtune.core.images import DiskImages
from kdtune.core.train import TrainConfig
from kdtune.core.train import Trainer
from kdtune.tasks.datasets import load_dataset
from kdtune.tasks.image.models import build_model
from kdtune.tasks.image.views import InlineTeacher
from kdtune.tasks.image.views import ViewSpec
from kdtune.tasks.image.views import compute_view_logits
from kdtune.tasks.image.views import view_cache_bytes


CIFAR_CROP = Augment(crop=16, padding=4, flip=True)
RESIZED_CROP = Augment(scale=(0.3, 1.0), flip=True)


def _images(n: int = 40, channels: int = 3, side: int = 16) -> torch.Tensor:
    return torch.rand((n, channels, side, side), generator=torch.Generator().manual_seed(0))


def _direct(image: torch.Tensor, box: list[int], augment: Augment) -> torch.Tensor:
    """torchvision's own rendering of one stored box and flip."""
    top, left, h, w, flip = box
    side = image.shape[-1]
    if augment.crop:
        out = TF.crop(TF.pad(image, [augment.padding]), top, left, h, w)
        out = out if (h, w) == (side, side) else TF.resize(out, [side, side], antialias=True)
    else:
        out = TF.resized_crop(image, top, left, h, w, [side, side], antialias=True)
    return TF.horizontal_flip(out) if flip else out


@pytest.mark.parametrize("augment", [CIFAR_CROP, Augment(crop=12, padding=2), RESIZED_CROP], ids=str)
def test_a_view_rendered_from_its_stored_box_matches_torchvisions_rendering(augment: Augment) -> None:
    x = _images()
    spec = ViewSpec(augment, views=4, seed=7)
    index, view = torch.arange(40), torch.arange(40) % 4
    rendered = spec.render(x, index, view)
    boxes = spec.boxes(index.numpy(), view.numpy(), 16, 16)
    for b in range(40):
        torch.testing.assert_close(rendered[b], _direct(x[b], boxes[b].tolist(), augment), rtol=0, atol=1e-6)
    assert not torch.equal(rendered, x)
    # a view is a pure function of (image, view, data seed): the same in any batch, in any order
    again = spec.render(x, index.flip(0), view.flip(0)).flip(0)
    assert torch.equal(again, rendered)


def test_crops_then_shifts_and_rotations_compose() -> None:
    x = _images()
    augment = Augment(shift=2, rotate=10, crop=16, padding=2, flip=True)
    spec = ViewSpec(augment, views=2, seed=1)
    index, view = torch.arange(40), torch.arange(40) % 2
    cropped = torch.stack([_direct(x[b], box, augment)
                           for b, box in enumerate(spec.boxes(index.numpy(), view.numpy(), 16, 16).tolist())])
    torch.testing.assert_close(spec.render(x, index, view), affine_warp(cropped, *spec.params(index.numpy(), view.numpy())),
                               rtol=0, atol=1e-6)


def test_boxes_stay_inside_the_padded_image_and_cover_their_ranges() -> None:
    n = 4000
    index, view = np.arange(n) // 4, np.arange(n) % 4
    boxes = ViewSpec(CIFAR_CROP, views=4).boxes(index, view, 16, 16)
    top, left, flip = boxes[:, 0], boxes[:, 1], boxes[:, 4]
    assert top.min() == 0 and top.max() == 8 and left.min() == 0 and left.max() == 8  # 16 + 2 x 4 - 16
    assert (boxes[:, 2:4] == 16).all() and 0.45 < flip.mean() < 0.55
    boxes = ViewSpec(RESIZED_CROP, views=4).boxes(index, view, 16, 16)
    area = boxes[:, 2] * boxes[:, 3] / 256
    assert area.min() > 0.3 * 0.8 and area.max() <= 1.0 and np.median(area) == pytest.approx(0.65, abs=0.1)
    assert (boxes[:, 0] + boxes[:, 2] <= 16).all() and (boxes[:, 1] + boxes[:, 3] <= 16).all()
    aspect = boxes[:, 3] / boxes[:, 2]
    assert aspect.min() >= 3 / 4 * 0.7 and aspect.max() <= 4 / 3 / 0.7


def test_the_teachers_random_crops_and_flips_draw_from_its_generator_alone() -> None:
    x = _images()
    a = augment_batch(x, CIFAR_CROP, torch.Generator().manual_seed(5))
    b = augment_batch(x, CIFAR_CROP, torch.Generator().manual_seed(5))
    c = augment_batch(x, CIFAR_CROP, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    flipped = [torch.equal(a[i], x[i].flip(-1)) for i in range(40)]
    assert any(flipped)  # some unshifted crops are flips of the image
    # a shift-and-rotate recipe draws exactly what it drew before crops existed: shifts, then angles
    g = torch.Generator().manual_seed(5)
    dx = torch.randint(-2, 3, (40,), generator=g).float()
    dy = torch.randint(-2, 3, (40,), generator=g).float()
    angle = (torch.rand(40, generator=g) * 2 - 1) * math.radians(10)
    assert torch.equal(augment_batch(x, Augment(shift=2, rotate=10), torch.Generator().manual_seed(5)),
                       affine_warp(x, dx, dy, angle))


def test_cache_keys_of_shift_and_rotate_views_and_teachers_are_unchanged() -> None:
    assert ViewSpec(Augment(shift=2, rotate=10), views=3).to_dict() == {
        "augment": {"shift": 2, "rotate": 10.0}, "views": 3, "seed": 0, "format": 1}
    assert TeacherSpec(arch="mlp", augment={"shift": 2}).to_dict()["augment"] == {"shift": 2, "rotate": 0.0}
    crop = ViewSpec(CIFAR_CROP, views=3).to_dict()["augment"]
    assert crop == {"shift": 0, "rotate": 0.0, "crop": 16, "padding": 4, "flip": True}
    assert Augment(**crop) == CIFAR_CROP  # as the cache's file reads it back
    assert TeacherSpec(arch="mlp", augment=crop).to_dict()["augment"] == crop


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("crop-folder")
    write_digits_folder(root, size=12, per_class=40)
    options = {"noise_level": 0.1, "val_fraction": 0.2, "seed": 0}
    return {name: load_dataset("image_folder", images={"root": str(root), "in_memory": in_memory}, **options)
            for name, in_memory in (("memory", True), ("disk", False))}


def test_per_view_logits_are_cached_and_read_on_disk_as_in_memory(folder_data: dict[str, Any], tmp_path: Path) -> None:
    memory, disk = folder_data["memory"], folder_data["disk"]
    assert isinstance(disk.train.x, DiskImages)
    spec = ViewSpec(Augment(crop=12, padding=2, flip=True), views=3, seed=0)
    cache = LogitCache(tmp_path / "cache")
    prepared = cache.prepare(TeacherSpec(arch="mlp", epochs=2, kwargs={"widths": [32]}, lr=3e-3), disk)
    cached = cache.prepare_views(prepared, disk, spec)
    assert cached.dense is not None and cached.dense.shape == (len(disk.train) * 3, 10)
    assert prepared.teacher is not None
    teacher = prepared.teacher.model
    # the views rendered in loader workers are the ones rendered from pre-loaded tensors
    torch.testing.assert_close(cached.dense, compute_view_logits(teacher, memory.train.x, spec), rtol=1e-5, atol=1e-5)
    # the student reads, for each view it trains on, the teacher's logits on that view: as with the teacher inline
    histories = []
    for views in (cached, InlineTeacher(teacher, spec)):
        student = build_model("reference_student", input_shape=disk.input_shape, num_classes=10, seed=0)
        trainer = Trainer(student, disk, TrainConfig(epochs=1, alpha=0.3, temperature=3.0, seed=2), views=views)
        histories.append(trainer.step().as_dict())
    assert histories[0]["train_loss"] == pytest.approx(histories[1]["train_loss"], rel=1e-5)
    assert histories[0]["val_accuracy"] == pytest.approx(histories[1]["val_accuracy"], abs=1e-6)
    assert cache.prepare_views(prepared, disk, spec).key == cached.key  # read back, not rebuilt


def _folder_spec(tmp_path: Path, root: Path, **student: Any) -> Path:
    raw = {"name": "crops", "dataset": {"name": "image_folder", "root": str(root), "in_memory": False,
                                        "val_fraction": 0.2},
           "teacher": {"arch": "mlp", "epochs": 1, "kwargs": {"widths": [32]}},
           "student": {"arch": "mlp", "epochs": 1, "kwargs": {"widths": [16]}, **student},
           "budget": {"trials_per_condition": 2, "repeats": 1, "confirm_top_k": 0}, "scheduler": {"type": "fifo"},
           "tracking": "none"}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_kdtune_plan_sizes_the_crop_and_flip_views(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "images"
    write_digits_folder(root, per_class=20, size=12)
    spec = _folder_spec(tmp_path, root, augment={"crop": 10, "flip": True}, views=5)
    assert main(["plan", str(spec), "--cache-dir", str(tmp_path / "cache"), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)["conditions"][0]
    train = row["samples"]["train"]
    assert row["views"]["views"] == 5 and row["views"]["bytes"] == view_cache_bytes(train, 10, 5) == 5 * train * 40
    assert main(["plan", str(spec), "--cache-dir", str(tmp_path / "cache"), "--set", "cache.max_bytes=1000"]) == 2
    assert capsys.readouterr().err.startswith("kdtune: error: cache.max_bytes = 1000: is below the")


@pytest.mark.slow
def test_a_study_on_an_image_folder_with_crop_and_flip_views_ends_in_a_verdict(ray_local: None,
                                                                              short_tmp: Path) -> None:
    from conftest import tiny_study_spec

    from kdtune.analysis.recommendation import recommend
    from kdtune.records.results import read_results
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study

    root = short_tmp / "images"
    write_digits_folder(root, per_class=40, size=12)
    spec = tiny_study_spec(
        "crops", dataset={"name": "image_folder", "root": str(root), "in_memory": False, "workers": 1,
                          "val_fraction": 0.2},
        student={"arch": "mlp", "epochs": 2, "kwargs": {"widths": [16]}, "lr": 3e-3,
                 "augment": {"crop": 12, "padding": 2, "flip": True}, "views": 2},
        conditions={"noise_level": [0.0]}, scheduler={"type": "fifo"},
        budget={"trials_per_condition": 2, "repeats": 2, "confirm_top_k": 1, "confirm_repeats": 2,
                "confirm_max_repeats": 2, "confirm_failure_rate": 0})
    cache_dir = short_tmp / "cache"
    out = run_study(spec, RunOptions(out=short_tmp / "study", cache_dir=str(cache_dir), progress=False))
    teachers = json.loads((out / "teachers.json").read_text())
    assert (cache_dir / "views" / teachers["all"]["views_key"] / "train.parquet").is_file()
    results = read_results(out).to_pandas()
    assert set(results.phase) >= {"search", "confirm"} and results.test_accuracy.notna().all()
    verdict = recommend([out])["conditions"][0]["verdict"]["kind"]
    assert verdict in ("distil", "hurts", "no_gain", "inconclusive")
