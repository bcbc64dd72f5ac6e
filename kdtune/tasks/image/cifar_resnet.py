"""The CIFAR ResNets of the knowledge-distillation literature: ``resnet8x4``, ``resnet32x4`` and ``cifar_resnet``.

He et al. (2016, section 4.2) built their CIFAR-10 networks from a 3x3 convolution and three stages of basic
blocks (two 3x3 convolutions and a shortcut) at widths 16, 32, 64, with 6n + 2 layers in all, downsampling by a
stride-2 convolution at the start of the second and third stages, then global average pooling and one linear
layer. The KD benchmarks on CIFAR-100 (CRD, Tian et al. ICLR 2020; DKD, Zhao et al. CVPR 2022) use the same
design four times wider: ``resnet32x4`` (the teacher, 7.4 M parameters) and ``resnet8x4`` (the student, 1.2 M),
with a stem of 32 channels and stages of 64, 128, 256. Their published numbers are for these two networks, so
the shipped CIFAR-100 spec trains them (``search_spaces/cifar100_resnet.yaml``).

Shortcuts that change the shape are a 1x1 strided convolution with batch norm (He et al.'s option B, as those
benchmarks use). Pooling is adaptive, so any input size works (MNIST's 28x28 pools a 7x7 map).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdtune.errors import SpecError


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU."""

    def __init__(self, channels_in: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """A 6n + 2-layer CIFAR ResNet: ``depth`` layers, ``widths`` = (stem, stage 1, stage 2, stage 3) channels."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, depth: int = 32,
                 widths: Sequence[int] = (16, 16, 32, 64)) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise SpecError("arch", "cifar_resnet", f"needs image inputs (C, H, W), not shape {tuple(input_shape)}")
        if depth < 8 or (depth - 2) % 6:
            raise SpecError("kwargs.depth", depth, "must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, 110)")
        if len(widths) != 4 or any(int(w) < 1 for w in widths):
            raise SpecError("kwargs.widths", list(widths), "must be four positive channel counts: stem and three stages")
        blocks = (depth - 2) // 6
        stem, *stages = (int(w) for w in widths)
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                   nn.ReLU()]
        channels = stem
        for i, width in enumerate(stages):
            for j in range(blocks):
                layers.append(BasicBlock(channels, width, stride=2 if i > 0 and j == 0 else 1))
                channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():  # He et al.'s initialisation, as torchvision's ResNets
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
