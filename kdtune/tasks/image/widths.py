"""Which image models have a width, and which of their kwargs hold it: what ``fidelity.width_factor`` scales.

Kept apart from :mod:`kdtune.tasks.image.models` (which imports torch) so that a spec is checked without torch. A
model by import path, torchvision's and timm's have no width kdtune knows of: a narrower student for them is
``fidelity.student``, another architecture.
"""

from __future__ import annotations

from kdtune.errors import SpecError


#: Registered architecture -> the kwargs that are widths (channels or units; each scaled, rounded, at least 1).
WIDTH_KWARGS: dict[str, tuple[str, ...]] = {
    "reference_teacher": ("filters",),
    "reference_student": ("filters",),
    "hinton_teacher": ("widths",),
    "hinton_student": ("widths",),
    "cnn_teacher": ("filters", "hidden"),
    "resnet8x4": ("widths",),
    "resnet32x4": ("widths",),
    "cifar_resnet": ("widths",),
    "mlp": ("widths",),
}


def check_width(arch: str, factor: float, *, field: str) -> None:
    """Refuse a width factor for an architecture without a width."""
    if arch not in WIDTH_KWARGS:
        raise SpecError(field, factor, f"the student {arch} has no width to scale (widths are known for "
                        f"{', '.join(WIDTH_KWARGS)}); give the narrower student as fidelity.student instead")


def scaled(value: int | list[int] | tuple[int, ...], factor: float) -> int | list[int]:
    """A width, or each of a list of widths, times ``factor``, rounded, at least 1."""
    if isinstance(value, (list, tuple)):
        return [max(1, round(v * factor)) for v in value]
    return max(1, round(value * factor))
