"""The specs shipped in search_spaces/: each loads, expands into its conditions and says what it promises; and
search_spaces/README.md documents every field of the schema with the schema's own defaults.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic import TypeAdapter

from kdtune.spec.conditions import expand
from kdtune.spec.rules import trials_per_condition
from kdtune.spec.schema import StudySpec
from kdtune.spec.schema import load_spec
from kdtune.spec.space import baselines
from kdtune.spec.space import grid
from kdtune.spec.space import grid_size


REPO = Path(__file__).resolve().parents[1]
SPACES = REPO / "search_spaces"
SHIPPED = sorted(p.name for p in SPACES.glob("*.yaml"))
REAL_DATA = ("mnist_noise.yaml", "seed_alpha_grid.yaml", "fashion_mnist.yaml", "teacher_quality.yaml",
             "mnist_strong_teacher.yaml", "hinton_mnist.yaml")
README = (SPACES / "README.md").read_text()


def _load(name: str) -> StudySpec:
    return load_spec(SPACES / name)


def test_the_ten_specs_are_shipped() -> None:
    assert set(SHIPPED) == {"quickstart.yaml", "mnist_noise.yaml", "seed_alpha_grid.yaml",
                            "fashion_mnist.yaml", "teacher_quality.yaml", "linear_closed_form.yaml",
                            "mnist_strong_teacher.yaml", "hinton_mnist.yaml", "lm_python_docs.yaml",
                            "cifar100_resnet.yaml"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_loads_and_expands(name: str) -> None:
    spec = _load(name)
    conditions = expand(spec)
    assert conditions, name
    assert len({c.key for c in conditions}) == len(conditions)  # keys are unique
    assert trials_per_condition(spec) >= 3  # at least the two baselines and one proposal


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_has_a_header_saying_what_cost_and_data(name: str) -> None:
    text = (SPACES / name).read_text()
    header = text[: text.index("\nversion:")]
    assert all(line.startswith("#") for line in header.splitlines()), name
    assert "alpha = 1 means no distillation" in header
    assert re.search(r"Cost on a 2-core CPU machine[^:]*: about (\d|an hour)", header), name
    assert "# Data:" in header
    assert f"`{name}`" in README  # listed in the README's table of shipped specs


@pytest.mark.parametrize("name", REAL_DATA)
def test_real_data_specs_leave_the_data_root_to_the_user_and_never_download(name: str) -> None:
    spec = _load(name)
    assert spec.dataset.name in ("mnist", "fashion_mnist")
    assert spec.dataset.data_root is None
    assert spec.dataset.download is False
    assert "download: false" in (SPACES / name).read_text()  # said explicitly, not left to the default
    assert spec.dataset.train_size == (None if name == "hinton_mnist.yaml" else 10000)


def test_quickstart_is_digits_at_two_noise_levels() -> None:
    spec = _load("quickstart.yaml")
    assert spec.dataset.name == "digits"
    assert [c.noise_level for c in expand(spec)] == [0.1, 0.3]
    assert [c.key for c in expand(spec)] == ["noise_level=0.1", "noise_level=0.3"]


def test_mnist_noise_has_four_noise_levels_and_a_best_val_teacher() -> None:
    spec = _load("mnist_noise.yaml")
    conditions = expand(spec)
    assert [c.noise_level for c in conditions] == [0.0, 0.05, 0.1, 0.2]
    assert {c.noise_type for c in conditions} == {"symmetric"}
    assert {c.teacher_select for c in conditions} == {"best_val"}
    assert spec.sampler == "tpe" and spec.objective_name == "val_accuracy"
    assert spec.teacher.arch == "reference_teacher" and spec.student.arch == "reference_student"


def test_seed_alpha_grid_is_the_seed_study() -> None:
    spec = _load("seed_alpha_grid.yaml")
    points = grid(spec.search)
    assert points == {"alpha": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], "temperature": [10.0]}
    assert grid_size(spec.search) == 10
    assert spec.search["alpha"].type == "float"
    assert (spec.search["alpha"].low, spec.search["alpha"].high, spec.search["alpha"].step) == (0.1, 1.0, 0.1)
    assert spec.search["temperature"].type == "categorical"
    assert spec.default_temperature == 10.0 and spec.sampler == "grid" and spec.scheduler.type == "fifo"
    assert spec.budget.repeats >= 3
    assert spec.dataset.name == "mnist" and spec.dataset.train_size == 10000
    [condition] = expand(spec)
    assert (condition.noise_level, condition.noise_type) == (0.05, "symmetric")
    # alpha = 1 at T = 10 is a grid point; only alpha = 0 comes on top
    assert baselines(spec) == [{"alpha": 1.0, "temperature": 10.0}, {"alpha": 0.0, "temperature": 10.0}]
    assert trials_per_condition(spec) == 11
    # the header states the epoch arithmetic that gave student.epochs
    assert f"student.epochs = {spec.student.epochs}" in (SPACES / "seed_alpha_grid.yaml").read_text()


def test_fashion_mnist_is_fashion_mnist() -> None:
    spec = _load("fashion_mnist.yaml")
    assert spec.dataset.name == "fashion_mnist"
    assert [c.dataset for c in expand(spec)] == ["fashion_mnist"] * 3


def test_teacher_quality_compares_a_two_epoch_teacher_with_a_converged_one() -> None:
    spec = _load("teacher_quality.yaml")
    conditions = expand(spec)
    assert [(c.teacher_epochs, c.teacher_select) for c in conditions] == [(2, "final"), (30, "final")]
    assert [c.key for c in conditions] == ["teacher_epochs=2", "teacher_epochs=30"]
    assert {c.noise_level for c in conditions} == {0.0}
    # the teacher epochs are part of the teacher spec, hence of its cache key
    assert [c.teacher_spec(spec).epochs for c in conditions] == [2, 30]


def test_mnist_strong_teacher_is_the_seed_setup_with_a_teacher_recipe() -> None:
    seed, strong = _load("seed_alpha_grid.yaml"), _load("mnist_strong_teacher.yaml")
    assert strong.dataset == seed.dataset
    assert [(c.noise_level, c.noise_type) for c in expand(strong)] == [(0.05, "symmetric")]
    assert strong.student == seed.student.model_copy(update={"epochs": 20})  # the seed's student, early-stopped
    teacher = expand(strong)[0].teacher_spec(strong)
    assert teacher.arch == "cnn_teacher" and teacher.augment is not None and teacher.schedule == "cosine"
    assert strong.budget.confirm_top_k == 1


def test_hinton_mnist_is_the_papers_setting() -> None:
    spec = _load("hinton_mnist.yaml")
    [condition] = expand(spec)
    teacher = condition.teacher_spec(spec)
    assert spec.dataset.name == "mnist" and spec.dataset.train_size is None and condition.noise_level == 0.0
    assert (teacher.arch, spec.student.arch) == ("hinton_teacher", "hinton_student")
    assert teacher.kwargs["dropout"] > 0 and teacher.augment is not None and teacher.augment.shift == 2
    assert teacher.augment.rotate == 0  # jitter only, as in the paper
    assert spec.search["temperature"].low <= 20 <= spec.search["temperature"].high and spec.default_temperature == 20
    assert spec.budget.confirm_top_k == 1


def test_linear_closed_form_searches_only_alpha_on_val_mse() -> None:
    spec = _load("linear_closed_form.yaml")
    assert spec.dataset.name == "linear" and spec.task.name == "linear"
    assert list(spec.search) == ["alpha"] and "temperature" not in spec.search
    assert spec.objective == "val_mse" and spec.mode == "min"
    assert spec.scheduler.type == "fifo" and spec.student.arch == "linear"
    assert [c.teacher_error for c in expand(spec)] == [0.025, 0.1, 0.4]


def test_linear_closed_form_alpha_star_spreads_across_its_conditions() -> None:
    from kdtune.tasks.linear.closed_form import closed_form

    spec = _load("linear_closed_form.yaml")
    stars = []
    for condition in expand(spec):
        data = condition.load_data(spec)
        stars.append(closed_form(data, condition.teacher_error)["alpha_star"])
    # V ~ sigma^2 d / (n - d - 1) = 50 / 500 = 0.1, so B = 0.025, 0.1, 0.4 -> alpha* ~ 0.2, 0.5, 0.8
    assert stars == pytest.approx([0.2, 0.5, 0.8], abs=0.03)


# -- the README documents the schema
def _section_models(model: type[BaseModel], path: str = "") -> dict[str, type[BaseModel]]:
    """Every section model of the schema by dotted path, found by introspection ("" is the top level)."""
    found = {path: model}
    for name, field in model.model_fields.items():
        for c in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(c, type) and issubclass(c, BaseModel):
                found.update(_section_models(c, f"{path}.{name}".lstrip(".")))
    return found


def _readme_sections() -> dict[str, str]:
    """README text under each ``### `path` `` heading (``### Top level`` is "")."""
    sections = {}
    for chunk in README.split("\n### ")[1:]:
        heading, _, body = chunk.partition("\n")
        heading = heading.strip()
        sections["" if heading == "Top level" else heading.strip("`")] = body.split("\n## ")[0]
    return sections


def _rows(body: str) -> dict[str, list[str]]:
    rows = {}
    for line in body.splitlines():
        m = re.match(r"^\| `([a-z_]+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [cell.strip() for cell in m.group(2).split(" | ")]
    return rows


def test_readme_mentions_every_top_level_field() -> None:
    for name in StudySpec.model_fields:
        assert f"`{name}`" in README, name


@pytest.mark.parametrize("path", sorted(_section_models(StudySpec)))
def test_readme_documents_every_field_of_each_section(path: str) -> None:
    model = _section_models(StudySpec)[path]
    sections = _readme_sections()
    assert path in sections, f"README has no section for {path or 'the top level'}"
    rows = _rows(sections[path])
    assert set(rows) == set(model.model_fields), path  # every field, and no field that no longer exists


@pytest.mark.parametrize("path", sorted(_section_models(StudySpec)))
def test_readme_defaults_are_the_schemas(path: str) -> None:
    model = _section_models(StudySpec)[path]
    rows = _rows(_readme_sections()[path])
    for name, field in model.model_fields.items():
        kind, default = rows[name][0], rows[name][1]
        if field.is_required():
            assert default == "*required*", f"{path}.{name}"
            continue
        assert default != "*required*", f"{path}.{name}"
        if isinstance(field.default, BaseModel):
            assert default.startswith("see "), f"{path}.{name}"
            continue
        literal = re.match(r"^`([^`]*)`", default)
        assert literal, f"{path}.{name}: default cell {default!r}"
        value: Any = yaml.safe_load(literal.group(1))
        annotation = field.rebuild_annotation()
        assert TypeAdapter(annotation).validate_python(value) == field.default, f"{path}.{name}"
        assert kind, f"{path}.{name} has no type"


def test_readme_explains_the_format_baselines_keys_and_overrides() -> None:
    assert "Optuna's abbreviated format" in README and "bounds are inclusive" in README
    assert "alpha = 1 (no distillation) and alpha = 0 (pure distillation)" in README
    assert "**alpha is the weight on the true labels: alpha = 1 means no distillation**" in README
    assert "Condition keys" in README and "noise_level=0.1" in README
    assert "--set key.path=value" in README
