"""The study spec: every kind of mistake is one SpecError naming the field and what is allowed; the v1 format
loads, minimal and complete; ``--set`` overrides; defaults come from the schema; the CLI refuses a bad spec
with one stderr line and exit code 2 before Ray starts.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from kdtune.errors import SpecError
from kdtune.spec.schema import StudySpec
from kdtune.spec.schema import apply_overrides
from kdtune.spec.schema import load_spec
from kdtune.spec.schema import parse_spec


REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "tests" / "specs"

#: fixture -> (field path, regular expression for the message). Each fixture is a different kind of mistake.
INVALID: dict[str, tuple[str, str]] = {
    "invalid_unknown_key": (
        "learning_rate",
        r"^learning_rate = 0\.01: unknown key; allowed here: version, name, dataset, .*student.*$"),
    "invalid_unknown_nested_key": (
        "teacher.epoch", r"^teacher\.epoch = 5: unknown key; allowed here: arch, epochs, .*select.*$"),
    "invalid_bad_type": (
        "student.epochs", r"^student\.epochs = 'many': input should be a valid integer"),
    "invalid_alpha_high": (
        "search.alpha.high",
        r"^search\.alpha\.high = 1\.5: must be <= 1 \(alpha is the weight on the true labels\)$"),
    "invalid_negative_alpha": (
        "search.alpha.low", r"^search\.alpha\.low = -0\.5: must be >= 0 \(alpha < 0 is only for the linear regression task\)$"),
    "invalid_temperature_low": (
        "search.temperature.low", r"^search\.temperature\.low = 0\.0: must be at least 0\.01 \("),
    "invalid_noise_level": (
        "conditions.noise_level[1]", r"^conditions\.noise_level\[1\] = 1\.0: must be in \[0, 1\)"),
    "invalid_empty_condition": (
        "conditions.teacher_epochs", r"^conditions\.teacher_epochs = \[\]: must list at least one value"),
    "invalid_duplicate_condition": (
        "conditions.noise_level",
        r"^conditions\.noise_level = \[0\.1, 0\.2, 0\.1\]: must not repeat a value$"),
    "invalid_unknown_sampler": (
        "sampler", r"^sampler = 'bayesian': must be 'tpe', 'random' or 'grid'$"),
    "invalid_grid_continuous": (
        "search.temperature",
        r"^search\.temperature = \{.*\}: the grid sampler needs choices, or low/high with a step$"),
    "invalid_objective_mse": (
        "objective", r"^objective = 'val_mse': val_mse is only for the linear regression task$"),
    "invalid_not_mapping": (
        "spec", r"^spec = '.*invalid_not_mapping\.yaml': must be a YAML mapping with at least `name`$"),
    "invalid_yaml_syntax": (
        "spec", r"^spec = '.*invalid_yaml_syntax\.yaml': is not valid YAML at line 4: expected ',' or '\}'"),
    "invalid_missing_name": (
        "name", r"^name = None: is required$"),
    "invalid_grace_period": (
        "scheduler.grace_period", r"^scheduler\.grace_period = 8: must be at most student\.epochs \(5\)$"),
    "invalid_unsearchable": (
        "search.momentum",
        r"^search\.momentum = 'momentum': is not searchable; allowed: alpha, temperature, lr, batch_size, "
        r"epochs$"),
}


@pytest.mark.parametrize("fixture", sorted(INVALID))
def test_invalid_fixture_names_its_field_and_what_is_allowed(fixture: str) -> None:
    field, message = INVALID[fixture]
    with pytest.raises(SpecError, match=message) as info:
        load_spec(SPECS / f"{fixture}.yaml")
    assert info.value.field == field
    assert "\n" not in str(info.value)  # one line
    assert info.value.exit_code == 2


def test_every_invalid_fixture_is_checked() -> None:
    assert {p.stem for p in SPECS.glob("invalid_*.yaml")} == set(INVALID)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^spec = '.*nowhere\.yaml': file not found$"):
        load_spec(tmp_path / "nowhere.yaml")


def test_negative_alpha_is_accepted_for_the_linear_task_when_allowed() -> None:
    raw = yaml.safe_load((SPECS / "invalid_negative_alpha.yaml").read_text())
    spec = parse_spec({**raw, "allow_negative_alpha": True, "dataset": {"name": "linear"}})
    assert spec.search["alpha"].low == -0.5


def test_negative_alpha_is_refused_for_classification_even_when_allowed() -> None:
    """Cross-entropy on a mixed target with a negative entry is unbounded below (item 6 of the verdicts work)."""
    raw = yaml.safe_load((SPECS / "invalid_negative_alpha.yaml").read_text())
    with pytest.raises(SpecError, match=r"^allow_negative_alpha = True: is only for the linear regression task"):
        parse_spec({**raw, "allow_negative_alpha": True})


def test_confirmation_budget_and_margin_are_checked() -> None:
    with pytest.raises(SpecError, match=r"^budget\.confirm_max_repeats = 3: must be at least budget\.confirm_repeats \(4\)"):
        parse_spec({"name": "x", "budget": {"confirm_repeats": 4, "confirm_max_repeats": 3}})
    with pytest.raises(SpecError, match=r"^recommend\.margin = 0\.5: is in points of test accuracy; the linear task"):
        parse_spec({"name": "x", "dataset": {"name": "linear"}, "search": {"alpha": {"type": "float", "low": 0, "high": 1}},
                    "recommend": {"margin": 0.5}})
    with pytest.raises(SpecError, match=r"^recommend\.margin = -1: input should be greater than 0"):
        parse_spec({"name": "x", "recommend": {"margin": -1}})
    spec = parse_spec({"name": "x"})
    assert spec.budget.confirm_top_k == 1 and spec.margin == 0.005  # confirmation on, 0.5 points by default


def test_grace_period_is_only_checked_for_asha() -> None:
    raw = yaml.safe_load((SPECS / "invalid_grace_period.yaml").read_text())
    spec = parse_spec({**raw, "scheduler": {"type": "fifo", "grace_period": 8}})
    assert spec.scheduler.type == "fifo" and spec.student.epochs == 5


def test_list_index_in_a_pydantic_error_reads_like_the_validators() -> None:
    message = r"^conditions\.noise_level\[1\] = 'abc': input should be a valid number"
    with pytest.raises(SpecError, match=message) as info:
        parse_spec({"name": "x", "conditions": {"noise_level": [0.1, "abc"]}})
    assert info.value.field == "conditions.noise_level[1]"


def test_unknown_key_inside_a_search_parameter_lists_the_distribution_keys() -> None:
    with pytest.raises(SpecError, match=r"^search\.alpha\.lo = 0: unknown key; allowed here: type, low, "
                                        r"high, log, step, choices$"):
        parse_spec({"name": "x", "search": {"alpha": {"type": "float", "lo": 0, "high": 1}}})


def test_linear_task_refuses_a_temperature() -> None:
    with pytest.raises(SpecError, match=r"^search\.temperature = \{.*\}: the linear regression task has no "
                                        r"temperature"):
        parse_spec({"name": "x", "dataset": {"name": "linear"}})


# -- the v1 format
def test_v1_minimal_loads_with_schema_defaults() -> None:
    spec = load_spec(SPECS / "v1_minimal.yaml")
    assert spec.name == "minimal" and spec.version == 1
    assert spec == StudySpec(name="minimal")
    assert spec.task.name == "image" and spec.objective_name == "val_accuracy" and spec.mode == "max"


def _models(model: type[BaseModel], path: str = "") -> dict[str, type[BaseModel]]:
    """Every section model reachable from ``model``, by dotted path ("" is the top level)."""
    found = {path: model}
    for name, field in model.model_fields.items():
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                found.update(_models(c, f"{path}.{name}".lstrip(".")))
    return found


#: Bring-your-own fields exclude each other or the teacher conditions v1_full sets: v1_byo*.yaml cover them.
BYO_FIELDS = {"dataset.files", "teacher.checkpoint", "teacher.logits"}
#: The language task's fields, which an image spec such as v1_full refuses: test_language_fields_load covers them
#: (conditions.top_k: test_size_conditions.py).
LANGUAGE_FIELDS = {"dataset.corpus", "dataset.text_field", "dataset.tokenizer", "dataset.context",
                   "dataset.test_fraction", "dataset.epoch_blocks", "cache.samples", "conditions.top_k"}


#: A crop is either padded (crop, padding) or random-resized (scale, ratio): v1_full's teacher sets one, its student
#: the other (tests/test_crop_flip_views.py renders both).
CROP_FIELDS = {"teacher.augment.crop", "teacher.augment.padding", "student.augment.scale", "student.augment.ratio"}


#: A cheap search's student is narrower (v1_full) or another architecture, and its epochs cannot be cheapened where
#: they are searched (v1_full searches them): tests/test_fidelity.py covers these.
OTHER_STUDENT_FIELDS = {"fidelity.student", "fidelity.student_kwargs", "fidelity.epochs"}


def test_v1_full_sets_every_field_of_every_section() -> None:
    raw = yaml.safe_load((SPECS / "v1_full.yaml").read_text())
    for path, model in _models(StudySpec).items():
        if path == "search":  # a mapping of distributions: every key must appear in at least one of them
            used = set().union(*(d.keys() for d in raw["search"].values()))
            assert used == set(model.model_fields), path
            continue
        node = raw
        for part in filter(None, path.split(".")):
            node = node[part]
        skipped = BYO_FIELDS | LANGUAGE_FIELDS | CROP_FIELDS | OTHER_STUDENT_FIELDS
        expected = {name for name in model.model_fields if f"{path}.{name}" not in skipped}
        assert set(node) == expected, path


def test_v1_byo_specs_set_the_bring_your_own_fields() -> None:
    byo = load_spec(SPECS / "v1_byo.yaml")
    assert [Path(f).name for f in byo.dataset.files or []] == ["train.npz", "test.npz"]
    assert all(Path(f).is_absolute() for f in byo.dataset.files or [])
    assert byo.teacher.checkpoint is not None and byo.teacher.checkpoint.endswith("teacher.safetensors")
    logits = load_spec(SPECS / "v1_byo_logits.yaml")
    assert logits.teacher.logits == "0123456789abcdef0123456789abcdef"


def test_v1_full_loads_with_its_values() -> None:
    spec = load_spec(SPECS / "v1_full.yaml")
    assert spec.dataset.data_root == "/data/kdtune" and spec.dataset.linear.noise_std == 0.5
    assert spec.teacher.select == "final" and spec.teacher.kwargs == {"dropout": 0.1}
    assert spec.conditions.noise_type == ["symmetric", "pairflip"]
    assert spec.search["batch_size"].choices == [32, 64]
    assert not spec.allow_negative_alpha and spec.search["alpha"].low == 0.0
    assert spec.budget.max_wall_minutes == 90.5 and spec.budget.confirm_top_k == 2
    assert spec.budget.confirm_max_repeats == 15 and spec.recommend.margin == 1.0 and spec.margin == 0.01
    assert spec.budget.locate_alphas == 4 and spec.budget.locate_seeds == 3
    assert spec.resources.gpu == 0.5 and spec.resources.max_concurrent == 3
    assert spec.tracking.wandb is not None and spec.tracking.wandb.entity == "my-team"
    same = set()  # fields left at their default: only where no other value makes sense
    for path, model, section in _sections(spec):
        for name, field in model.model_fields.items():
            if not field.is_required() and getattr(section, name) == field.default:
                same.add(f"{path}.{name}".lstrip("."))
    # the only version; asha, so that its two settings matter; negative alpha is for the linear task only (this
    # spec is classification); the bring-your-own fields (v1_byo*.yaml)
    assert same == ({"version", "scheduler.type", "allow_negative_alpha"} | BYO_FIELDS | LANGUAGE_FIELDS | CROP_FIELDS
                    | OTHER_STUDENT_FIELDS)


def test_language_fields_load(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"body": "one document"}\n')
    spec = parse_spec({"name": "lm", "dataset": {"name": "text", "corpus": str(corpus), "text_field": "body",
                                                 "tokenizer": "byte", "context": 32, "test_fraction": 0.2,
                                                 "epoch_blocks": 100},
                       "teacher": {"arch": "transformer"}, "student": {"arch": "transformer"},
                       "cache": {"samples": 4}, "search": {"alpha": {"type": "float", "low": 0.0, "high": 1.0},
                                                         "divergence": {"type": "categorical",
                                                                        "choices": ["forward_kl"]}},
                       "default_temperature": 1.0, "objective": "val_loss"})
    d = spec.dataset
    assert (d.corpus, d.text_field, d.tokenizer, d.context, d.test_fraction, d.epoch_blocks) == (
        str(corpus), "body", "byte", 32, 0.2, 100)
    assert spec.cache.samples == 4 and spec.objective_name == "val_loss" and spec.task.name == "language"


def test_defaults_come_from_the_schema() -> None:
    spec = load_spec(SPECS / "v1_minimal.yaml")
    for path, model, section in _sections(spec):
        for name, field in model.model_fields.items():
            if field.is_required():
                continue
            assert getattr(section, name) == field.default, f"{path}.{name}"
    # the values the docs rely on
    assert spec.search["alpha"].low == 0.0 and spec.search["alpha"].high == 1.0
    assert spec.search["temperature"].log is True
    assert spec.teacher.select == "best_val" and spec.tracking.wandb is not None
    assert spec.tracking.wandb.mode == "offline"


def test_tracking_none_switches_wandb_off() -> None:
    assert parse_spec({"name": "x", "tracking": "none"}).tracking.wandb is None


# -- --set overrides
def test_apply_overrides_creates_nested_mappings_without_touching_the_input() -> None:
    raw = {"name": "x"}
    out = apply_overrides(raw, ["scheduler.type=fifo", "tracking.wandb.project=other"])
    assert out == {"name": "x", "scheduler": {"type": "fifo"}, "tracking": {"wandb": {"project": "other"}}}
    assert raw == {"name": "x"}


def test_apply_overrides_parses_values_as_yaml() -> None:
    out = apply_overrides({"name": "x"}, [
        "budget.repeats=5", "student.lr=0.0003", "conditions.noise_level=[0.0, 0.3]",
        "dataset.data_root=/data", "dataset.download=true", "resources.max_concurrent=null", "name=y=z",
    ])
    assert out["budget"]["repeats"] == 5 and isinstance(out["budget"]["repeats"], int)
    assert out["student"]["lr"] == 0.0003
    assert out["conditions"]["noise_level"] == [0.0, 0.3]
    assert out["dataset"]["data_root"] == "/data"
    assert out["dataset"]["download"] is True
    assert out["resources"]["max_concurrent"] is None
    assert out["name"] == "y=z"  # only the first = separates key from value


def test_overrides_are_validated_like_the_file() -> None:
    spec = load_spec(REPO / "search_spaces" / "mnist_noise.yaml",
                     overrides=["dataset.data_root=/data", "budget.repeats=5", "student.lr=3e-4"])
    assert spec.dataset.data_root == "/data" and spec.budget.repeats == 5
    assert spec.student.lr == pytest.approx(3e-4)  # YAML reads 3e-4 as a string; the schema makes it a float
    with pytest.raises(SpecError, match=r"^budget\.repeats = 0: input should be greater than or equal to 1$"):
        load_spec(REPO / "search_spaces" / "mnist_noise.yaml", overrides=["budget.repeats=0"])


def test_a_bad_in_memory_is_one_message_not_one_per_allowed_type() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(REPO / "search_spaces" / "quickstart.yaml", overrides=["dataset.in_memory=maybe"])
    assert str(info.value) == "dataset.in_memory = 'maybe': must be auto, true or false"


@pytest.mark.parametrize(("item", "message"), [
    ("budget.repeats",
     r"^--set = 'budget\.repeats': must look like key\.path=value, e\.g\. budget\.repeats=3$"),
    ("=3", r"^--set = '=3': must look like key\.path=value"),
    ("name.first=x", r"^--set = 'name\.first=x': name is not a mapping in the spec$"),
])
def test_malformed_override_is_refused(item: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        apply_overrides({"name": "x"}, [item])
    assert info.value.field == "--set"


# -- the command line
def test_cli_refuses_a_bad_spec_with_one_line_and_exit_code_2(sandbox: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "kdtune", "run", "tests/specs/invalid_unknown_key.yaml",
                           "--out", str(sandbox / "never")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kdtune: error: learning_rate = 0.01: unknown key; allowed here: ")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (sandbox / "never").exists()  # refused before any study folder (or Ray) was started


def test_cli_set_override_error_is_one_line(sandbox: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "kdtune", "run", "search_spaces/quickstart.yaml", "--set",
                           "budget.repeats", "--out", str(sandbox / "never2")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "kdtune: error: --set = 'budget.repeats': must look like key.path=value, e.g. budget.repeats=3"]


def _sections(spec: StudySpec) -> Iterator[tuple[str, type[BaseModel], Any]]:
    """(path, schema model, the spec's value) for every section of the schema except the search space."""
    for path, model in _models(StudySpec).items():
        if path == "search":
            continue
        section: Any = spec
        for part in filter(None, path.split(".")):
            section = getattr(section, part)
        if section is None:  # an optional section left out (fidelity): its defaults apply once it is given
            section = model()
        yield path, model, section
