"""Image datasets from disk: a folder in torchvision's ImageFolder layout, and torchvision datasets already on disk.

``dataset.name: image_folder`` reads ``dataset.root`` laid out as ``root/<class>/<image>`` (classes in sorted
order, as torchvision's ``ImageFolder`` numbers them), and ``dataset.test_root`` in the same layout when given
(else a fixed stratified 20% of the root is held out, independent of the data seed, as for digits).
``dataset.name: torchvision:<Class>`` reads ``torchvision.datasets.<Class>`` from ``dataset.data_root`` with
``download=False`` (its training and test splits: ``train=True/False`` or ``split="train"/"test"``).

Either way the result is a classification pool (:data:`kdtune.core.data.Pool`) that is split, subset and noised
from its labels alone (:func:`kdtune.core.data.split_labels`). Its images are decoded into memory when they fit
(decoded bytes at most :data:`IN_MEMORY_MAX_BYTES`, or ``dataset.in_memory: true``): then the study slices tensors,
as for every other dataset. Beyond that (or ``in_memory: false``) they stay on disk as
:class:`~kdtune.core.images.DiskImages`, read by index in data loader workers: memory stays flat as the number of
images grows. One reader decodes for both paths (pixels / 255, as float32 (C, H, W); grey images are one
channel, everything else RGB; resized to ``dataset.image_size`` when set), so both give the same pixels.

Bad input is one line naming the field, before anything trains: a folder with no images, a file that is not a
readable image (named), images of different sizes without ``dataset.image_size``, a class count that disagrees
with the folders, a torchvision dataset missing from disk.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdtune.core.data import Pool
from kdtune.core.data import stratified_take
from kdtune.core.images import DiskImages
from kdtune.errors import DataError
from kdtune.errors import SpecError
from kdtune.errors import one_line
from kdtune.tasks.image.names import IMAGE_FOLDER
from kdtune.tasks.image.names import TORCHVISION_PREFIX


#: torchvision's ``IMG_EXTENSIONS``: the files an ImageFolder holds.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: Decoded float32 bytes (training pool and test set) up to which ``in_memory: auto`` decodes everything once.
IN_MEMORY_MAX_BYTES = 2 * 2**30
#: Pillow modes read as one grey channel; any other mode is converted to RGB.
GREY_MODES = ("1", "L", "I", "I;16", "F")
FOLDER = IMAGE_FOLDER
TORCHVISION = TORCHVISION_PREFIX
#: Held out as the test set when an image folder has no ``test_root`` (fixed, stratified, as for digits).
FOLDER_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class ImageOptions:
    """The ``dataset`` fields of images read from disk."""

    root: str | None = None  # image_folder: the ImageFolder root
    test_root: str | None = None  # image_folder: the test set, same layout (else 20% of root is held out)
    image_size: tuple[int, int] | None = None  # (height, width) every image is resized to; None: as they are
    in_memory: bool | None = None  # None: decided by size (IN_MEMORY_MAX_BYTES)
    workers: int = 2  # decoding processes per data loader on the disk path
    num_classes: int | None = None  # checked against the folders / the dataset when given

    def __post_init__(self) -> None:  # a size read back from JSON is a list: one size, one fingerprint
        if self.image_size is not None:
            object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))


def is_disk_dataset(name: str) -> bool:
    """Whether ``name`` is read by this module (an image folder or a torchvision dataset)."""
    return name == FOLDER or name.startswith(TORCHVISION)


class FolderReader:
    """Decodes the image files of a folder by index (Pillow), every image as (C, H, W) float32 in [0, 1]."""

    def __init__(self, root: str, files: list[str], mode: str, size: tuple[int, int] | None, identity: str) -> None:
        self.root = root
        self.files = files  # relative to root
        self.mode = mode
        self.size = size
        self._identity = identity

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> np.ndarray:
        from PIL import Image

        path = os.path.join(self.root, self.files[i])
        try:
            with Image.open(path) as image:
                return to_array(image, self.mode, self.size, path)
        except DataError:
            raise
        except Exception as exc:  # truncated data behind a valid header surfaces only when decoded
            raise DataError(f"{path}: not a readable image ({one_line(exc)})") from None

    def identity(self) -> str:
        return self._identity


class TorchvisionReader:
    """Item ``i`` of a torchvision dataset on disk, as (C, H, W) float32 in [0, 1]; the dataset object is opened
    lazily in each process (workers, Ray trials), never pickled."""

    def __init__(self, name: str, root: str, train: bool, mode: str, size: tuple[int, int] | None, count: int) -> None:
        self.name, self.root, self.train, self.mode, self.size, self.count = name, root, train, mode, size, count
        self._dataset: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None}

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            self._dataset = open_torchvision(self.name, self.root, self.train)
        return self._dataset

    def __len__(self) -> int:
        return self.count

    def read(self, i: int) -> np.ndarray:
        image = self.dataset[i][0]
        return to_array(image, self.mode, self.size, f"{TORCHVISION}{self.name} item {i}")

    def identity(self) -> str:
        return f"{TORCHVISION}{self.name}:{Path(self.root).absolute()}:{'train' if self.train else 'test'}:" \
               f"{self.count}:{self.mode}:{self.size}"


def to_array(image: Any, mode: str, size: tuple[int, int] | None, source: str) -> np.ndarray:
    """A Pillow image as (C, H, W) float32 in [0, 1]: converted to ``mode``, resized (bilinear) to ``size``."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise DataError(f"{source}: is {type(image).__name__}, not an image")
    image = image.convert(mode)
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def load_disk_dataset(name: str, options: ImageOptions, data_root: str | os.PathLike[str]) -> Pool:
    """The pool of an image folder or a torchvision dataset: images in memory when they fit (or asked), else on
    disk. Labels are read without decoding an image (the file's class folder; the dataset's ``targets``)."""
    if name == FOLDER:
        reader, pool_rows, pool_y, test_reader, test_rows, test_y, classes = _folder_pool(options)
    else:
        reader, pool_rows, pool_y, test_reader, test_rows, test_y, classes = _torchvision_pool(name, options, data_root)
    shape = reader_shape(reader)
    pool = DiskImages(reader, pool_rows, shape, options.workers)
    test = DiskImages(test_reader, test_rows, shape, options.workers)
    decoded = (len(pool) + len(test)) * int(np.prod(shape)) * 4
    in_memory = decoded <= IN_MEMORY_MAX_BYTES if options.in_memory is None else options.in_memory
    if not in_memory:
        return pool, pool_y, test, test_y, classes
    return decode_all(pool), pool_y, decode_all(test), test_y, classes


def decode_all(images: DiskImages) -> np.ndarray:
    """Every image decoded once (in loader workers), as one (N, C, H, W) float32 array: the in-memory path."""
    import torch

    out = np.empty(images.shape, dtype=np.float32)
    for positions, batch in images.batches(torch.arange(len(images)), 256):
        out[positions.numpy()] = batch.numpy()
    return out


def reader_shape(reader: FolderReader | TorchvisionReader) -> tuple[int, int, int]:
    """(C, H, W) of the reader's images, from its first one (all are of one size: checked, or resized)."""
    c, h, w = reader.read(0).shape
    return int(c), int(h), int(w)


def _folder_pool(options: ImageOptions) -> tuple[Any, ...]:
    if options.root is None:
        raise SpecError("dataset.root", None, "must be the folder of an image_folder dataset (root/<class>/<image>)")
    classes, files, labels = scan_folder(options.root, "dataset.root")
    if options.test_root is not None:
        test_classes, test_files, test_labels = scan_folder(options.test_root, "dataset.test_root")
        if test_classes != classes:
            raise SpecError("dataset.test_root", options.test_root, f"has the classes {_names(test_classes)} but "
                            f"dataset.root has {_names(classes)}: both must hold the same class folders")
    num_classes = _check_class_count(options.num_classes, len(classes), f"the {len(classes)} class folders of "
                                     f"{options.root} ({_names(classes)})")
    size = options.image_size
    mode, first = probe_images(options.root, files, size, "dataset.root")
    reader = FolderReader(options.root, files, mode, size, _identity(options.root, files, mode, size))
    if options.test_root is None:  # a fixed stratified share, whatever the data seed
        held = max(num_classes, round(FOLDER_TEST_FRACTION * len(files)))
        pool_rows = stratified_take(labels, len(files) - held, np.random.default_rng(0), options.root)
        test_rows = np.setdiff1d(np.arange(len(files)), pool_rows)
        return reader, pool_rows, labels[pool_rows], reader, test_rows, labels[test_rows], num_classes
    test_mode, _ = probe_images(options.test_root, test_files, size, "dataset.test_root", first=first)
    mode = mode if mode == test_mode else "RGB"  # grey training images and colour test images: both read as RGB
    reader = FolderReader(options.root, files, mode, size, _identity(options.root, files, mode, size))
    test_reader = FolderReader(options.test_root, test_files, mode, size,
                               _identity(options.test_root, test_files, mode, size))
    return (reader, np.arange(len(files)), labels, test_reader, np.arange(len(test_files)), test_labels,
            num_classes)


def scan_folder(root: str, field: str) -> tuple[list[str], list[str], np.ndarray]:
    """An ImageFolder's classes (sorted folder names), its image files (relative paths) and their labels."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise SpecError(field, root, "folder not found" if not path.exists() else "is not a folder")
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = sorted(str(p.relative_to(path)) for p in (path / name).rglob("*")
                       if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        files += found
        labels += [label] * len(found)
    if not files:
        raise SpecError(field, root, f"holds no images in torchvision's ImageFolder layout (root/<class>/<image> with "
                        f"an extension among {', '.join(IMAGE_EXTENSIONS)})")
    return classes, files, np.asarray(labels, dtype=np.int64)


def probe_images(root: str, files: list[str], size: tuple[int, int] | None, field: str, *,
                 first: tuple[str, tuple[int, int]] | None = None) -> tuple[str, tuple[str, tuple[int, int]]]:
    """Open every image's header (nothing is decoded): each must be a readable image, and all of one size (that of
    ``first``, a path and its (height, width), when given) unless ``size`` resizes them. Returns the Pillow mode
    they are read in (grey or RGB) and the first image with its size."""
    from PIL import Image

    modes: set[str] = set()
    for name in files:
        path = os.path.join(root, name)
        try:
            with Image.open(path) as image:
                modes.add(image.mode)
                width, height = image.size
        except Exception as exc:  # not an image, a damaged header, a permission
            raise SpecError(field, path, f"is not a readable image ({one_line(exc)})") from None
        if first is None:
            first = (path, (height, width))
        elif size is None and (height, width) != first[1]:
            raise SpecError("dataset.image_size", None, f"must be set: the images differ in size ({first[0]} is "
                            f"{first[1][0]}x{first[1][1]}, {path} is {height}x{width}); every image is resized to it")
    assert first is not None  # scan_folder refuses a folder without images
    return ("L" if modes <= set(GREY_MODES) else "RGB"), first


def _identity(root: str, files: list[str], mode: str, size: tuple[int, int] | None) -> str:
    """What names a folder's content without reading it: every file's relative path, byte size and modification
    time, and how it is decoded. A changed, added or removed image is another dataset (another cache key)."""
    h = hashlib.sha256(f"{mode}:{size}".encode())
    for name in files:
        stat = os.stat(os.path.join(root, name))
        h.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"folder:{h.hexdigest()}"


def _check_class_count(given: int | None, found: int, where: str) -> int:
    if given is not None and given != found:
        raise SpecError("dataset.num_classes", given, f"disagrees with {where}")
    return found


def _names(classes: list[str]) -> str:
    return ", ".join(classes[:5]) + (f", ... ({len(classes)} in all)" if len(classes) > 5 else "")


def torchvision_class(name: str) -> Any:
    """The dataset class ``torchvision:<Class>`` names, and whether it splits by ``train`` (else ``split``)."""
    import torchvision.datasets

    cls_name = name.removeprefix(TORCHVISION)
    cls = getattr(torchvision.datasets, cls_name, None)
    if not inspect.isclass(cls) or cls_name.startswith("_"):
        raise SpecError("dataset.name", name, "must name a dataset class of torchvision.datasets after "
                        "'torchvision:' (e.g. torchvision:CIFAR10, CIFAR100, SVHN, STL10)")
    params = inspect.signature(cls).parameters
    if "train" not in params and "split" not in params:
        raise SpecError("dataset.name", name, "takes neither train nor split: kdtune cannot tell its training "
                        "images from its test images")
    return cls


def open_torchvision(name: str, root: str, train: bool) -> Any:
    """The dataset on disk (``download=False``); missing is one line."""
    cls = torchvision_class(TORCHVISION + name)
    params = inspect.signature(cls).parameters
    split = {"train": train} if "train" in params else {"split": "train" if train else "test"}
    try:
        return cls(root, download=False, **split)
    except (RuntimeError, OSError, ValueError) as exc:
        raise DataError(f"{TORCHVISION}{name}: not found under {root} ({one_line(exc)}); place it there first "
                        "(kdtune reads it with download=False; set dataset.data_root)") from None


def _torchvision_pool(name: str, options: ImageOptions, data_root: str | os.PathLike[str]) -> tuple[Any, ...]:
    torchvision_class(name)
    cls_name, root = name.removeprefix(TORCHVISION), str(Path(data_root).expanduser())
    readers = []
    labels = []
    for train in (True, False):
        dataset = open_torchvision(cls_name, root, train)
        y = _labels(dataset)
        first = dataset[0][0]
        mode = "L" if getattr(first, "mode", "RGB") in GREY_MODES else "RGB"
        reader = TorchvisionReader(cls_name, root, train, mode, options.image_size, len(y))
        reader._dataset = dataset
        readers.append(reader)
        labels.append(y)
    classes = getattr(readers[0].dataset, "classes", None)
    found = len(classes) if classes else int(max(labels[0].max(), labels[1].max())) + 1
    num_classes = _check_class_count(options.num_classes, found, f"the {found} classes of {name}")
    return (readers[0], np.arange(len(labels[0])), labels[0], readers[1], np.arange(len(labels[1])), labels[1],
            num_classes)


def _labels(dataset: Any) -> np.ndarray:
    """A torchvision dataset's labels without decoding its images (``targets`` or ``labels``)."""
    for attribute in ("targets", "labels", "_labels"):
        values = getattr(dataset, attribute, None)
        if values is not None:
            return np.asarray(values, dtype=np.int64).reshape(-1)
    return np.asarray([dataset[i][1] for i in range(len(dataset))], dtype=np.int64)
