"""The training loop: a digits teacher, a student distilled from its logits, determinism, metrics."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kdtune.cache.teacher import TeacherSpec
from kdtune.cache.teacher import train_teacher
from kdtune.core.metrics import class_metrics
from kdtune.core.train import TrainConfig
from kdtune.core.train import Trainer
from kdtune.core.train import predict
from kdtune.core.train import train_student
from kdtune.errors import SpecError
from kdtune.tasks.datasets import load_dataset
from kdtune.tasks.image.models import build_model


@pytest.fixture(scope="module")
def clean_digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def digits_teacher(clean_digits):  # type: ignore[no-untyped-def]
    return train_teacher(TeacherSpec(epochs=10, seed=0), clean_digits, threads=2)


def test_digits_teacher_reaches_95_percent(digits_teacher) -> None:  # type: ignore[no-untyped-def]
    assert digits_teacher.selected["test_accuracy"] >= 0.95


def test_student_distils_from_cached_logits(clean_digits, digits_teacher) -> None:  # type: ignore[no-untyped-def]
    logits = digits_teacher.logits(clean_digits)
    seen = []
    model = build_model("reference_student", input_shape=clean_digits.input_shape, num_classes=10, seed=1)
    history = train_student(model, clean_digits, TrainConfig(epochs=15, alpha=0.0, temperature=4.0, seed=1),
                            teacher=logits, on_epoch=seen.append)
    assert [m.epoch for m in seen] == list(range(1, 16))
    # Trained on the teacher alone (alpha = 0), the student learns to agree with it.
    assert history.best.teacher_agreement > 0.85
    assert history.best.test_accuracy > 0.85


def test_same_seed_same_run_different_seed_different_run(noisy_digits) -> None:  # type: ignore[no-untyped-def]
    def run(seed: int) -> list[float]:
        model = build_model("reference_student", input_shape=noisy_digits.input_shape, num_classes=10, seed=seed)
        return [m.train_loss for m in train_student(model, noisy_digits, TrainConfig(epochs=2, seed=seed)).epochs]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_resuming_from_state_dict_continues_identically(noisy_digits) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(epochs=4, seed=3)

    def new_trainer() -> Trainer:
        model = build_model("reference_student", input_shape=noisy_digits.input_shape, num_classes=10, seed=3)
        return Trainer(model, noisy_digits, config)

    straight = new_trainer()
    losses = [straight.step().train_loss for _ in range(4)]
    first = new_trainer()
    first.step(), first.step()
    state = first.state_dict()
    resumed = new_trainer()
    resumed.load_state_dict(state)
    assert [resumed.step().train_loss for _ in range(2)] == losses[2:]


def test_correction_and_memorisation_rates_are_measured_on_flipped_samples(noisy_digits) -> None:  # type: ignore[no-untyped-def]
    """The rates equal a hand count of the trained model's predictions on exactly the flipped training samples:
    the share predicted as the clean label and the share predicted as the (wrong) noisy one."""
    model = build_model("reference_student", input_shape=noisy_digits.input_shape, num_classes=10, seed=0)
    trainer = Trainer(model, noisy_digits, TrainConfig(epochs=3))
    m = [trainer.step() for _ in range(3)][-1]
    train = noisy_digits.train
    flipped = train.flipped
    assert 0 < int(flipped.sum()) < len(flipped) and bool((train.y[flipped] != train.clean[flipped]).all())
    predicted = predict(trainer.model, trainer.train_split.x[flipped]).argmax(1).cpu()
    # The trainer reports float32 shares: 1e-6 still tells every count of flipped samples apart.
    assert m.correction_rate == pytest.approx(float((predicted == train.clean[flipped]).double().mean()), abs=1e-6)
    assert m.memorisation_rate == pytest.approx(float((predicted == train.y[flipped]).double().mean()), abs=1e-6)
    kept = predict(trainer.model, trainer.train_split.x[~flipped]).argmax(1).cpu()
    assert float((kept == train.y[~flipped]).double().mean()) > m.memorisation_rate  # not the whole training set
    assert len(m.test_per_class_accuracy) == 10
    assert m.teacher_agreement is None  # no teacher


def test_class_metrics_against_a_hand_computation() -> None:
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    per_class, macro_f1 = class_metrics(pred, target, 3)
    assert per_class == pytest.approx([0.5, 1.0, 0.5])
    # precision: 0.5, 2/3, 1; recall: 0.5, 1, 0.5; F1: 0.5, 0.8, 2/3
    assert macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_distillation_without_teacher_logits_is_refused(noisy_digits) -> None:  # type: ignore[no-untyped-def]
    model = build_model("reference_student", input_shape=noisy_digits.input_shape, num_classes=10)
    with pytest.raises(SpecError, match="alpha = 0.5: needs teacher logits"):
        Trainer(model, noisy_digits, TrainConfig(alpha=0.5))


@pytest.mark.parametrize(("field", "value", "match"), [
    ("epochs", 0, "epochs = 0: must be a positive integer"),
    ("temperature", -1.0, "temperature = -1.0: must be at least 0.01"),
    ("alpha", 1.2, r"alpha = 1.2: must be in \[0, 1\]"),
    ("batch_size", 0, "batch_size = 0"),
    ("lr", 0.0, "lr = 0.0: must be > 0"),
])
def test_bad_config_values(field: str, value: float, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        dataclasses.replace(TrainConfig(), **{field: value})
