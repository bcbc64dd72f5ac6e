"""Reproducible augmented views of the training images, and the teacher's logits for each of them.

A student that augments must be taught on the view it sees: Beyer et al. 2022 ("Knowledge distillation: A good
teacher is patient and consistent") measured that consistent teaching beats fixed targets computed on the
un-augmented image. Running the teacher on every augmented batch costs a teacher forward per student step
(about 75x a student step, ``docs/architecture.md``). FKD (Shen & Xing 2021, "A Fast Knowledge Distillation
Framework for Visual Recognition") precomputes the teacher's soft labels for a fixed set of augmented views of
each image, keyed by the view's random parameters, and lets the student draw among them. kdtune does the same:

* view ``v`` of training image ``i`` is fixed by (``i``, ``v``, the data seed) alone (:meth:`ViewSpec.seeds`, a
  counter-based hash: no generator state), so the cache stores only the logits and each view's seed; a view's
  parameters (its shift and angle; its crop box and flip, :meth:`ViewSpec.boxes`) are re-drawn from that seed
  wherever it is rendered, in the training loop or in the data loader's workers of images read from disk;
* :func:`render` is the one function that turns (image, view) into pixels. :func:`compute_view_logits` (the
  cache's builder) and the student loop (:class:`~kdtune.core.train.Trainer` through :class:`ViewLogits`) both call
  it, so the logits a student reads for a view are the teacher's on that exact view by construction;
* each epoch the student draws one of the V views of every image with its own seed (paired across the
  configurations of a condition, like its batch order).

With many classes the rows can be stored sparse (``top_k``): the k largest logits of each row, their classes,
and the log-sum-exp and the mean of the other K - k logits. :func:`densify` gives each of the other classes
one logit, chosen so that their total probability is exact at T = 1 and right to first order as T grows;
``docs/views.md`` measures what it moves.

Core module: torch and numpy only; no Ray, no W&B, no files (the cache stores what it computes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from kdtune.core.augment import CROP_DRAWS
from kdtune.core.augment import Augment
from kdtune.core.augment import affine_warp
from kdtune.core.augment import check_fits
from kdtune.core.augment import crop_boxes
from kdtune.core.augment import crop_flip
from kdtune.core.images import DiskImages
from kdtune.core.images import Images
from kdtune.core.train import EVAL_BATCH_SIZE
from kdtune.errors import SpecError
from kdtune.tasks.image.names import DEFAULT_VIEWS


#: Bumped when the mapping from (image, view, seed) to pixels changes: every per-view cache key includes it.
VIEW_FORMAT = 1
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrap-around arithmetic): a fixed, platform-independent hash."""
    z = z + _GOLDEN
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def _unit(seeds: np.ndarray, stream: int) -> np.ndarray:
    """A uniform float in [0, 1) per seed, one independent stream per parameter."""
    return (_mix(seeds ^ _U64(stream)) >> _U64(11)).astype(np.float64) * 2.0**-53


@dataclass(frozen=True)
class ViewSpec:
    """The V augmented views of every training image: their augmentation, their number and the data seed."""

    augment: Augment
    views: int = DEFAULT_VIEWS
    seed: int = 0  # the data seed: views of another subset or split are other views

    def __post_init__(self) -> None:
        if isinstance(self.views, bool) or not isinstance(self.views, int) or self.views < 1:
            raise SpecError("student.views", self.views, "must be a positive integer (augmented views per image)")
        if not self.augment.active:
            raise SpecError("student.augment", self.augment.to_dict(), "must shift, rotate, crop or flip (shift > 0, "
                            "rotate > 0, crop > 0, scale or flip) for views to differ")

    def to_dict(self) -> dict[str, Any]:
        """The views' identity, as it goes into the cache key (shift-and-rotate views keep the keys they had)."""
        return {"augment": self.augment.to_dict(), "views": self.views, "seed": self.seed, "format": VIEW_FORMAT}

    def seeds(self, index: np.ndarray, view: np.ndarray) -> np.ndarray:
        """The uint64 seed of view ``view`` of training image ``index`` (arrays of equal shape)."""
        base = _mix(np.array([self.seed], dtype=np.int64).view(_U64))
        return _mix(_mix(base ^ np.asarray(index, dtype=np.int64).view(_U64)) ^ np.asarray(view, dtype=np.int64).view(_U64))

    def params(self, index: np.ndarray, view: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dx, dy, angle) of each view: integer pixel shifts in [-shift, shift] and radians in [-rotate, rotate]."""
        seeds = self.seeds(index, view)
        span = 2 * self.augment.shift + 1
        dx = np.minimum(np.floor(_unit(seeds, 1) * span), span - 1) - self.augment.shift
        dy = np.minimum(np.floor(_unit(seeds, 2) * span), span - 1) - self.augment.shift
        angle = (_unit(seeds, 3) * 2 - 1) * math.radians(self.augment.rotate)
        return (torch.from_numpy(dx.astype(np.float32)), torch.from_numpy(dy.astype(np.float32)),
                torch.from_numpy(angle.astype(np.float32)))

    def boxes(self, index: np.ndarray, view: np.ndarray, height: int, width: int) -> np.ndarray:
        """The crop box and flip of each view (:func:`kdtune.core.augment.crop_boxes`: top, left, height, width,
        flip), from streams of the view's seed of their own: what a view stores, as FKD stores its crops."""
        seeds = self.seeds(index, view)
        u = np.stack([_unit(seeds, 4 + j) for j in range(CROP_DRAWS)], axis=1)
        return crop_boxes(self.augment, height, width, u)

    def render(self, x: torch.Tensor, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Views ``view`` of training images ``index`` (:func:`render`); what the Trainer calls, so that
        :mod:`kdtune.core.train` needs no import of this module, which builds on it."""
        return render(x, self, index, view)

    def apply(self, pixels: torch.Tensor, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Views ``view`` of training images ``index`` whose pixels (B, C, H, W) are ``pixels`` (read from disk in a
        loader worker): the same rendering as :meth:`render`."""
        index_np, view_np = index.cpu().numpy(), view.cpu().numpy()
        if self.augment.crops or self.augment.flip:
            pixels = crop_flip(pixels, self.boxes(index_np, view_np, pixels.shape[2], pixels.shape[3]),
                               self.augment.padding)
            if not self.augment.warps:
                return pixels
        dx, dy, angle = self.params(index_np, view_np)
        return affine_warp(pixels, dx, dy, angle)


def render(x: torch.Tensor, spec: ViewSpec, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """Views ``view`` of training images ``index``: ``x`` (N, C, H, W) is the whole training split.

    Each sample is rendered from its own parameters (its crop box and flip, then its shift and angle), so a
    view's pixels do not depend on the batch it is in.
    """
    return spec.apply(x[index], index, view)


def view_cache_bytes(images: int, classes: int, views: int, top_k: int | None = None) -> int:
    """Bytes of the teacher's per-view logits: V x images x classes x 4 (float32), or with ``top_k`` each row's
    k logits (4 bytes) and classes (4 bytes) and its remainder's log-sum-exp and mean (4 bytes each)."""
    per_row = classes * 4 if top_k is None else top_k * 8 + 8
    return views * images * per_row


def check_views(spec: ViewSpec, x_shape: tuple[int, ...], classes: int, *, top_k: int | None,
                max_bytes: int | None) -> None:
    """Refuse, before anything trains, views of inputs that are not images, a ``top_k`` above the class count and
    a cache over ``max_bytes``. ``x_shape`` is the training inputs' shape, (N, C, H, W) for images."""
    if len(x_shape) != 4:
        raise SpecError("student.augment", spec.augment.to_dict(),
                        f"needs image inputs (C, H, W); this dataset has inputs of shape {tuple(x_shape[1:])}")
    check_fits(spec.augment, x_shape[2], x_shape[3], field="student.augment")
    if top_k is not None and not 1 <= top_k <= classes:
        raise SpecError("cache.top_k", top_k, f"must be in [1, {classes}] (the dataset's class count), or omitted")
    need = view_cache_bytes(x_shape[0], classes, spec.views, top_k)
    if max_bytes is not None and need > max_bytes:
        raise SpecError("cache.max_bytes", max_bytes, f"is below the {need:,} bytes the per-view teacher logits need "
                        f"({spec.views} views x {x_shape[0]:,} images x {classes} classes"
                        f"{f', top {top_k}' if top_k else ' x 4 bytes'}); raise it, lower student.views or set "
                        "cache.top_k")


def sparsify(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(M, K) logits as their top-k values (M, k), classes (M, k) int32, and the log-sum-exp (M,) and the mean
    (M,) of the other K - k logits (-inf and 0 when k = K)."""
    values, classes = logits.topk(k, dim=1)
    n = logits.shape[1] - k
    if n == 0:
        return values, classes.to(torch.int32), torch.full((len(logits),), -math.inf), torch.zeros(len(logits))
    lse = torch.logsumexp(logits.scatter(1, classes, -math.inf), dim=1)
    mean = (logits.sum(1) - values.sum(1)) / n
    return values, classes.to(torch.int32), lse, mean


def densify(values: torch.Tensor, classes: torch.Tensor, rest_lse: torch.Tensor, rest_mean: torch.Tensor,
            num_classes: int, temperature: float = 1.0) -> torch.Tensor:
    """Dense (M, K) logits from :func:`sparsify`'s rows, for use at ``temperature`` T.

    Each of the n = K - k other classes gets the logit ``mean + c / T`` with ``c = lse - log n - mean`` (>= 0).
    That is the second-order cumulant expansion log sum_j exp(t_j / T) ~ log n + mean / T + c / T^2 of the
    remainder, fitted to be exact at T = 1: the remainder's total probability is exact at T = 1 and tends to the
    right value as T grows. How the remainder spreads over its classes is lost (they are made equal).
    """
    k = values.shape[1]
    if k == num_classes:
        return torch.empty_like(values).scatter_(1, classes.long(), values)
    spread = rest_lse - math.log(num_classes - k) - rest_mean
    fill = (rest_mean + spread / temperature).unsqueeze(1).expand(-1, num_classes)
    return fill.scatter(1, classes.long(), values)


@torch.no_grad()
def compute_view_logits(model: nn.Module, x: Images, spec: ViewSpec, *,
                        batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """The teacher's float32 logits of every view, row ``i * V + v`` for view ``v`` of image ``i`` (CPU).

    ``model`` runs in eval mode on the device it is on; pre-loaded images are rendered there, images on disk in
    loader workers from the same parameters.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = torch.arange(len(x) * spec.views)
    out = []
    if isinstance(x, DiskImages):
        for _, batch in x.batches(rows // spec.views, batch_size, views=rows % spec.views, render=spec.apply):
            out.append(model(batch.to(device).contiguous(memory_format=torch.channels_last)).float().cpu())
    else:
        x = x.to(device)
        for start in range(0, len(rows), batch_size):
            r = rows[start : start + batch_size]
            out.append(model(render(x, spec, r // spec.views, r % spec.views)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


@dataclass(frozen=True)
class ViewLogits:
    """The teacher's logits for the V views of every training image, dense or top-k, as the student reads them.

    ``dense`` is (N x V, K); or ``values`` / ``classes`` (N x V, k), ``rest`` and ``rest_mean`` (N x V,) when
    sparse (:func:`sparsify`). Row
    ``i * V + v`` belongs to view ``v`` of image ``i``. ``key`` is the cache entry they came from.
    """

    spec: ViewSpec
    num_classes: int
    dense: torch.Tensor | None = None
    values: torch.Tensor | None = None
    classes: torch.Tensor | None = None
    rest: torch.Tensor | None = None
    rest_mean: torch.Tensor | None = None
    key: str | None = None

    @property
    def top_k(self) -> int | None:
        return None if self.values is None else self.values.shape[1]

    def teacher_logits(self, index: torch.Tensor, view: torch.Tensor, batch: torch.Tensor, *,
                       temperature: float = 1.0) -> torch.Tensor:
        """(B, K) logits of views ``view`` of images ``index`` (top-k rows made dense for ``temperature``);
        ``batch`` (their pixels) is not needed here."""
        rows = index * self.spec.views + view
        if self.dense is not None:
            return self.dense[rows]
        assert self.values is not None and self.classes is not None
        assert self.rest is not None and self.rest_mean is not None
        return densify(self.values[rows], self.classes[rows], self.rest[rows], self.rest_mean[rows],
                       self.num_classes, temperature)

    def _tensors(self) -> dict[str, torch.Tensor | None]:
        return {"dense": self.dense, "values": self.values, "classes": self.classes, "rest": self.rest,
                "rest_mean": self.rest_mean}

    def to(self, device: torch.device) -> ViewLogits:
        moved = {name: None if t is None else t.to(device) for name, t in self._tensors().items()}
        return ViewLogits(self.spec, self.num_classes, key=self.key, **moved)

    def pack(self) -> dict[str, Any]:
        """Numpy arrays and plain values (Ray stores them once, zero-copy); :func:`unpack_views` reverses it."""
        tensors = {name: None if t is None else t.numpy() for name, t in self._tensors().items()}
        return {"augment": self.spec.augment.to_dict(), "views": self.spec.views, "seed": self.spec.seed,
                "num_classes": self.num_classes, "key": self.key,
                **tensors}


def unpack_views(packed: dict[str, Any] | None) -> ViewLogits | None:
    """A :class:`ViewLogits` from :meth:`ViewLogits.pack` (the arrays stay shared, read-only)."""
    import warnings

    if packed is None:
        return None
    spec = ViewSpec(Augment(**packed["augment"]), packed["views"], packed["seed"])
    with warnings.catch_warnings():  # read-only arrays from Ray's object store; the student only indexes them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensors = {name: None if packed[name] is None else torch.from_numpy(packed[name])
                   for name in ("dense", "values", "classes", "rest", "rest_mean")}
    return ViewLogits(spec, packed["num_classes"], key=packed["key"], **tensors)


class InlineTeacher:
    """The consistent-teaching reference: the teacher run on every rendered batch (no cache, a forward per step).

    The student loop takes it in place of :class:`ViewLogits`; the logits of a view are then computed, not read.
    """

    def __init__(self, model: nn.Module, spec: ViewSpec) -> None:
        self.model = model.eval()
        self.spec = spec

    @torch.no_grad()
    def teacher_logits(self, index: torch.Tensor, view: torch.Tensor, batch: torch.Tensor, *,
                       temperature: float = 1.0) -> torch.Tensor:
        return self.model(batch).float()

    def to(self, device: torch.device) -> InlineTeacher:
        return InlineTeacher(self.model.to(device), self.spec)


def student_views(student: dict[str, Any], data_seed: int) -> ViewSpec | None:
    """The views of a spec's ``student`` section (``StudentSection.model_dump()``), None without augmentation."""
    augment = Augment(**(student.get("augment") or {}))
    if not augment.active:
        return None
    return ViewSpec(augment, int(student.get("views", DEFAULT_VIEWS)), data_seed)
