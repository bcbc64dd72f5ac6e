"""Vision models by name from torchvision and timm: ``arch: torchvision:<name>`` and ``arch: timm:<name>``.

The name is checked against the installed library before anything runs (:func:`check_zoo_arch`: torchvision's
classification models, ``torchvision.models.list_models(torchvision.models)``; timm's ``timm.is_model``), so a
typo is one line naming the field instead of a failure inside a study. timm is an optional extra
(:data:`VISION_EXTRA`); ``timm:`` without it is refused the same way.

Every model is built for the data: its class count is the dataset's, and its input channels are the data's (a
1-channel MNIST image gets a first convolution with one input channel; timm's ``in_chans``, and for torchvision
the first ``Conv2d`` rebuilt). Two kwargs of kdtune's own sit beside the library's (``student.kwargs``,
``teacher.kwargs``, a condition's size merged over them):

* ``small_input: true``: the CIFAR stem for ImageNet-style ResNets: a 3x3 stride-1 first convolution and no
  max-pool, so a 32x32 image reaches the first stage at 32x32 instead of 8x8 (He et al. 2016, section 4.2, and
  every CIFAR KD benchmark). Only models with a ResNet stem (``conv1`` and ``maxpool``) have it; others refuse.
* ``pretrained: true`` (the library's default weights) or a weights name (torchvision's ``IMAGENET1K_V1``, a timm
  tag such as ``a1_in1k``): weights loaded from this machine's caches only, never downloaded during a study
  (torch hub's ``checkpoints/`` for torchvision, the Hugging Face cache for timm); a missing file is one line
  saying how to fetch it. The head is rebuilt for the class count and a changed stem is new, so both start from
  random weights; a first convolution adapted to other channels keeps the pretrained filters summed (1 channel)
  or repeated and rescaled, as timm adapts them.

Every other kwarg goes to the library's builder (``torchvision.models.get_model(name, **kwargs)``,
``timm.create_model(name, **kwargs)``); one it does not take is a one-line error naming the kwargs.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kdtune.errors import SpecError


LIBRARIES = ("torchvision", "timm")
VISION_EXTRA = "pip install 'kdtune[vision]' (or pip install timm)"
#: Input-channel kwargs kdtune sets itself from the data: refused from the spec (``num_classes`` is the factory's
#: own argument, so the spec cannot pass it twice either).
DATA_KWARGS = ("in_chans", "in_channels")


def is_zoo_arch(arch: str) -> bool:
    """Whether ``arch`` names a library model (``torchvision:...``, ``timm:...``) rather than an import path."""
    return arch.partition(":")[0] in LIBRARIES


def check_zoo_arch(arch: str, *, field: str) -> None:
    """Refuse a name the installed library does not have, or ``timm:`` without timm, in one line."""
    library, _, name = arch.partition(":")
    if library == "timm":
        timm = _timm(field, arch)
        if name and timm.is_model(name):
            return
        names = timm.list_models()
    else:
        names = _torchvision_names()
        if name in names:
            return
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5) or sorted(names)[:3]
    raise SpecError(field, arch, f"is not a {library} classification model (of {len(names)} installed; closest: "
                    f"{', '.join(f'{library}:{n}' for n in close)})")


def zoo_factory(arch: str, *, field: str) -> Callable[..., nn.Module]:
    """A factory ``(input_shape, num_classes, **kwargs) -> nn.Module`` for ``arch`` (checked first)."""
    check_zoo_arch(arch, field=field)
    library, _, name = arch.partition(":")

    def factory(input_shape: Sequence[int], num_classes: int, *, small_input: bool = False,
                pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
        if len(input_shape) != 3:
            raise SpecError(field, arch, f"needs image inputs (C, H, W), not shape {tuple(input_shape)}")
        for key in DATA_KWARGS:
            if key in kwargs:
                raise SpecError(f"{field} kwargs", {key: kwargs[key]}, "is set from the data's image channels; remove "
                                "it")
        if not isinstance(small_input, bool) or not isinstance(pretrained, (bool, str)):
            raise SpecError(f"{field} kwargs", {"small_input": small_input, "pretrained": pretrained},
                            "small_input must be true or false; pretrained true, false or a weights name")
        channels = int(input_shape[0])
        if library == "timm":
            model = _timm_model(name, num_classes, channels, pretrained, kwargs, field=field, arch=arch)
        else:
            model = _torchvision_model(name, num_classes, channels, pretrained, kwargs, field=field, arch=arch)
        if small_input:
            _small_stem(model, channels, field=field, arch=arch)
        return model

    factory.__name__ = factory.__qualname__ = arch
    return factory


def _torchvision_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _timm(field: str, arch: str) -> Any:
    try:
        import timm
    except ImportError:
        raise SpecError(field, arch, f"timm models need the optional extra: {VISION_EXTRA}") from None
    return timm


def _torchvision_model(name: str, num_classes: int, channels: int, pretrained: bool | str, kwargs: dict[str, Any],
                       *, field: str, arch: str) -> nn.Module:
    import torchvision

    if not pretrained:
        model = torchvision.models.get_model(name, num_classes=num_classes, **kwargs)
        if channels != 3:
            _adapt_first_conv(model, channels, field=field, arch=arch)
        return model
    weights = _torchvision_weights(name, pretrained, field=field, arch=arch)
    model = torchvision.models.get_model(name, **kwargs)  # the weights' own class count, for their head
    model.load_state_dict(weights.get_state_dict(progress=False))
    _replace_head(model, num_classes, field=field, arch=arch)
    if channels != 3:
        _adapt_first_conv(model, channels, field=field, arch=arch)
    return model


def _torchvision_weights(name: str, pretrained: bool | str, *, field: str, arch: str) -> Any:
    """The weights enum entry ``pretrained`` names (``True``: the default), refused unless its file is in torch
    hub's checkpoint folder already: a study never downloads."""
    import torch.hub
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    choice = "DEFAULT" if pretrained is True else str(pretrained)
    try:
        weights = enum[choice]
    except KeyError:
        raise SpecError(f"{field} kwargs.pretrained", pretrained, f"is not a weights name of {arch}; allowed: true, "
                        f"{', '.join(w.name for w in enum)}") from None
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if not os.path.isfile(path):
        raise SpecError(f"{field} kwargs.pretrained", pretrained, f"weights {weights} are not on this machine "
                        f"({path}); fetch them once with: python -c \"import torchvision; "
                        f"torchvision.models.get_weight('{weights}').get_state_dict()\"")
    return weights


def _timm_model(name: str, num_classes: int, channels: int, pretrained: bool | str, kwargs: dict[str, Any],
                *, field: str, arch: str) -> nn.Module:
    timm = _timm(field, arch)
    if not pretrained:
        return timm.create_model(name, num_classes=num_classes, in_chans=channels, **kwargs)
    tagged = name if pretrained is True else f"{name.split('.')[0]}.{pretrained}"
    local = _timm_cached_weights(timm, tagged, field=field, arch=arch)
    return timm.create_model(tagged, pretrained=True, pretrained_cfg_overlay={"file": local}, num_classes=num_classes,
                             in_chans=channels, **kwargs)


def _timm_cached_weights(timm: Any, name: str, *, field: str, arch: str) -> str:
    """The local file of timm's pretrained weights for ``name``, from the Hugging Face cache; refused if absent."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        cfg = None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        raise SpecError(f"{field} kwargs.pretrained", name, f"timm has no pretrained weights of that name for {arch}")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return found
    raise SpecError(f"{field} kwargs.pretrained", name, f"weights {hub_id} are not in this machine's Hugging Face cache; "
                    f"fetch them once with: python -c \"import timm; timm.create_model('{name}', pretrained=True)\"")


def _small_stem(model: nn.Module, channels: int, *, field: str, arch: str) -> None:
    """Replace a ResNet stem (7x7 stride-2 ``conv1``, ``maxpool``) by a 3x3 stride-1 convolution and no pooling."""
    conv, pool = getattr(model, "conv1", None), getattr(model, "maxpool", None)
    if not isinstance(conv, nn.Conv2d) or pool is None:
        raise SpecError(f"{field} kwargs.small_input", True, f"needs a model with a ResNet stem (a conv1 convolution "
                        f"and a maxpool); {arch} has none")
    new = nn.Conv2d(channels, conv.out_channels, kernel_size=3, stride=1, padding=1, bias=conv.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    setattr(model, "conv1", new)
    setattr(model, "maxpool", nn.Identity())


def _adapt_first_conv(model: nn.Module, channels: int, *, field: str, arch: str) -> None:
    """Rebuild the first ``Conv2d`` (3 input channels) for ``channels``; its weights summed over RGB for one channel,
    else repeated and scaled by 3 / channels, so a pretrained filter's response keeps its scale."""
    convs = _named(model, nn.Conv2d)
    name, conv = convs[0] if convs else ("", None)
    if conv is None or conv.in_channels != 3:
        raise SpecError(field, arch, f"cannot take {channels}-channel images: its first layer is not a 3-channel "
                        "convolution")
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                    bias=conv.bias is not None)
    with torch.no_grad():
        w = conv.weight
        new.weight.copy_(w.sum(1, keepdim=True) if channels == 1 else
                         w.repeat(1, math.ceil(channels / 3), 1, 1)[:, :channels] * (3 / channels))
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    _set(model, name, new)


def _replace_head(model: nn.Module, num_classes: int, *, field: str, arch: str) -> None:
    """The last ``Linear`` rebuilt with ``num_classes`` outputs (random weights): pretrained models carry ImageNet's."""
    linears = _named(model, nn.Linear)
    if not linears:
        raise SpecError(f"{field} kwargs.pretrained", True, f"needs a model whose classifier is a Linear layer; {arch} "
                        "has none to rebuild for the class count")
    name, head = linears[-1]
    _set(model, name, nn.Linear(head.in_features, num_classes, bias=head.bias is not None))


def _named(model: nn.Module, kind: type[nn.Module]) -> list[tuple[str, Any]]:
    """The modules of ``kind`` in registration order (depth first), by their dotted names."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, kind)]


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)
