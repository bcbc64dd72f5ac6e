"""Images read from disk by index, never held decoded: a split's inputs when a dataset does not fit in memory.

A :class:`DiskImages` is a split's positions in an :class:`ImageReader` (an image folder, a torchvision dataset on
disk: :mod:`kdtune.tasks.image.folder`). The training loop, evaluation and the teacher's logits read it in batches
through a torch ``DataLoader`` whose worker processes decode the images and render their augmentation
(:meth:`DiskImages.batches`); each batch carries the positions of its samples, so labels, cached teacher logits
and the per-view logits join by position exactly as they do on the in-memory path, which slices pre-loaded
tensors instead (much faster per batch: ``docs/architecture.md``, Performance). The batches are the ones the
in-memory path would cut: same order, same pixels (one decoder, one renderer), so a seed trains the same student
on either path.

Core module: torch and numpy only; how an image is decoded is the reader's business.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol
from typing import Union

import numpy as np
import torch


class ImageReader(Protocol):
    """Decodes image ``i`` of a source; picklable, so that data loader workers and Ray trials receive it."""

    def __len__(self) -> int: ...

    def read(self, i: int) -> np.ndarray: ...  # (C, H, W) float32 in [0, 1], every image of one size

    def identity(self) -> str: ...  # what names the content (files, sizes, decoding), for fingerprints


#: Renders a decoded batch: (pixels (B, C, H, W), positions (B,), views (B,)) -> pixels; a view's parameters.
Render = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class DiskImages:
    """The images of one split: positions ``index`` of ``reader``, each (C, H, W) = ``image_shape``.

    ``workers`` decoding processes per loader (0: decode in the calling process). It answers the few tensor
    questions the code asks of a split's inputs (``shape``, ``dim()``, ``len``); everything that reads pixels goes
    through :meth:`batches` or :meth:`load`.
    """

    reader: ImageReader
    index: np.ndarray  # (N,) int64 positions in the reader
    image_shape: tuple[int, int, int]
    workers: int = 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.image_shape)

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, positions: torch.Tensor | np.ndarray) -> DiskImages:
        """The images at ``positions`` (indices or a boolean mask) of this split, still on disk."""
        pos = positions.cpu().numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions)
        return DiskImages(self.reader, self.index[pos], self.image_shape, self.workers)

    def load(self, positions: torch.Tensor | np.ndarray | slice) -> torch.Tensor:
        """The images at ``positions`` decoded here, (B, C, H, W) float32: for a check on a few samples."""
        rows = self.index[positions.cpu().numpy() if isinstance(positions, torch.Tensor) else positions]
        return _decode(self.reader, np.atleast_1d(rows), self.image_shape)

    def identity(self) -> bytes:
        """What a fingerprint hashes instead of the pixels: the reader's identity and the positions."""
        return self.reader.identity().encode() + np.ascontiguousarray(self.index, dtype=np.int64).tobytes()

    def batches(self, positions: torch.Tensor, batch_size: int, *, views: torch.Tensor | None = None,
                render: Render | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(positions, pixels) of consecutive batches of ``positions`` (a permutation, or any sequence of this
        split's positions), decoded and rendered (``render(pixels, positions, views)``) in worker processes.

        Batches come back in order; a worker holds only the batch it decodes, so memory stays flat however many
        images the split has.
        """
        positions = positions.cpu()
        chunks = [(positions[i : i + batch_size], None if views is None else views.cpu()[i : i + batch_size])
                  for i in range(0, len(positions), batch_size)]
        dataset = _Batches(self, render)
        if self.workers == 0 or len(chunks) == 0:
            for item in chunks:
                yield dataset[item]
            return
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, sampler=chunks,
                                             num_workers=min(self.workers, len(chunks)), prefetch_factor=2)
        yield from loader


#: A split's inputs: pre-loaded tensors (the fast path) or images on disk.
Images = Union[torch.Tensor, DiskImages]


class _Batches(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item ``(positions, views)`` is that batch, decoded and rendered: what one worker makes at a time."""

    def __init__(self, images: DiskImages, render: Render | None) -> None:
        self.images = images
        self.render = render

    def __getitem__(self, item: tuple[torch.Tensor, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
        positions, views = item
        pixels = _decode(self.images.reader, self.images.index[positions.numpy()], self.images.image_shape)
        if self.render is not None:
            pixels = self.render(pixels, positions, views if views is not None else torch.zeros_like(positions))
        return positions, pixels

    def __len__(self) -> int:
        return len(self.images)


def _decode(reader: ImageReader, rows: np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
    out = np.empty((len(rows), *shape), dtype=np.float32)
    for j, row in enumerate(rows.tolist()):
        out[j] = reader.read(row)
    return torch.from_numpy(out)


def take(x: Images, positions: torch.Tensor) -> Images:
    """``x[positions]``: a tensor's rows, or the disk images at those positions (still on disk)."""
    return x.subset(positions) if isinstance(x, DiskImages) else x[positions]


def head(x: Images, n: int) -> torch.Tensor:
    """The first ``n`` inputs as a tensor (decoded here for disk images): the batch a model is checked on."""
    return x.load(slice(0, n)) if isinstance(x, DiskImages) else x[:n]


def in_memory(x: Images) -> torch.Tensor:
    """``x`` as the tensor it must be where a task never reads images from disk (the linear task's features)."""
    if isinstance(x, DiskImages):
        raise TypeError("images on disk where pre-loaded inputs are needed")
    return x
