"""Stand-in images for planning a study whose dataset is not on this machine (``kdtune plan`` before a download).

A shipped spec such as ``search_spaces/cifar100_resnet.yaml`` should say what it would cost before anyone fetches
its 160 MB of images. The sizes, image shape and class count of the well-known datasets are published
(:data:`KNOWN`), and they are all a plan needs: a stand-in pool of that many random images (seeded pixels, decoded
on demand as images on disk are, so the pool costs no memory) with balanced labels is subset, split and noised by
the same code as the real pool (:func:`kdtune.core.data.split_pool`). The plan then counts the same batches,
evaluations and flipped labels and times the models on inputs of the right shape; it says that the data are
missing and never looks them up in the cache. ``kdtune run`` never uses a stand-in: missing data stay a one-line
refusal there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kdtune.core.data import DataBundle
from kdtune.core.data import split_pool
from kdtune.core.images import DiskImages


#: name -> (training images, test images, (C, H, W), classes), as torchvision documents each dataset.
KNOWN: dict[str, tuple[int, int, tuple[int, int, int], int]] = {
    "mnist": (60_000, 10_000, (1, 28, 28), 10),
    "fashion_mnist": (60_000, 10_000, (1, 28, 28), 10),
    "kmnist": (60_000, 10_000, (1, 28, 28), 10),
    "torchvision:MNIST": (60_000, 10_000, (1, 28, 28), 10),
    "torchvision:FashionMNIST": (60_000, 10_000, (1, 28, 28), 10),
    "torchvision:KMNIST": (60_000, 10_000, (1, 28, 28), 10),
    "torchvision:CIFAR10": (50_000, 10_000, (3, 32, 32), 10),
    "torchvision:CIFAR100": (50_000, 10_000, (3, 32, 32), 100),
    "torchvision:SVHN": (73_257, 26_032, (3, 32, 32), 10),
    "torchvision:STL10": (5_000, 8_000, (3, 96, 96), 10),
}


def has_stand_in(name: str) -> bool:
    return name in KNOWN


@dataclass(frozen=True)
class RandomImages:
    """An :class:`~kdtune.core.images.ImageReader` of ``count`` random images of ``shape``: image i is fixed by
    (``seed``, i), so a plan's timing batches are the same every time."""

    name: str
    count: int
    shape: tuple[int, int, int]
    seed: int

    def __len__(self) -> int:
        return self.count

    def read(self, i: int) -> np.ndarray:
        return np.random.default_rng([self.seed, i]).random(self.shape, dtype=np.float32)

    def identity(self) -> str:
        return f"stand-in {self.name} {self.count} {self.shape} {self.seed}"


def stand_in_bundle(name: str, *, train_size: int | None, val_fraction: float, noise_level: float, noise_type: str,
                    seed: int, image_size: tuple[int, int] | None = None) -> DataBundle:
    """``name``'s splits as :func:`kdtune.tasks.datasets.load_dataset` would cut them, on random images of its
    shape (resized to ``image_size`` when set) with balanced labels; ``description["stand_in"]`` is true."""
    train_n, test_n, (c, h, w), classes = KNOWN[name]
    shape = (c, *image_size) if image_size is not None else (c, h, w)
    pool = DiskImages(RandomImages(name, train_n, shape, 0), np.arange(train_n), shape, workers=0)
    test = DiskImages(RandomImages(name, test_n, shape, 1), np.arange(test_n), shape, workers=0)
    labels = (np.arange(train_n) % classes).astype(np.int64)
    test_labels = (np.arange(test_n) % classes).astype(np.int64)
    description: dict[str, Any] = {"name": name, "train_size": train_size, "val_fraction": val_fraction,
                                   "noise_level": noise_level, "noise_type": noise_type, "seed": seed, "stand_in": True}
    return split_pool(name, (pool, labels, test, test_labels, classes), train_size=train_size,
                      val_fraction=val_fraction, noise_level=noise_level, noise_type=noise_type, seed=seed,
                      description=description)
