"""Architectures by name: the reference teacher and student CNNs, MLPs, and a linear model.

The reference CNN is the Keras KD tutorial's: Conv(c1, 3x3, stride 2, same) -> LeakyReLU(0.2) ->
MaxPool(2x2, stride 1, same) -> Conv(c2, 3x3, stride 2, same) -> Flatten -> Dense(classes), with
(c1, c2) = (256, 512) for the teacher and (16, 32) for the student. "Same" padding of the stride-2 convs is
PyTorch's symmetric ``padding=1`` (Keras pads right/bottom only; the output size is the same). The stride-1
max-pool pads right/bottom with -inf exactly as Keras does. Models run in ``channels_last``, which is
1.7-2x faster for these shapes on a CPU (``docs/architecture.md``, Performance).

Self-distillation is simply the same architecture name for teacher and student.

Beside these: the CIFAR ResNets of the KD benchmarks (``resnet8x4``, ``resnet32x4``, ``cifar_resnet``:
:mod:`kdtune.tasks.image.cifar_resnet`), torchvision's and timm's models by name (``torchvision:resnet18``,
``timm:resnet18``: :mod:`kdtune.tasks.image.model_zoo`), and any factory by import path
(``package.module:factory``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdtune.errors import SpecError
from kdtune.errors import one_line
from kdtune.tasks.image.cifar_resnet import CifarResNet
from kdtune.tasks.image.model_zoo import is_zoo_arch
from kdtune.tasks.image.model_zoo import zoo_factory


class SamePadMaxPool(nn.Module):
    """2x2 max-pool with stride 1 and Keras "same" padding (one row/column of -inf at the right/bottom)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # PyTorch pads both sides; dropping the first row/column leaves only the right/bottom padding.
        return F.max_pool2d(x, kernel_size=2, stride=1, padding=1)[:, :, 1:, 1:]


class ReferenceCNN(nn.Module):
    """The tutorial's two-conv network; works on any square input (28x28 MNIST, 8x8 digits)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, filters: Sequence[int]) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise SpecError("arch", "reference CNN", f"needs image inputs (C, H, W), not shape {tuple(input_shape)}")
        c, h, w = input_shape
        c1, c2 = filters
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            SamePadMaxPool(),
            nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1),
            nn.Flatten(),
        )
        out_h, out_w = math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2)
        self.classifier = nn.Linear(c2 * out_h * out_w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Flatten -> [Dropout(input_dropout)] -> (Linear -> ReLU -> Dropout(dropout)) per hidden width -> Linear.

    Hinton et al.'s MNIST nets are two specs of it; their teacher used dropout on the inputs (0.2 in Srivastava
    et al. 2014) and on the hidden units (0.5).
    """

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, *, widths: Sequence[int] = (256,), dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, rate in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0 <= rate < 1:
                raise SpecError(f"kwargs.{name}", rate, "must be in [0, 1)")
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        width_in = math.prod(input_shape)
        for width in widths:
            layers += [nn.Linear(width_in, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width_in = width
        layers.append(nn.Linear(width_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """(Conv 3x3 -> ReLU -> MaxPool 2) per entry of ``filters`` -> Dropout -> Linear(hidden) -> ReLU -> Dropout -> Linear.

    A LeNet-style network (``cnn_teacher``: 4.2 M multiply-adds per 28x28 image, against the reference teacher's
    58 M), for a teacher that is clearly better than the reference student: the reference teacher's two stride-2
    convolutions see each position once and it stays below 98% on 9,000 noisy MNIST images
    (``docs/reproduction.md``).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, filters: Sequence[int] = (32, 64),
                 hidden: int = 128, dropout: float = 0.25) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise SpecError("arch", "small CNN", f"needs image inputs (C, H, W), not shape {tuple(input_shape)}")
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for width in filters:
            layers += [nn.Conv2d(c, width, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Linear(nn.Module):
    """Flatten -> Linear: multinomial logistic regression, or least squares with one output."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ModelFactory = Callable[..., nn.Module]

ARCHITECTURES: dict[str, tuple[ModelFactory, dict[str, Any]]] = {
    "reference_teacher": (ReferenceCNN, {"filters": (256, 512)}),
    "reference_student": (ReferenceCNN, {"filters": (16, 32)}),
    "hinton_teacher": (MLP, {"widths": (1200, 1200), "dropout": 0.2}),
    "hinton_student": (MLP, {"widths": (800, 800)}),
    "cnn_teacher": (SmallCNN, {"filters": (32, 64), "hidden": 128}),
    "resnet8x4": (CifarResNet, {"depth": 8, "widths": (32, 64, 128, 256)}),
    "resnet32x4": (CifarResNet, {"depth": 32, "widths": (32, 64, 128, 256)}),
    "cifar_resnet": (CifarResNet, {}),
    "mlp": (MLP, {}),
    "linear": (Linear, {}),
}


def narrower(arch: str, kwargs: dict[str, Any], factor: float) -> dict[str, Any]:
    """The kwargs that build ``arch`` at ``factor`` of its width: each width kwarg
    (:data:`kdtune.tasks.image.widths.WIDTH_KWARGS`), given or default, scaled and rounded (at least 1)."""
    import inspect

    from kdtune.tasks.image.widths import WIDTH_KWARGS
    from kdtune.tasks.image.widths import scaled

    factory, defaults = ARCHITECTURES[arch]
    signature = inspect.signature(factory).parameters
    out = dict(kwargs)
    for name in WIDTH_KWARGS[arch]:
        out[name] = scaled(kwargs.get(name, defaults.get(name, signature[name].default)), factor)
    return out


def check_arch(arch: str, *, field: str = "arch") -> None:
    """Refuse an unknown architecture before any work is done: a registered name, a library model
    (``torchvision:<name>``, ``timm:<name>``: checked against the installed library), or ``package.module:factory``."""
    resolve_factory(arch, field=field)


def resolve_factory(arch: str, *, field: str = "arch") -> tuple[ModelFactory, dict[str, Any]]:
    """The factory and default kwargs for a registered name, or the callable an import path points to.

    An import path's factory is called as ``factory(input_shape, num_classes, **kwargs)`` and must return a
    ``torch.nn.Module`` producing logits.
    """
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if is_zoo_arch(arch):
        return zoo_factory(arch, field=field), {}
    if ":" not in arch:
        raise SpecError(field, arch, f"must be one of {', '.join(ARCHITECTURES)}, torchvision:<name>, timm:<name> or an "
                        "import path package.module:factory")
    module_name, _, attr = arch.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SpecError(field, arch, f"does not import: {exc}") from None
    except (Exception, SystemExit) as exc:  # the user's module ran and raised (or exited) at import
        raise SpecError(field, arch, f"does not import: {module_name} raised {type(exc).__name__} at import: "
                        f"{one_line(exc)}") from None
    if not callable(factory):
        raise SpecError(field, arch, "is not callable")
    return factory, {}


def build_model(
    arch: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    kwargs: dict[str, Any] | None = None,
    field: str = "arch",
    seed: int | None = None,
) -> nn.Module:
    """Build architecture ``arch`` for inputs of ``input_shape`` (without the batch axis) and ``num_classes`` outputs.

    ``kwargs`` override the architecture's defaults (e.g. ``{"widths": [512, 512]}`` for ``mlp``).
    The model is returned in ``channels_last`` when it takes images. ``field`` names the option in errors
    (``teacher.arch``, ``--student``). With ``seed`` the initial weights depend on it alone, not on the
    global RNG state (the global state is left untouched).
    """
    factory, defaults = resolve_factory(arch, field=field)
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = factory(input_shape, num_classes, **{**defaults, **(kwargs or {})})
    except TypeError as exc:
        raise SpecError(f"{field} kwargs", kwargs, f"not accepted by {factory.__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise SpecError(field, arch, f"returned {type(model).__name__}, not a torch.nn.Module")
    if len(input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
