"""Teacher and student recipes (optimizer, weight decay, schedule, augmentation, dropout, selection on validation
loss) and ensemble teachers: identity in the cache, determinism, and what they are for (a better teacher)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdtune.cache import LogitCache
from kdtune.cache import teacher_key
from kdtune.cache.teacher import TeacherSpec
from kdtune.cache.teacher import train_teacher
from kdtune.core.train import Augment
from kdtune.core.train import TrainConfig
from kdtune.core.train import Trainer
from kdtune.core.train import augment_batch
from kdtune.core.train import lr_factor
from kdtune.core.train import student_recipe
from kdtune.core.train import train_student
from kdtune.errors import SpecError
from kdtune.spec.schema import parse_spec
from kdtune.spec.sections import StudentSection
from kdtune.tasks.datasets import load_dataset
from kdtune.tasks.image.models import build_model


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits", noise_level=0.05, seed=0)


# -- identity ------------------------------------------------------------------------------------------

RECIPE_VARIANTS = {
    "optimizer": {"optimizer": "sgd"},
    "momentum": {"optimizer": "sgd", "momentum": 0.5},
    "weight_decay": {"weight_decay": 1e-4},
    "schedule cosine": {"schedule": "cosine"},
    "schedule step": {"schedule": "step"},
    "warmup_epochs": {"warmup_epochs": 1},
    "augment shift": {"augment": {"shift": 2}},
    "augment rotate": {"augment": {"rotate": 10.0}},
    "ensemble": {"ensemble": 2},
    "select on validation loss": {"select": "best_val_loss"},
    "input dropout": {"kwargs": {"input_dropout": 0.2}},
    "hidden dropout": {"kwargs": {"dropout": 0.5}},
}


def test_each_recipe_option_changes_the_teacher_key() -> None:
    base = TeacherSpec(arch="mlp", epochs=4)
    keys = {"base": teacher_key(base, "data")}
    for name, change in RECIPE_VARIANTS.items():
        keys[name] = teacher_key(TeacherSpec(**{**base.to_dict(), **change}), "data")
    assert len(set(keys.values())) == len(keys), keys
    # sgd with its default momentum differs from sgd with another: momentum is part of an sgd teacher's identity
    assert keys["optimizer"] != keys["momentum"]


def test_default_recipe_keeps_the_keys_of_teachers_cached_before_recipes() -> None:
    """A spec at the default recipe serialises to the fields teachers always had, so old cache entries still hit."""
    assert set(TeacherSpec().to_dict()) == {"arch", "epochs", "lr", "batch_size", "seed", "select", "patience", "kwargs"}
    # momentum means nothing to Adam: changing it does not create a new teacher
    assert TeacherSpec(momentum=0.5).to_dict() == TeacherSpec().to_dict()


def test_spec_recipe_reaches_the_teacher_spec_of_every_condition() -> None:
    from kdtune.spec.conditions import expand

    spec = parse_spec({"name": "r", "teacher": {"optimizer": "sgd", "momentum": 0.8, "weight_decay": 5e-4,
                                                "schedule": "step", "warmup_epochs": 2, "augment": {"shift": 2},
                                                "ensemble": 3, "select": "best_val_loss"}})
    teacher = expand(spec)[0].teacher_spec(spec)
    assert (teacher.optimizer, teacher.momentum, teacher.weight_decay, teacher.schedule, teacher.warmup_epochs,
            teacher.augment, teacher.ensemble, teacher.select) == \
        ("sgd", 0.8, 5e-4, "step", 2, Augment(shift=2), 3, "best_val_loss")


def test_student_recipe_reaches_the_trainer(digits) -> None:  # type: ignore[no-untyped-def]
    section = StudentSection(optimizer="sgd", momentum=0.8, weight_decay=1e-3, schedule="cosine", warmup_epochs=1)
    config = TrainConfig(epochs=3, **student_recipe(section.model_dump()))
    trainer = Trainer(build_model("mlp", input_shape=digits.input_shape, num_classes=10, seed=0), digits, config)
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    assert trainer.optimizer.defaults["momentum"] == 0.8 and trainer.optimizer.defaults["weight_decay"] == 1e-3
    assert student_recipe({"arch": "x", "epochs": 3}) == {}  # a study folder from before recipes: original recipe


# -- schedule, optimizer -------------------------------------------------------------------------------

def test_learning_rate_schedules() -> None:
    steps = 10  # per epoch
    warm = TrainConfig(epochs=4, warmup_epochs=1, schedule="cosine")
    factors = [lr_factor(warm, i, steps) for i in range(40)]
    assert factors[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear warm-up to the full rate
    assert factors[10] == pytest.approx(1.0) and factors[-1] < 0.01  # cosine from 1 towards 0
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    step = TrainConfig(epochs=8, schedule="step")
    assert [lr_factor(step, e * steps, steps) for e in range(8)] == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    assert {lr_factor(TrainConfig(epochs=3), i, steps) for i in range(30)} == {1.0}


def test_the_trainer_applies_the_schedule(digits) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(epochs=2, lr=0.01, schedule="cosine", optimizer="sgd")
    trainer = Trainer(build_model("linear", input_shape=digits.input_shape, num_classes=10, seed=0), digits, config)
    trainer.step()
    last_step = trainer.steps_per_epoch - 1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * lr_factor(config, last_step,
                                                                                       trainer.steps_per_epoch))
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.005, rel=0.1)  # half-way down the cosine


# -- augmentation --------------------------------------------------------------------------------------

def test_integer_shifts_move_pixels_exactly() -> None:
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 3, 4] = 1.0  # one lit pixel, far from the border
    out = augment_batch(x, Augment(shift=2), torch.Generator().manual_seed(0))
    assert torch.equal(out.sum((1, 2, 3)), torch.ones(64))  # moved, not blurred
    rows, cols = out[:, 0].flatten(1).argmax(1).div(8, rounding_mode="floor"), out[:, 0].flatten(1).argmax(1) % 8
    assert set((rows - 3).tolist()) == {-2, -1, 0, 1, 2} and set((cols - 4).tolist()) == {-2, -1, 0, 1, 2}


def test_augmentation_is_deterministic_per_seed(digits) -> None:  # type: ignore[no-untyped-def]
    x = digits.train.x[:32]
    aug = Augment(shift=1, rotate=15)
    same = [augment_batch(x, aug, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    assert not torch.equal(same[0], augment_batch(x, aug, torch.Generator().manual_seed(4)))
    assert not torch.equal(same[0], x)

    def weights(seed: int, augment: Augment | None) -> torch.Tensor:
        model = build_model("mlp", input_shape=digits.input_shape, num_classes=10, seed=0)
        train_student(model, digits, TrainConfig(epochs=2, seed=seed, augment=augment))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(0, aug), weights(0, aug))
    assert not torch.equal(weights(0, aug), weights(1, aug))
    assert not torch.equal(weights(0, aug), weights(0, None))


def test_augmentation_keeps_the_batch_order_of_its_seed(digits) -> None:  # type: ignore[no-untyped-def]
    """Paired seeds: the augmentation draws from a generator of its own, so the batches are those of the seed."""
    states = []
    for augment in (None, Augment(shift=2)):
        trainer = Trainer(build_model("mlp", input_shape=digits.input_shape, num_classes=10, seed=0), digits,
                          TrainConfig(epochs=2, seed=5, augment=augment))
        trainer.step()
        states.append(trainer.generator.get_state())
    assert torch.equal(states[0], states[1])


def test_resuming_an_augmented_run_continues_identically(digits) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(epochs=3, seed=2, augment=Augment(shift=1, rotate=5), schedule="cosine")

    def trainer() -> Trainer:
        return Trainer(build_model("mlp", input_shape=digits.input_shape, num_classes=10, seed=0), digits, config)

    straight = trainer()
    for _ in range(3):
        last = straight.step()
    first = trainer()
    first.step()
    resumed = trainer()
    resumed.load_state_dict(first.state_dict())
    resumed.step()
    assert resumed.step().val_loss == last.val_loss


def test_augmentation_needs_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tab.npz", x=rng.normal(size=(200, 6)).astype(np.float32), y=rng.integers(0, 3, 200))
    data = load_dataset("files", files=[str(tmp_path / "tab.npz")])
    with pytest.raises(SpecError, match=r"^teacher.augment = .*needs image inputs"):
        train_teacher(TeacherSpec(arch="mlp", epochs=1, augment={"shift": 2}), data)


# -- selection on validation loss ----------------------------------------------------------------------

def test_best_val_loss_keeps_the_epoch_of_lowest_validation_loss() -> None:
    noisy = load_dataset("digits", noise_level=0.3, seed=2)
    t = train_teacher(TeacherSpec(arch="mlp", kwargs={"widths": [256]}, epochs=12, lr=3e-3, batch_size=32,
                                  select="best_val_loss"), noisy)
    losses = [row["val_loss"] for row in t.curve]
    assert t.selected_epoch == losses.index(min(losses)) + 1
    assert t.selected_epoch < 12  # 30% flips: the loss rises once the flips are memorised


# -- ensembles -----------------------------------------------------------------------------------------

def test_an_ensemble_teacher_is_the_mean_of_its_members(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = LogitCache(tmp_path)
    recipe = {"arch": "mlp", "epochs": 3, "kwargs": {"dropout": 0.2}, "augment": {"shift": 1}}
    ensemble = cache.prepare(TeacherSpec(**recipe, seed=4, ensemble=3), digits)
    members = [cache.prepare(TeacherSpec(**recipe, seed=seed), digits) for seed in (4, 5, 6)]
    for split in ("train", "val", "test"):
        mean = torch.stack([getattr(m.logits, split) for m in members]).mean(0)
        torch.testing.assert_close(getattr(ensemble.logits, split), mean, rtol=0, atol=1e-6)
    # one entry: each member's diagnostics and the ensemble's
    assert [m["seed"] for m in ensemble.diagnostics["members"]] == [4, 5, 6]
    for record, member in zip(ensemble.diagnostics["members"], members):
        assert record["test_accuracy"] == pytest.approx(member.diagnostics["test_accuracy"])
        assert record["selected_epoch"] == member.teacher.selected_epoch
    assert ensemble.teacher.selected["test_accuracy"] == pytest.approx(ensemble.diagnostics["test_accuracy"], abs=1e-6)
    again = LogitCache(tmp_path).prepare(TeacherSpec(**recipe, seed=4, ensemble=3), digits)
    assert again.hit and torch.equal(again.logits.test, ensemble.logits.test)
    assert again.diagnostics["members"] == ensemble.diagnostics["members"]


# -- a teacher recipe that is worth distilling from -----------------------------------------------------

def test_a_teacher_recipe_beats_the_student_alone() -> None:
    """On digits with 10% flipped labels the reference student alone reaches ~0.93; a small CNN teacher with
    shifts, weight decay and a cosine schedule, selected on validation loss, is clearly better."""
    data = load_dataset("digits", noise_level=0.1, seed=0)
    teacher = train_teacher(TeacherSpec(arch="cnn_teacher", epochs=20, lr=3e-3, batch_size=32, weight_decay=0.01,
                                        schedule="cosine", warmup_epochs=1, augment={"shift": 1},
                                        select="best_val_loss"), data)
    student = build_model("reference_student", input_shape=data.input_shape, num_classes=10, seed=0)
    alone = train_student(student, data, TrainConfig(epochs=20, lr=3e-3, batch_size=32)).best
    assert teacher.selected["test_accuracy"] > alone.test_accuracy + 0.01


# -- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "match"), [
    ({"dataset": {"name": "linear"}, "teacher": {"augment": {"shift": 2}},
      "search": {"alpha": {"type": "float", "low": 0, "high": 1}}}, r"^teacher.augment = .*image dataset"),
    ({"teacher": {"ensemble": 0}}, r"^teacher.ensemble = 0: must be a positive integer"),
    ({"teacher": {"epochs": 5, "warmup_epochs": 5}}, r"^teacher.warmup_epochs = 5: must be less than teacher.epochs"),
    ({"student": {"epochs": 3, "warmup_epochs": 4}}, r"^student.warmup_epochs = 4: must be less than student.epochs"),
    ({"teacher": {"warmup_epochs": 2}, "conditions": {"teacher_epochs": [2, 8]}},
     r"^conditions.teacher_epochs\[0\] = 2: must be more than teacher.warmup_epochs"),
    ({"teacher": {"augment": {"shift": -1}}}, r"^teacher.augment.shift"),
    ({"teacher": {"optimizer": "rmsprop"}}, r"^teacher.optimizer"),
    ({"student": {"warmup_epochs": 3}, "search": {"alpha": {"type": "float", "low": 0, "high": 1},
                                                  "epochs": {"type": "int", "low": 2, "high": 10}}},
     r"^search.epochs = .*must stay above student.warmup_epochs \(3\)"),
])
def test_bad_recipes_are_refused(raw: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError, match=match):
        parse_spec({"name": "bad", **raw})


def test_bad_recipe_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    for recipe, field in (("{warmup_epochs: 3}", "--teacher-recipe warmup_epochs"),
                          ("{ensemble: 0}", "--teacher-recipe ensemble")):
        proc = subprocess.run([sys.executable, "-m", "kdtune", "distill", "--teacher", "mlp", "--teacher-epochs", "2",
                               "--teacher-recipe", recipe, "--cache-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and field in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
