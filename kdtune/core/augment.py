"""Image augmentations, as their parameters and as the one resampling that turns parameters into pixels.

Two families, as vision training uses them:

* shifts and rotations (MNIST-style): one affine resampling per batch (:func:`affine_warp`), pixels moved in from
  outside are 0;
* crops and flips (CIFAR / ImageNet-style): a random crop of ``crop`` pixels from the image zero-padded by
  ``padding`` (``RandomCrop(32, padding=4)``), or a random-resized crop (``scale``, ``ratio``, as
  ``RandomResizedCrop``), resized back to the image's size, then a horizontal flip with probability 1/2 (``flip``).

A crop is kept as its box (top, left, height, width in the padded image) and a flip as one bit, as FKD (Shen & Xing
2021) stores them: :func:`crop_boxes` turns uniform draws into boxes, :func:`crop_flip` renders them. The
teacher's random augmentation (:func:`augment_batch`, draws from a generator) and the students' reproducible views
(:mod:`kdtune.tasks.image.views`, draws from a counter-based hash) share both, so one box gives the same pixels
wherever it is rendered: in the training loop, in a data loader's worker, or when the teacher's logits per view are
computed. Crops and flips come first, then shifts and rotations.

Core module: numpy, and torch inside the functions that render (a spec checks its augmentation with
:class:`Augment` without loading torch, and the read-only commands read specs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from kdtune.errors import SpecError


if TYPE_CHECKING:
    import torch


#: torchvision's RandomResizedCrop default aspect-ratio range.
DEFAULT_RATIO = (3 / 4, 4 / 3)
#: Uniform draws one crop-and-flip takes: box (4, top and left last) and flip (1).
CROP_DRAWS = 5


@dataclass(frozen=True)
class Augment:
    """Random per-sample augmentation of training images.

    ``shift``: integer shifts uniform in [-shift, shift] pixels on each axis; ``rotate``: degrees uniform in
    [-rotate, rotate]; ``crop``: the side of a random square crop from the image padded by ``padding`` zero
    pixels on each side, resized back to the image's size when smaller (``crop`` = the side with ``padding`` 4
    is CIFAR's random crop); ``scale`` (area share [low, high]) and ``ratio`` (aspect [low, high]): a
    random-resized crop instead; ``flip``: a horizontal flip with probability 1/2. Validation, test and the
    teacher's logits never see it.
    """

    shift: int = 0
    rotate: float = 0.0
    crop: int = 0
    padding: int = 0
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] = DEFAULT_RATIO
    flip: bool = False

    def __post_init__(self) -> None:
        # 10 and 10.0 degrees are one augmentation (and one cache key); JSON gives lists back for the pairs
        object.__setattr__(self, "shift", int(self.shift))
        object.__setattr__(self, "rotate", float(self.rotate))
        object.__setattr__(self, "crop", int(self.crop))
        object.__setattr__(self, "padding", int(self.padding))
        object.__setattr__(self, "flip", bool(self.flip))
        if self.scale is not None:
            object.__setattr__(self, "scale", _pair("augment.scale", self.scale))
        object.__setattr__(self, "ratio", _pair("augment.ratio", self.ratio))
        if self.shift < 0:
            raise SpecError("augment.shift", self.shift, "must be a number of pixels >= 0")
        if not 0 <= self.rotate <= 180:
            raise SpecError("augment.rotate", self.rotate, "must be degrees in [0, 180]")
        if self.crop < 0 or self.padding < 0:
            name = "crop" if self.crop < 0 else "padding"
            raise SpecError(f"augment.{name}", getattr(self, name), "must be a number of pixels >= 0")
        if self.padding and not self.crop:
            raise SpecError("augment.padding", self.padding, "needs augment.crop (the side of the random crop taken "
                            "from the padded image)")
        if self.scale is not None:
            if self.crop:
                raise SpecError("augment.scale", list(self.scale), "cannot be combined with augment.crop: a crop is "
                                "either a padded random crop (crop, padding) or a random-resized one (scale, ratio)")
            if not 0 < self.scale[0] <= self.scale[1] <= 1:
                raise SpecError("augment.scale", list(self.scale), "must be [low, high] with 0 < low <= high <= 1 "
                                "(the share of the image's area a crop covers)")
        if not 0 < self.ratio[0] <= self.ratio[1] < math.inf:
            raise SpecError("augment.ratio", list(self.ratio), "must be [low, high] with 0 < low <= high (aspect "
                            "ratios, width / height)")
        if self.ratio != DEFAULT_RATIO and self.scale is None:
            raise SpecError("augment.ratio", list(self.ratio), "needs augment.scale (the random-resized crop)")

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.rotate > 0 or self.crops or self.flip

    @property
    def crops(self) -> bool:
        """Whether a crop box is drawn (padded random crop or random-resized crop)."""
        return self.crop > 0 or self.scale is not None

    @property
    def warps(self) -> bool:
        """Whether an affine resampling follows (shifts or rotations)."""
        return self.shift > 0 or self.rotate > 0

    def to_dict(self) -> dict[str, Any]:
        """The augmentation's identity, as cache keys hold it: ``shift`` and ``rotate`` always (the keys written
        before crops and flips existed stay as they were), the others only when set."""
        d: dict[str, Any] = {"shift": self.shift, "rotate": self.rotate}
        if self.crop:
            d["crop"] = self.crop
        if self.padding:
            d["padding"] = self.padding
        if self.scale is not None:
            d["scale"] = list(self.scale)
            if self.ratio != DEFAULT_RATIO:
                d["ratio"] = list(self.ratio)
        if self.flip:
            d["flip"] = True
        return d


def _pair(field: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise SpecError(field, value, "must be a pair of numbers [low, high]") from None
    return low, high


def check_fits(augment: Augment, height: int, width: int, *, field: str) -> None:
    """Refuse an augmentation that does not fit images of ``height`` x ``width``: a crop larger than the padded
    image, or a shift that moves the whole image out. ``field`` is the spec section (``student.augment``)."""
    side = min(height, width)
    if augment.crop > side + 2 * augment.padding:
        raise SpecError(f"{field}.crop", augment.crop, f"must be at most the images' side plus twice the padding "
                        f"({side} + 2 x {augment.padding} = {side + 2 * augment.padding} pixels: these are "
                        f"{height}x{width}); a larger crop than the image")
    if augment.shift >= side:
        raise SpecError(f"{field}.shift", augment.shift, f"must be less than the images' side ({side} pixels: these "
                        f"are {height}x{width}); a larger shift moves the whole image out")


def crop_boxes(augment: Augment, height: int, width: int, u: np.ndarray) -> np.ndarray:
    """Crop boxes and flips from uniform draws ``u`` (B, :data:`CROP_DRAWS`) in [0, 1): an int64 array (B, 5) of
    top, left, box height, box width (in the image padded by ``augment.padding``) and flip (0 or 1).

    Without a crop the box is the whole image. A random-resized crop draws its area share uniformly in ``scale``
    and its log aspect ratio uniformly in log ``ratio``, then clamps the box to the image (torchvision redraws
    up to ten times instead; a clamped box keeps one draw per parameter, so a view stays a pure function of its
    seed).
    """
    b = len(u)
    h = np.full(b, height, dtype=np.int64)
    w = np.full(b, width, dtype=np.int64)
    span_h, span_w = height, width
    if augment.crop:
        h[:], w[:] = augment.crop, augment.crop
        span_h, span_w = height + 2 * augment.padding, width + 2 * augment.padding
    elif augment.scale is not None:
        area = height * width * (augment.scale[0] + u[:, 0] * (augment.scale[1] - augment.scale[0]))
        log_lo, log_hi = math.log(augment.ratio[0]), math.log(augment.ratio[1])
        aspect = np.exp(log_lo + u[:, 1] * (log_hi - log_lo))
        w = np.clip(np.round(np.sqrt(area * aspect)), 1, width).astype(np.int64)
        h = np.clip(np.round(np.sqrt(area / aspect)), 1, height).astype(np.int64)
    top = np.minimum(np.floor(u[:, 2] * (span_h - h + 1)), span_h - h).astype(np.int64)
    left = np.minimum(np.floor(u[:, 3] * (span_w - w + 1)), span_w - w).astype(np.int64)
    flip = (u[:, 4] < 0.5).astype(np.int64) if augment.flip else np.zeros(b, dtype=np.int64)
    return np.stack([top, left, h, w, flip], axis=1)


def crop_flip(x: torch.Tensor, boxes: np.ndarray, padding: int = 0) -> torch.Tensor:
    """``x`` (B, C, H, W), sample b cropped to its box (:func:`crop_boxes`, in ``x`` zero-padded by ``padding``),
    resized back to H x W (bilinear, antialiased, as torchvision's ``resized_crop`` on tensors) where the box is
    smaller, and flipped left-right where its flip is 1.

    One sample at a time (boxes differ in size), so a sample's pixels never depend on its batch.
    """
    import torch
    import torch.nn.functional as F

    _, _, height, width = x.shape
    padded = F.pad(x, (padding,) * 4) if padding else x
    out = []
    for b, (top, left, h, w, flip) in enumerate(boxes.tolist()):
        patch = padded[b : b + 1, :, top : top + h, left : left + w]
        if (h, w) != (height, width):
            patch = F.interpolate(patch, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        out.append(patch.flip(-1) if flip else patch)
    result = torch.cat(out) if out else x[:0]
    return result.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) \
        else result.contiguous()


def augment_batch(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """``x`` (B, C, H, W) augmented per sample, with draws from ``generator`` (CPU) alone.

    Shifts and angles are drawn first, as they always were (a shift-and-rotate recipe draws what it drew before
    crops existed), then the crop boxes and flips. One ``affine_grid`` + ``grid_sample`` for the whole batch
    (:func:`affine_warp`): each sample gets its own shift and angle (torchvision's v2 transforms draw one set of
    parameters per call, i.e. per batch).
    """
    import torch

    b = x.shape[0]
    dx = torch.randint(-augment.shift, augment.shift + 1, (b,), generator=generator).float()
    dy = torch.randint(-augment.shift, augment.shift + 1, (b,), generator=generator).float()
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(augment.rotate)
    if augment.crops or augment.flip:
        u = torch.rand(b, CROP_DRAWS, generator=generator, dtype=torch.float64).numpy()
        x = crop_flip(x, crop_boxes(augment, x.shape[2], x.shape[3], u), augment.padding)
        if not augment.warps:
            return x
    return affine_warp(x, dx, dy, angle)


def affine_warp(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W), sample b shifted by (dx[b], dy[b]) pixels and rotated by angle[b] radians (CPU float32
    tensors of shape (B,)); pixels moved in from outside are 0.

    The one resampling of shifts and rotations (the teacher's random one and the student's reproducible views,
    :mod:`kdtune.tasks.image.views`). Integer shifts without rotation land exactly on pixel centres, so they move
    pixels without blurring them.
    """
    import torch
    import torch.nn.functional as F

    _, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    # theta maps output to input coordinates in [-1, 1]; a shift of d pixels is 2d / size there.
    theta = torch.stack([torch.stack([cos, -sin, -2 * dx / w], 1), torch.stack([sin, cos, -2 * dy / h], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) \
        else out
