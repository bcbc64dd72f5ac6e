"""Datasets, splits and label noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdtune.core.data import flip_labels
from kdtune.errors import DataError
from kdtune.errors import SpecError
from kdtune.tasks.datasets import load_dataset


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.2, 0.37])
@pytest.mark.parametrize("noise_type", ["symmetric", "pairflip"])
def test_exact_number_of_flips_each_to_another_class(rate: float, noise_type: str) -> None:
    labels = np.random.default_rng(0).integers(0, 10, size=1001)
    noisy, flipped = flip_labels(labels, rate, noise_type, 10, np.random.default_rng(1))
    assert flipped.sum() == round(rate * 1001)
    assert np.all(noisy[flipped] != labels[flipped])
    assert np.all(noisy[~flipped] == labels[~flipped])


def test_pairflip_maps_to_previous_class() -> None:
    labels = np.arange(10).repeat(10)
    noisy, flipped = flip_labels(labels, 0.5, "pairflip", 10, np.random.default_rng(0))
    assert np.all(noisy[flipped] == (labels[flipped] - 1) % 10)  # 4 -> 3, 0 -> 9


def test_symmetric_noise_reaches_every_other_class() -> None:
    labels = np.zeros(5000, dtype=np.int64)
    noisy, flipped = flip_labels(labels, 0.5, "symmetric", 10, np.random.default_rng(0))
    counts = np.bincount(noisy[flipped], minlength=10)
    assert counts[0] == 0 and np.all(counts[1:] > 200)  # ~278 expected for each of the 9 other classes


def test_splits_noise_and_clean_test(noisy_digits) -> None:  # type: ignore[no-untyped-def]
    d = noisy_digits
    for split in (d.train, d.val):
        assert int(split.flipped.sum()) == round(0.1 * len(split))
        assert torch.equal(split.y[~split.flipped], split.clean[~split.flipped])
        assert torch.all(split.y[split.flipped] != split.clean[split.flipped])
    assert not d.test.flipped.any() and torch.equal(d.test.y, d.test.clean)
    assert len(d.val) == round(0.1 * (len(d.train) + len(d.val)))
    assert d.train.x.shape[1:] == (1, 8, 8) and 0.0 <= float(d.train.x.min()) and float(d.train.x.max()) <= 1.0


def test_deterministic_per_seed_and_test_set_independent_of_seed() -> None:
    a, b, c = (load_dataset("digits", noise_level=0.2, seed=s) for s in (3, 3, 4))
    assert a.fingerprint() == b.fingerprint()
    assert torch.equal(a.train.y, b.train.y)
    assert a.fingerprint() != c.fingerprint()
    assert torch.equal(a.test.x, c.test.x)


def test_noise_does_not_change_samples_or_clean_labels() -> None:
    clean, noisy = load_dataset("digits", seed=1), load_dataset("digits", noise_level=0.3, seed=1)
    assert torch.equal(clean.train.x, noisy.train.x)
    assert torch.equal(clean.train.clean, noisy.train.clean)
    assert clean.fingerprint() != noisy.fingerprint()


def test_validation_is_stratified() -> None:
    d = load_dataset("digits", val_fraction=0.2, seed=0)
    train_share = np.bincount(d.train.clean.numpy()) / len(d.train)
    val_share = np.bincount(d.val.clean.numpy()) / len(d.val)
    assert np.abs(train_share - val_share).max() < 0.01


def test_train_size_subset() -> None:
    d = load_dataset("digits", train_size=500, val_fraction=0.1)
    assert len(d.train) + len(d.val) == 500 and len(d.val) == 50


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "cifar"}, "dataset.name = 'cifar': must be one of digits"),
        ({"name": "digits", "noise_level": 1.0}, r"noise_level = 1.0: must be in \[0, 1\)"),
        ({"name": "digits", "noise_level": -0.1}, "noise_level = -0.1"),
        ({"name": "digits", "noise_type": "asym"}, "noise_type = 'asym': must be one of symmetric, pairflip"),
        ({"name": "digits", "val_fraction": 0.0}, r"dataset.val_fraction = 0.0: must be in \(0, 1\)"),
        ({"name": "digits", "train_size": 100000}, "dataset.train_size = 100000: must be at most 1437"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    name = kwargs.pop("name")
    with pytest.raises(SpecError, match=match):
        load_dataset(name, **kwargs)


def test_missing_files_offline_name_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"mnist: files missing in {tmp_path}/MNIST/raw: train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_root=tmp_path)


def test_mnist_loads_from_a_local_copy(test_data_root: Path) -> None:
    d = load_dataset("mnist", data_root=test_data_root, train_size=2000, noise_level=0.05)
    assert d.train.x.shape[1:] == (1, 28, 28) and len(d.test) == 10000
    assert len(d.train) + len(d.val) == 2000
    assert d.num_classes == 10 and 0.0 <= float(d.test.x.min()) and float(d.test.x.max()) == 1.0


def test_fashion_mnist_loads_from_a_local_copy(test_data_root: Path) -> None:
    d = load_dataset("fashion_mnist", data_root=test_data_root, train_size=1000)
    assert d.train.x.shape[1:] == (1, 28, 28) and len(d.test) == 10000


def test_linear_task_shapes_and_truth() -> None:
    d = load_dataset("linear", linear={"dim": 5, "n_train": 50, "n_val": 100, "n_test": 100, "noise_std": 0.0})
    assert d.task == "regression" and d.train.x.shape == (50, 5)
    assert d.linear_truth is not None
    expected = d.train.x.double() @ torch.from_numpy(d.linear_truth.weights)
    assert torch.allclose(d.train.y.double(), expected, atol=1e-5)  # noise_std = 0: y = x . w*
