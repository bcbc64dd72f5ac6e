"""Student views (docs/views.md): reproducible augmented views, the teacher's logits per view in the cache, the
student loop that draws them, top-k rows, and the one-line refusals before anything trains."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kdtune.cache import LogitCache
from kdtune.cache import logits_key
from kdtune.cache.keys import views_key
from kdtune.cache.parquet import decode_views
from kdtune.cache.parquet import encode_views
from kdtune.cache.teacher import TeacherSpec
from kdtune.cli import main
from kdtune.core.distill import kd_loss
from kdtune.core.train import Augment
from kdtune.core.train import TrainConfig
from kdtune.core.train import Trainer
from kdtune.core.train import train_student
from kdtune.errors import SpecError
from kdtune.tasks.datasets import load_dataset
from kdtune.tasks.image.models import build_model
from kdtune.tasks.image.views import InlineTeacher
from kdtune.tasks.image.views import ViewSpec
from kdtune.tasks.image.views import densify
from kdtune.tasks.image.views import render
from kdtune.tasks.image.views import sparsify
from kdtune.tasks.image.views import view_cache_bytes


SPEC = ViewSpec(Augment(shift=2, rotate=10.0), views=3, seed=0)
TEACHER = TeacherSpec(arch="mlp", epochs=2, kwargs={"widths": [64]}, lr=3e-3)
#: Top-k rows against dense ones, measured in docs/views.md: the KD soft term's mean moves by less than this
#: (relative) at T = 1 for k >= 10 of 100 classes.
TOP_K_TOLERANCE_T1 = 0.02


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits", noise_level=0.05, seed=0)


@pytest.fixture(scope="module")
def built(digits, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A cache with a trained teacher, its logits, and the per-view logits of SPEC."""
    cache = LogitCache(tmp_path_factory.mktemp("views-cache"))
    prepared = cache.prepare(TEACHER, digits)
    return {"cache": cache, "prepared": prepared, "views": cache.prepare_views(prepared, digits, SPEC)}


def _student(data: Any, seed: int = 0) -> torch.nn.Module:
    return build_model("reference_student", input_shape=data.input_shape, num_classes=data.num_classes, seed=seed)


# -- views -----------------------------------------------------------------------------------------------

def test_views_are_reproducible_from_their_seeds(digits) -> None:  # type: ignore[no-untyped-def]
    x = digits.train.x
    index, view = torch.arange(40), torch.arange(40) % SPEC.views
    again = ViewSpec(Augment(shift=2, rotate=10.0), views=3, seed=0)
    assert torch.equal(render(x, SPEC, index, view), render(x, again, index, view))
    # a view's pixels do not depend on the batch it is rendered in
    one_by_one = torch.cat([render(x, SPEC, index[i : i + 1], view[i : i + 1]) for i in range(len(index))])
    assert torch.equal(render(x, SPEC, index, view), one_by_one)
    # other views, other data seeds: other pixels
    assert not torch.equal(render(x, SPEC, index, view), render(x, SPEC, index, (view + 1) % SPEC.views))
    other_seed = ViewSpec(SPEC.augment, SPEC.views, seed=1)
    assert not torch.equal(render(x, SPEC, index, view), render(x, other_seed, index, view))
    # the parameters span the augmentation: every integer shift in [-2, 2], angles within +-10 degrees
    dx, dy, angle = SPEC.params(np.arange(2000), np.zeros(2000, dtype=np.int64))
    assert set(dx.tolist()) == set(dy.tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert float(angle.abs().max()) <= math.radians(10) and float(angle.abs().max()) > math.radians(9)


def test_the_cached_file_stores_the_seeds_each_view_is_rendered_from(built) -> None:  # type: ignore[no-untyped-def]
    cache, key = built["cache"], built["views"].key
    raw = (Path(cache.location) / "views" / key / "train.parquet").read_bytes()
    _, seeds, meta = decode_views(raw)
    rows = np.arange(meta["rows"])
    assert np.array_equal(seeds, SPEC.seeds(rows // SPEC.views, rows % SPEC.views))
    assert meta["view_spec"] == SPEC.to_dict()


def test_the_student_reads_the_teacher_run_on_that_exact_view(digits, built) -> None:  # type: ignore[no-untyped-def]
    teacher = built["prepared"].teacher.model.eval()
    views = built["views"]
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(len(digits.train), (200,), generator=generator)
    view = torch.randint(SPEC.views, (200,), generator=generator)
    batch = render(digits.train.x, SPEC, index, view)
    with torch.no_grad():
        expected = teacher(batch)
    torch.testing.assert_close(views.teacher_logits(index, view, batch), expected, rtol=1e-5, atol=1e-5)
    # The un-augmented logits are not what the student reads: the views do change the teacher's answer.
    assert not torch.allclose(built["prepared"].logits.train[index], expected, atol=1e-3)


def test_training_on_cached_views_equals_training_with_the_teacher_inline(digits, built) -> None:  # type: ignore[no-untyped-def]
    """The whole student loop: reading the cache gives the run that the teacher on every rendered batch gives."""
    config = TrainConfig(epochs=2, alpha=0.3, temperature=4.0, seed=5)
    teacher = built["prepared"].teacher.model
    runs = {}
    for name, source in (("cached", built["views"]), ("inline", InlineTeacher(teacher, SPEC))):
        trainer = Trainer(_student(digits, 5), digits, config, teacher=built["prepared"].logits, views=source)
        losses = [trainer.step().train_loss for _ in range(2)]
        runs[name] = (losses, [p.detach().clone() for p in trainer.model.parameters()])
    assert runs["cached"][0] == pytest.approx(runs["inline"][0], rel=1e-4)
    for a, b in zip(runs["cached"][1], runs["inline"][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_views_are_drawn_by_the_student_seed_and_resume_identically(digits, built) -> None:  # type: ignore[no-untyped-def]
    def train(seed: int, alpha: float, epochs: int, state: dict[str, Any] | None = None) -> Trainer:
        config = TrainConfig(epochs=3, alpha=alpha, temperature=4.0, seed=seed)
        trainer = Trainer(_student(digits, seed), digits, config, teacher=built["prepared"].logits,
                          views=built["views"])
        if state is not None:
            trainer.load_state_dict(state)
        for _ in range(epochs):
            trainer.step()
        return trainer

    straight = train(1, 0.5, 2)
    resumed = train(1, 0.5, 1, state=train(1, 0.5, 1).state_dict())
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    # the view of each image per epoch depends on the student seed only: paired across alpha
    draws = {}
    for seed, alpha in ((1, 0.5), (1, 1.0), (2, 0.5)):
        trainer = train(seed, alpha, 1)
        draws[(seed, alpha)] = trainer.view_generator.get_state()
    assert torch.equal(draws[(1, 0.5)], draws[(1, 1.0)])
    assert not torch.equal(draws[(1, 0.5)], draws[(2, 0.5)])


# -- the cache ---------------------------------------------------------------------------------------------

def test_the_cache_key_includes_the_augmentation_and_the_views(digits, built) -> None:  # type: ignore[no-untyped-def]
    base = built["prepared"].key
    variants = [SPEC, ViewSpec(Augment(shift=1, rotate=10.0), 3, 0), ViewSpec(Augment(shift=2, rotate=5.0), 3, 0),
                ViewSpec(SPEC.augment, 4, 0), ViewSpec(SPEC.augment, 3, 1)]
    keys = {views_key(base, v.to_dict(), None) for v in variants} | {views_key(base, SPEC.to_dict(), 5)}
    assert len(keys) == len(variants) + 1
    assert built["views"].key == views_key(base, SPEC.to_dict(), None)
    # the un-augmented entry keeps the key it always had, and still hits once views exist beside it
    teacher = built["prepared"].teacher
    assert base == logits_key(teacher.fingerprint, digits.fingerprint(), "float32")
    again = built["cache"].prepare(TEACHER, digits)
    assert again.hit and again.key == base


@pytest.mark.parametrize("damage", ["flip bytes", "truncate", "seeds rewritten with a valid checksum"])
def test_damage_to_a_per_view_file_is_detected_and_rebuilt(digits, tmp_path: Path, damage: str,  # type: ignore[no-untyped-def]
                                                           caplog: pytest.LogCaptureFixture) -> None:
    cache = LogitCache(tmp_path / "cache")
    prepared = cache.prepare(TEACHER, digits)
    views = cache.prepare_views(prepared, digits, SPEC)
    dense = views.dense.clone()
    path = tmp_path / "cache" / "views" / views.key / "train.parquet"
    raw = bytearray(path.read_bytes())
    if damage == "flip bytes":
        middle = len(raw) // 2
        raw[middle : middle + 8] = bytes(b ^ 0xFF for b in raw[middle : middle + 8])
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        arrays, seeds, meta = decode_views(bytes(raw))
        keep = {k: meta[k] for k in meta if k not in ("rows", "width", "sparse", "views", "logits_sha256")}
        raw = bytearray(encode_views({k: np.array(v) for k, v in arrays.items()}, seeds + np.uint64(1), SPEC.views,
                                     keep))
    path.write_bytes(bytes(raw))
    damaged = cache.verify()
    assert [(e.kind, e.key) for e in damaged] == [("views", views.key)], damaged
    with caplog.at_level("WARNING"):
        rebuilt = cache.prepare_views(prepared, digits, SPEC)
    assert "rebuilding it" in caplog.text and views.key in caplog.text
    assert torch.equal(rebuilt.dense, dense)
    assert cache.verify() == []


# -- top-k -------------------------------------------------------------------------------------------------

def test_top_k_rows_rebuild_exactly_what_they_keep() -> None:
    logits = torch.randn(64, 100, generator=torch.Generator().manual_seed(0)) * 3
    values, classes, rest, mean = sparsify(logits, 10)
    rebuilt = densify(values, classes, rest, mean, 100, temperature=1.0)
    # the top-k logits are kept, and at T = 1 the remainder's total probability is exact
    torch.testing.assert_close(rebuilt.gather(1, classes.long()), logits.gather(1, classes.long()))
    torch.testing.assert_close(torch.logsumexp(rebuilt, 1), torch.logsumexp(logits, 1))
    full = sparsify(logits, 100)
    assert torch.equal(densify(*full, 100), logits)


def _hundred_classes(path: Path) -> Any:
    """benchmarks/views_topk.py's task, smaller: 100 classes of 16x16 images, each class a fixed pattern of 4
    Gaussian blobs, samples shifted by up to 2 pixels, scaled and noised; 60 per class."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    centres = rng.uniform(3, 13, size=(100, 4, 2))
    prototypes = np.exp(-((yy - centres[..., 0, None, None]) ** 2 + (xx - centres[..., 1, None, None]) ** 2)
                        / (2 * 1.5**2)).sum(1)
    prototypes /= prototypes.max(axis=(1, 2), keepdims=True)
    y = np.repeat(np.arange(100), 60)
    x = np.stack([np.roll(prototypes[c], tuple(rng.integers(-2, 3, size=2)), axis=(0, 1)) * rng.uniform(0.7, 1.3)
                  + rng.normal(0, 0.15, size=(16, 16)) for c in y])[:, None].astype(np.float32)
    np.savez(path, x=x, y=y)
    return load_dataset("c100", files=[str(path)], val_fraction=0.1, seed=0)


def test_top_k_rows_reproduce_the_dense_kd_loss_within_the_stated_tolerance(tmp_path: Path) -> None:
    """As docs/views.md measured it: a trained teacher, a student trained two epochs, every view, T = 1."""
    data = _hundred_classes(tmp_path / "c100.npz")
    cache = LogitCache(tmp_path / "cache")
    augment = Augment(shift=2, rotate=10.0)
    prepared = cache.prepare(TeacherSpec(arch="mlp", epochs=15, kwargs={"widths": [512]}, augment=augment), data)
    spec = ViewSpec(augment, 2, 0)
    dense = cache.prepare_views(prepared, data, spec)
    sparse = cache.prepare_views(prepared, data, spec, top_k=10)
    assert sparse.key != dense.key and sparse.values.shape == (len(data.train) * 2, 10)
    student = build_model("mlp", input_shape=data.input_shape, num_classes=100, kwargs={"widths": [64]}, seed=0)
    train_student(student, data, TrainConfig(epochs=2, alpha=0.5, temperature=4.0), teacher=prepared.logits,
                  views=dense)
    index = torch.arange(len(data.train)).repeat_interleave(2)
    view = torch.arange(2).repeat(len(data.train))
    with torch.no_grad():
        s = student.eval()(render(data.train.x, spec, index, view))
        y = data.train.y[index]
        exact = kd_loss(s, dense.teacher_logits(index, view, s), y, alpha=0.0, temperature=1.0)
        approx = kd_loss(s, sparse.teacher_logits(index, view, s, temperature=1.0), y, alpha=0.0, temperature=1.0)
    assert abs(float(approx - exact)) / float(exact) < TOP_K_TOLERANCE_T1


# -- refusals and the study path ----------------------------------------------------------------------------

def _spec_file(tmp_path: Path, **student: Any) -> Path:
    import yaml

    raw = {"name": "views", "dataset": {"name": "digits"}, "teacher": {"arch": "mlp", "epochs": 1},
           "student": {"arch": "mlp", "epochs": 1, "augment": {"shift": 1}, **student},
           "budget": {"trials_per_condition": 2, "repeats": 1, "confirm_top_k": 0}, "scheduler": {"type": "fifo"},
           "tracking": "none"}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_kdtune_plan_shows_the_size_of_the_per_view_logits(tmp_path: Path, digits,  # type: ignore[no-untyped-def]
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec_file(tmp_path, views=3)
    assert main(["plan", str(spec), "--cache-dir", str(tmp_path / "cache"), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)["conditions"][0]
    assert row["views"]["bytes"] == view_cache_bytes(len(digits.train), 10, 3) == 3 * len(digits.train) * 10 * 4
    assert row["views"]["max_bytes"] == 4 * 2**30 and row["views"]["cached"] is False


@pytest.mark.parametrize("sets, field", [
    (["student.views=0"], "student.views"),
    (["cache.top_k=11"], "cache.top_k"),
    (["cache.max_bytes=1000"], "cache.max_bytes"),
    (["dataset.name=linear", "search={alpha: {type: float, low: 0, high: 1}}"], "student.augment"),
    (["dataset.files=[FLAT]", "dataset.name=flat"], "student.augment"),
])
def test_bad_view_input_is_one_line_exit_2_and_nothing_is_trained_or_written(
        tmp_path: Path, sets: list[str], field: str, capsys: pytest.CaptureFixture[str]) -> None:
    flat = tmp_path / "flat.npz"
    rng = np.random.default_rng(0)
    np.savez(flat, x=rng.normal(size=(200, 12)).astype(np.float32), y=np.arange(200) % 4)
    spec = _spec_file(tmp_path)
    argv = ["run", str(spec), "--out", str(tmp_path / "study"), "--cache-dir", str(tmp_path / "cache")]
    for item in sets:
        argv += ["--set", item.replace("FLAT", str(flat))]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"kdtune: error: {field} = "), err
    assert not (tmp_path / "study").exists() and not (tmp_path / "cache").exists()


def test_the_size_check_refuses_in_the_cache_before_the_teacher_runs(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = LogitCache(tmp_path / "cache")
    prepared = cache.prepare(TEACHER, digits)
    need = view_cache_bytes(len(digits.train), 10, SPEC.views)
    with pytest.raises(SpecError, match=rf"^cache.max_bytes = {need - 1}: is below the {need:,} bytes"):
        cache.prepare_views(prepared, digits, SPEC, max_bytes=need - 1)
    assert not (tmp_path / "cache" / "views").exists()
    assert cache.prepare_views(prepared, digits, SPEC, max_bytes=need).dense is not None


def test_a_study_with_views_caches_them_and_completes_its_trials(ray_local: None, tmp_path: Path) -> None:
    """What it checks: the study records the views' cache key, the per-view logits are in the cache under it,
    and its trials complete every epoch. That the students read those views is checked without Ray above
    (test_the_student_reads_the_teacher_run_on_that_exact_view)."""
    from conftest import tiny_study_spec

    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study

    spec = tiny_study_spec("views", student={"arch": "mlp", "epochs": 2, "kwargs": {"widths": [16]}, "lr": 3e-3,
                                             "augment": {"shift": 1, "rotate": 5}, "views": 2},
                           conditions={"noise_level": [0.0]}, scheduler={"type": "fifo"})
    cache_dir = tmp_path / "cache"
    out = run_study(spec, RunOptions(out=tmp_path / "study", cache_dir=str(cache_dir), progress=False))
    teachers = json.loads((out / "teachers.json").read_text())
    key = teachers["all"]["views_key"]
    assert (cache_dir / "views" / key / "train.parquet").is_file()
    import pyarrow.parquet as pq

    results = pq.read_table(out / "results.parquet").to_pandas()
    assert set(results.epoch) == {1, 2} and results.trial_id.nunique() >= 2
    assert results.test_accuracy.notna().all()
