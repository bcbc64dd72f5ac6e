"""Image datasets from disk (kdtune/tasks/image/folder.py): an image folder written at test time as PNG files and real
MNIST through torchvision, read in memory and on disk; both paths draw the same splits, labels and noise and train
the same students; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from image_folders import write_digits_folder

import kdtune.tasks.image.folder as folder_module
from kdtune.cli import main
from kdtune.core.augment import Augment
from kdtune.core.images import DiskImages
from kdtune.core.train import TrainConfig
from kdtune.core.train import Trainer
from kdtune.tasks.bundle import pack_payload
from kdtune.tasks.bundle import unpack_payload
from kdtune.tasks.datasets import load_dataset
from kdtune.tasks.image.models import build_model
from kdtune.tasks.image.views import InlineTeacher
from kdtune.tasks.image.views import ViewSpec


SPLIT_OPTIONS: dict[str, Any] = {"noise_level": 0.2, "train_size": 1000, "val_fraction": 0.2, "seed": 3}


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("digits-folder")
    return root, write_digits_folder(root)


def _load(root: Path, in_memory: bool | None, **options: Any) -> Any:
    return load_dataset("image_folder", images={"root": str(root), "in_memory": in_memory, "workers": 2},
                        **{**SPLIT_OPTIONS, **options})


def test_both_paths_draw_the_same_splits_labels_and_noise(digits_folder: tuple[Path, np.ndarray]) -> None:
    root, written = digits_folder
    memory, disk = _load(root, True), _load(root, False)
    assert isinstance(memory.train.x, torch.Tensor) and isinstance(disk.train.x, DiskImages)
    for name in ("train", "val", "test"):
        a, b = getattr(memory, name), getattr(disk, name)
        assert torch.equal(a.y, b.y) and torch.equal(a.clean, b.clean) and torch.equal(a.flipped, b.flipped)
        assert torch.equal(a.x, b.x.load(np.arange(len(b.x))))  # the same pixels, decoded by one reader
    assert int(memory.train.flipped.sum()) == round(0.2 * len(memory.train)) > 0
    assert len(memory.train) + len(memory.val) == 1000
    # Decoding is real: every image the folder holds comes back once, as written (8-bit grey / 255).
    decoded = torch.cat([memory.train.x, memory.val.x, memory.test.x]).numpy()
    assert sorted(map(bytes, decoded)) != sorted(map(bytes, written))  # train_size left some out ...
    everything = _load(root, True, train_size=None)
    decoded = torch.cat([everything.train.x, everything.val.x, everything.test.x]).numpy()
    assert sorted(map(bytes, decoded)) == sorted(map(bytes, written))  # ... all of them come back


def test_a_data_seed_draws_other_splits_on_both_paths(digits_folder: tuple[Path, np.ndarray]) -> None:
    root, _ = digits_folder
    a, b = _load(root, False, seed=3), _load(root, False, seed=4)
    assert not np.array_equal(a.train.x.index, b.train.x.index)
    assert torch.equal(_load(root, True, seed=4).train.flipped, b.train.flipped)


def test_the_same_seed_trains_the_same_student_on_both_paths(digits_folder: tuple[Path, np.ndarray]) -> None:
    """Batches, views (crop + flip rendered in loader workers on disk) and the teacher's logits per view join by
    position: the losses and accuracies of two epochs are equal."""
    root, _ = digits_folder
    histories = []
    for data in (_load(root, True), _load(root, False)):
        student = build_model("reference_student", input_shape=data.input_shape, num_classes=10, seed=0)
        teacher = build_model("reference_student", input_shape=data.input_shape, num_classes=10, seed=1)
        views = InlineTeacher(teacher, ViewSpec(Augment(crop=8, padding=2, flip=True), views=3, seed=3))
        trainer = Trainer(student, data, TrainConfig(epochs=2, alpha=0.5, temperature=2.0, seed=0), views=views)
        histories.append([trainer.step().as_dict() for _ in range(2)])
    for a, b in zip(*histories, strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy", "test_accuracy", "memorisation_rate"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    assert histories[0][0]["train_loss"] != histories[0][1]["train_loss"]


def test_in_memory_auto_is_decided_by_size(digits_folder: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = digits_folder
    assert isinstance(_load(root, None).train.x, torch.Tensor)  # 1,797 8x8 images: a few hundred KB
    monkeypatch.setattr(folder_module, "IN_MEMORY_MAX_BYTES", 1000)
    assert isinstance(_load(root, None).train.x, DiskImages)
    assert isinstance(_load(root, True).train.x, torch.Tensor)  # the spec's choice wins


def test_a_trial_receives_images_on_disk_as_positions_not_pixels(tmp_path: Path) -> None:
    """What Ray stores for a condition holds no decoded image: the payload of 4x the images is about as small."""
    sizes = {}
    for copies in (1, 4):
        root = tmp_path / f"x{copies}"
        write_digits_folder(root, copies=copies, size=32)
        data = load_dataset("image_folder", images={"root": str(root), "in_memory": False}, seed=0)
        payload = pickle.dumps(pack_payload(data, None, None))
        sizes[copies] = len(payload)
        back, _ = unpack_payload(pickle.loads(payload))
        assert isinstance(back.train.x, DiskImages) and torch.equal(back.train.x.load([0, 5]), data.train.x.load([0, 5]))
    decoded = 4 * 1797 * 32 * 32 * 4
    assert sizes[4] < decoded / 20  # paths and positions, not pixels


def test_a_test_root_is_the_test_set(digits_folder: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    root, _ = digits_folder
    test_root = tmp_path / "test"
    write_digits_folder(test_root, per_class=5)
    data = load_dataset("image_folder", images={"root": str(root), "test_root": str(test_root)}, seed=0)
    assert len(data.test) == 50 and len(data.train) + len(data.val) == 1797
    assert sorted(data.test.y.tolist()) == sorted(list(range(10)) * 5)


def test_images_of_another_size_are_resized_to_image_size(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "a", per_class=6)
    write_digits_folder(tmp_path / "b", per_class=6, size=12)
    for name in ("digit0", "digit1"):  # two sizes in one folder
        shutil.copytree(tmp_path / "b" / name, tmp_path / "a" / name, dirs_exist_ok=True)
    data = load_dataset("image_folder", images={"root": str(tmp_path / "a"), "image_size": [10, 10]}, val_fraction=0.3)
    assert data.input_shape == (1, 10, 10) and data.train.x.shape[1:] == (1, 10, 10)


def test_a_torchvision_dataset_on_disk_gives_the_built_in_datasets_splits(test_data_root: Path) -> None:
    """torchvision:MNIST (download=False) on disk draws what the built-in mnist draws: the same labels, noise and
    pixels at every position."""
    options = {"train_size": 2000, "noise_level": 0.1, "seed": 1}
    built_in = load_dataset("mnist", data_root=test_data_root, **options)
    disk = load_dataset("torchvision:MNIST", data_root=test_data_root, images={"in_memory": False}, **options)
    assert isinstance(disk.train.x, DiskImages) and disk.num_classes == 10
    for name in ("train", "val"):
        a, b = getattr(built_in, name), getattr(disk, name)
        assert torch.equal(a.y, b.y) and torch.equal(a.flipped, b.flipped)
        positions = np.arange(0, len(b.x), 97)
        assert torch.equal(a.x[positions], b.x.load(positions))
    assert len(disk.test) == 10000 and torch.equal(built_in.test.y, disk.test.y)


# -- bad input: one line naming the field, exit 2, nothing written ---------------------------------------------

def _spec(tmp_path: Path, dataset: dict[str, Any], student: dict[str, Any] | None = None,
          teacher: dict[str, Any] | None = None) -> Path:
    raw = {"name": "folder", "dataset": {"name": "image_folder", "val_fraction": 0.2, **dataset},
           "teacher": {"arch": "mlp", "epochs": 1, **(teacher or {})},
           "student": {"arch": "mlp", "epochs": 1, **(student or {})},
           "budget": {"trials_per_condition": 2, "repeats": 1, "confirm_top_k": 0}, "scheduler": {"type": "fifo"},
           "tracking": "none"}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _refused(tmp_path: Path, spec: Path, capsys: pytest.CaptureFixture[str]) -> str:
    argv = ["run", str(spec), "--out", str(tmp_path / "study"), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert not (tmp_path / "study").exists() and not (tmp_path / "cache").exists()
    return err[0]


def _small_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_digits_folder(root, per_class=12)
    return root


def test_a_folder_without_images_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "empty"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "notes.txt").write_text("no image here")
    line = _refused(tmp_path, _spec(tmp_path, {"root": str(root)}), capsys)
    assert line.startswith(f"kdtune: error: dataset.root = '{root}': holds no images"), line


def test_an_unreadable_image_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _small_folder(tmp_path)
    bad = root / "digit3" / "broken.png"
    bad.write_bytes(b"not a png at all")
    line = _refused(tmp_path, _spec(tmp_path, {"root": str(root)}), capsys)
    assert line.startswith(f"kdtune: error: dataset.root = '{bad}': is not a readable image"), line


def test_a_class_count_that_disagrees_with_the_folder_is_refused(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = _small_folder(tmp_path)
    line = _refused(tmp_path, _spec(tmp_path, {"root": str(root), "num_classes": 100}), capsys)
    assert line.startswith("kdtune: error: dataset.num_classes = 100: disagrees with the 10 class folders"), line


def test_a_test_root_with_other_classes_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _small_folder(tmp_path)
    test_root = tmp_path / "test"
    write_digits_folder(test_root, per_class=2)
    shutil.rmtree(test_root / "digit9")
    line = _refused(tmp_path, _spec(tmp_path, {"root": str(root), "test_root": str(test_root)}), capsys)
    assert line.startswith(f"kdtune: error: dataset.test_root = '{test_root}': has the classes"), line


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_a_crop_larger_than_the_image_is_refused(tmp_path: Path, role: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = _small_folder(tmp_path)
    augment = {"augment": {"crop": 12, "padding": 1, "flip": True}}
    spec = _spec(tmp_path, {"root": str(root)}, **{role: augment})
    line = _refused(tmp_path, spec, capsys)
    assert line.startswith(f"kdtune: error: {role}.augment.crop = 12: must be at most the images' side plus twice "
                           "the padding (8 + 2 x 1 = 10 pixels"), line


def test_images_of_different_sizes_need_an_image_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _small_folder(tmp_path)
    write_digits_folder(tmp_path / "big", per_class=1, size=12)
    shutil.copy(tmp_path / "big" / "digit0" / "00001-0.png", root / "digit0" / "big.png")
    line = _refused(tmp_path, _spec(tmp_path, {"root": str(root)}), capsys)
    assert line.startswith("kdtune: error: dataset.image_size = None: must be set: the images differ in size"), line


@pytest.mark.parametrize("name, start", [
    ("torchvision:CIFAR10", "kdtune: error: torchvision:CIFAR10: not found under "),
    ("torchvision:NoSuchSet", "kdtune: error: dataset.name = 'torchvision:NoSuchSet': must name a dataset class"),
])
def test_a_torchvision_dataset_not_on_disk_is_one_line(tmp_path: Path, name: str, start: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, {"name": name, "data_root": str(tmp_path / "nothing-here")})
    assert _refused(tmp_path, spec, capsys).startswith(start)
