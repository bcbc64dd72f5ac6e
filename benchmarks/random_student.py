"""The benchmarks' common student: kdtune's ``Trainer`` for the reference student on random MNIST-shaped data,
with random "teacher" logits as the cache would hand them (KD loss, alpha 0.1, T 10, Adam, batch 64)."""

from __future__ import annotations

from typing import Any


def random_trainer(samples: int, device: str) -> Any:
    """A ``Trainer`` on ``samples`` random images; its ``train_split`` and ``teacher.train`` hold the data and
    logits on ``device`` (images in channels_last), for a bare loop to use the same tensors."""
    import torch

    from kdtune.core.data import DataBundle
    from kdtune.core.data import Split
    from kdtune.core.train import TeacherLogits
    from kdtune.core.train import TrainConfig
    from kdtune.core.train import Trainer
    from kdtune.tasks.image.models import build_model

    g = torch.Generator().manual_seed(0)
    x = torch.rand(samples, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (samples,), generator=g)
    logits = torch.randn(samples, 10, generator=g)
    split = Split(x=x, y=y, clean=y, flipped=torch.zeros(samples, dtype=torch.bool))
    small = Split(x=x[:64], y=y[:64], clean=y[:64], flipped=torch.zeros(64, dtype=torch.bool))
    data = DataBundle(name="random", task="classification", num_classes=10, input_shape=(1, 28, 28), train=split,
                      val=small, test=small, description={})
    config = TrainConfig(epochs=1, alpha=0.1, temperature=10.0, batch_size=64)
    return Trainer(build_model("reference_student", input_shape=(1, 28, 28), num_classes=10, seed=0), data, config,
                   teacher=TeacherLogits(logits, logits[:64], logits[:64]), device=device)
