"""The task boundary (kdtune/tasks): the registry picks each shipped spec's task, each task states its objective,
its direction and the search parameters that apply, and nothing outside kdtune/tasks branches on a task's name.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest

from kdtune.errors import SpecError
from kdtune.spec.schema import load_spec
from kdtune.spec.schema import parse_spec
from kdtune.tasks import TASKS
from kdtune.tasks import objective_of
from kdtune.tasks import task_for
from kdtune.tasks import task_of
from kdtune.trial_io import SEARCH_PARAMS


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kdtune"

#: Every shipped spec and the task it is. A spec added to search_spaces/ must be added here.
SHIPPED = {
    "cifar100_resnet.yaml": "image",
    "fashion_mnist.yaml": "image",
    "hinton_mnist.yaml": "image",
    "linear_closed_form.yaml": "linear",
    "lm_python_docs.yaml": "language",
    "mnist_noise.yaml": "image",
    "mnist_strong_teacher.yaml": "image",
    "quickstart.yaml": "image",
    "seed_alpha_grid.yaml": "image",
    "teacher_quality.yaml": "image",
}


def test_every_shipped_spec_is_listed() -> None:
    assert sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize(("name", "expected"), sorted(SHIPPED.items()))
def test_the_registry_picks_each_shipped_specs_task(name: str, expected: str) -> None:
    spec = load_spec(ROOT / "search_spaces" / name)
    task = task_for(spec)
    assert task.name == expected
    assert task is TASKS[expected]
    assert objective_of(spec) in task.objectives


def test_a_study_cannot_mix_tasks() -> None:
    with pytest.raises(SpecError, match=r"^conditions\.dataset = .*cannot mix the linear regression task with "
                                        r"classification$"):
        task_of(["digits", "linear"])
    with pytest.raises(SpecError, match="cannot mix"):
        parse_spec({"name": "mixed", "conditions": {"dataset": ["linear", "digits"]},
                    "search": {"alpha": {"type": "float", "low": 0, "high": 1}}})


def test_image_classification_maximises_validation_accuracy() -> None:
    task = TASKS["image"]
    objective = task.objective(None)
    assert (objective.name, objective.column, objective.mode, objective.test_column) == (
        "val_accuracy", "val_accuracy", "max", "test_accuracy")
    assert objective.direction == "maximize" and objective.sign == 1.0 and objective.worst == -math.inf
    assert objective.better(0.91, 0.90) and not objective.better(0.90, 0.90)  # ties keep the earliest epoch
    assert objective.margin_unit == "points of test accuracy"
    assert objective.margin(None) == pytest.approx(0.005) and objective.margin(2.0) == pytest.approx(0.02)
    assert task.search_params == ("alpha", "temperature", "lr", "batch_size", "epochs")
    assert task.by_epochs and task.cache_codec is not None
    assert {objective.column, objective.test_column, "train_loss"} <= set(task.metrics)


def test_the_linear_task_minimises_validation_mse_in_one_step() -> None:
    task = TASKS["linear"]
    objective = task.objective("val_mse")
    assert (objective.name, objective.column, objective.mode, objective.test_column) == (
        "val_mse", "val_loss", "min", "test_excess_mse")
    assert objective.direction == "minimize" and objective.sign == -1.0 and objective.worst == math.inf
    assert objective.better(0.5, 0.6) and not objective.better(0.6, 0.5) and not objective.better(0.5, 0.5)
    assert objective.margin_unit is None and objective.margin(None) is None and objective.margin(1.0) is None
    assert "temperature" not in task.search_params and "alpha" in task.search_params
    assert set(task.search_params) <= set(SEARCH_PARAMS)
    assert not task.by_epochs and task.cache_codec is None
    assert {objective.column, objective.test_column} <= set(task.metrics)


def test_a_runs_parameters_are_the_tasks() -> None:
    """The searcher's full configuration: defaults under the searched values; the linear task drops the
    temperature and trains one step whatever the spec's epochs."""
    image = load_spec(ROOT / "search_spaces" / "quickstart.yaml")
    params = TASKS["image"].run_params(image, {"alpha": 0.3, "temperature": 2.0})
    assert params == {"temperature": 2.0, "lr": image.student.lr, "batch_size": image.student.batch_size,
                      "epochs": image.student.epochs, "alpha": 0.3}
    assert TASKS["image"].epochs(image) == image.student.epochs
    linear = load_spec(ROOT / "search_spaces" / "linear_closed_form.yaml")
    params = TASKS["linear"].run_params(linear, {"alpha": 0.3})
    assert "temperature" not in params and params["epochs"] == 1 and params["alpha"] == 0.3
    assert TASKS["linear"].epochs(linear) == 1


def test_a_parameter_the_task_has_not_is_refused() -> None:
    with pytest.raises(SpecError, match=r"^search\.temperature = .*the linear regression task has no temperature"):
        parse_spec({"name": "lin", "dataset": {"name": "linear"},
                    "search": {"alpha": {"type": "float", "low": 0, "high": 1},
                               "temperature": {"type": "float", "low": 1, "high": 4}}})


def test_the_task_interface_imports_no_torch() -> None:
    """The spec and the read-only commands ask a task for its objective and checks: no torch, numpy or Ray."""
    code = ("import sys, kdtune.tasks, kdtune.tasks.base;"
            "print(sorted(m for m in ('torch', 'numpy', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------ no branching on task names outside tasks/

#: Task names and the words for what tasks predict: a comparison with one of them outside kdtune/tasks is code
#: that should ask the task instead.
TASK_WORDS = {"classification", "regression", "image", "linear", "language"}
#: Comparisons allowed outside kdtune/tasks, by (file, source of the comparison), each with its reason.
ALLOWED: dict[tuple[str, str], str] = {
    ("kdtune/core/train.py", "data.task != 'classification'"):
        "the Trainer's guard against a regression DataBundle: the core sits below the tasks and cannot ask them",
    ("kdtune/analysis/arms.py", "condition['dataset'] == 'linear'"):
        "a linear condition's words in recommendation.json (its teacher is an error B, not a model); to move into "
        "the task once conditions describe themselves through it",
    ("kdtune/cache/entry_records.py", "name != 'linear'"):
        "`kdtune cache verify` reloads an entry's data, and the linear task has no entries; asking the registry "
        "here would close an import cycle (the image task prepares its teacher through the cache)",
}


def _task_comparisons(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(c, ast.Constant) and c.value in TASK_WORDS for side in sides for c in ast.walk(side)):
                found.append(ast.unparse(node))
    return found


def _branches_outside_tasks() -> list[str]:
    branches = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("kdtune/tasks/"):
            continue
        branches += [f"{relative}: {c}" for c in _task_comparisons(path) if (relative, c) not in ALLOWED]
    return branches


def test_nothing_outside_the_tasks_branches_on_a_task_name() -> None:
    assert _branches_outside_tasks() == [], "ask the task (kdtune.tasks.task_for(spec)) instead"


def test_every_allowed_exception_still_exists() -> None:
    """An exception whose code is gone is removed from ALLOWED, so the list says what is still there."""
    present = {(f, c) for f, c in ALLOWED if c in _task_comparisons(ROOT / f)}
    assert present == set(ALLOWED)


def test_the_branch_check_finds_a_branch(tmp_path: Path) -> None:
    """The check itself can fail: the branches it replaced are found."""
    module = tmp_path / "m.py"
    module.write_text("def f(spec, data):\n    if spec.task == 'regression':\n        return 1\n"
                      "    return 2 if data.task != \"classification\" else 3\n")
    assert _task_comparisons(module) == ["spec.task == 'regression'", "data.task != 'classification'"]
