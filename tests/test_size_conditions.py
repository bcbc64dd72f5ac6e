"""Condition axes for model size and the language teacher's top-k: ``conditions.student_size`` / ``teacher_size``
(named kwargs overrides merged over the section's kwargs) and ``conditions.top_k`` (the k students read of one
``cache.top_k`` cache). Expansion and keys, what each condition's models are built with, one-line refusals
naming the field, the image preflight building every size, the plan timing each condition's own models, and
results written before the size columns existed.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import tiny_study_spec

from kdtune.cli import main
from kdtune.errors import SpecError
from kdtune.records.folder import StudyFolder
from kdtune.records.results import RESULT_SCHEMA
from kdtune.records.results import read_results
from kdtune.spec.conditions import Condition
from kdtune.spec.conditions import expand
from kdtune.spec.schema import parse_spec
from kdtune.tasks import TASKS


SIZES = {"w8": {"widths": [8]}, "w32": {"widths": [32]}}
LM_MODEL = {"arch": "transformer", "kwargs": {"n_layers": 1, "d_model": 16, "n_heads": 2}}


def _lm(**sections: Any) -> dict[str, Any]:
    """A language spec (the default corpus: nothing is read to validate it)."""
    return {"name": "lm-sizes", "dataset": {"name": "python_docs", "context": 16}, "teacher": LM_MODEL,
            "student": LM_MODEL, "tracking": "none", **sections}


def test_sizes_expand_into_named_conditions_built_with_their_merged_kwargs() -> None:
    spec = tiny_study_spec("sizes", student={"arch": "mlp", "epochs": 2, "kwargs": {"widths": [16], "dropout": 0.1}},
                           conditions={"student_size": SIZES, "teacher_size": {"t64": {}, "t128": {"widths": [128]}}})
    conditions = expand(spec)
    assert [c.key for c in conditions] == ["teacher_size=t64,student_size=w8", "teacher_size=t64,student_size=w32",
                                           "teacher_size=t128,student_size=w8", "teacher_size=t128,student_size=w32"]
    by_key = {c.key: c for c in conditions}
    small = by_key["teacher_size=t128,student_size=w8"]
    # the size's overrides merged over the section's kwargs, the rest kept
    assert small.student_kwargs(spec) == {"widths": [8], "dropout": 0.1}
    assert small.teacher_kwargs(spec) == {"widths": [128]} and small.teacher_spec(spec).kwargs == {"widths": [128]}
    assert by_key["teacher_size=t64,student_size=w32"].teacher_kwargs(spec) == {"widths": [64]}  # {} keeps them
    assert small.model_field("student") == "conditions.student_size.w8"
    assert small.model_field("teacher") == "conditions.teacher_size.t128"
    # frozen, hashable, and recorded as plain JSON that reads back as the same condition
    assert len(set(conditions)) == 4
    recorded = json.loads(json.dumps(small.as_dict()))
    assert recorded["student_size"] == "w8" and Condition(**recorded) == small
    assert "size w8" in small.describe() and "size t128" in small.describe()
    # the two teacher sizes are two teachers (their kwargs are in the cache key), the student sizes share one
    assert len({repr(c.teacher_spec(spec)) for c in conditions}) == 2


def test_one_size_is_not_in_the_key_and_no_size_records_conditions_as_before() -> None:
    spec = tiny_study_spec("one-size", conditions={"student_size": {"w8": {"widths": [8]}}})
    (condition,) = expand(spec)
    assert condition.key == "all" and condition.student_kwargs(spec) == {"widths": [8]}
    plain = tiny_study_spec("no-size", conditions={"noise_level": [0.1]})
    (condition,) = expand(plain)
    assert condition.student_kwargs(plain) == {"widths": [16]} and condition.model_field("student") == "student.arch"
    assert set(condition.as_dict()) == {"key", "dataset", "noise_level", "noise_type", "teacher_epochs",
                                        "teacher_select", "teacher_seed", "teacher_error", "student_arch"}


@pytest.mark.parametrize(("conditions", "message"), [
    ({"student_size": {}}, "conditions.student_size = {}: must name at least one size"),
    ({"student_size": [{"d_model": 8}]}, "conditions.student_size = [{'d_model': 8}]: must map each size's name "
                                         "to the student.kwargs it overrides"),
    ({"teacher_size": {"d64": 64}}, "conditions.teacher_size.d64 = 64: must be a mapping of teacher.kwargs"),
    ({"student_size": {"d,64": {"d_model": 64}}}, "conditions.student_size = 'd,64': a size's name is part of the "
                                                  "condition key"),
    ({"student_size": {"a": {"d_model": 8}, "b": {"d_model": 8}}}, "conditions.student_size = {'a': {'d_model': 8}, "
                                                                  "'b': {'d_model': 8}}: must not repeat a size"),
])
def test_size_mistakes_are_one_line_naming_the_field(conditions: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(_lm(conditions=conditions))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@pytest.mark.parametrize(("changes", "message"), [
    ({"conditions": {"top_k": [4]}}, "conditions.top_k = [4]: needs cache.top_k"),
    ({"conditions": {"top_k": [4]}, "cache": {"samples": 8}, "default_temperature": 1,
      "search": {"alpha": {"type": "float", "low": 0, "high": 1}}}, "conditions.top_k = [4]: needs cache.top_k"),
    ({"conditions": {"top_k": [4, 64]}, "cache": {"top_k": 32}},
     "conditions.top_k[1] = 64: must be at most cache.top_k (32)"),
    ({"conditions": {"top_k": [0]}, "cache": {"top_k": 32}}, "conditions.top_k[0] = 0: must be a positive integer"),
    ({"conditions": {"top_k": [4, 8]}, "cache": {"top_k": 32},
      "search": {"alpha": {"type": "float", "low": 0, "high": 1}, "top_k": {"type": "categorical", "choices": [8, 16]}}},
     "conditions.top_k = [4, 8]: cannot be combined with search.top_k"),
])
def test_top_k_condition_mistakes_are_one_line(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(_lm(**changes))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_image_and_linear_tasks_refuse_the_language_k_and_linear_refuses_sizes() -> None:
    with pytest.raises(SpecError, match=r"^conditions\.top_k = \[8\]: is for the language task's top-k token targets; "
                                        r"the image task"):
        tiny_study_spec("image-k", conditions={"top_k": [8]})
    linear = {"name": "lin", "dataset": {"name": "linear"}, "search": {"alpha": {"type": "float", "low": 0, "high": 1}},
              "tracking": "none"}
    with pytest.raises(SpecError, match=r"^conditions\.top_k = \[8\]: .* the linear regression task"):
        parse_spec({**linear, "conditions": {"top_k": [8]}})
    with pytest.raises(SpecError, match=r"^conditions\.student_size = .*: the linear task's .* no model size"):
        parse_spec({**linear, "conditions": {"student_size": SIZES}})


def test_a_given_teacher_refuses_teacher_sizes() -> None:
    with pytest.raises(SpecError, match=r"^conditions\.teacher_size = .*: has no effect with teacher\.logits"):
        tiny_study_spec("given", teacher={"logits": "0" * 32}, conditions={"teacher_size": SIZES})


def test_a_pretrained_language_model_has_no_sizes() -> None:
    with pytest.raises(SpecError, match=r"^conditions\.student_size = .*: hf:gpt2 is a pretrained model of one size"):
        parse_spec(_lm(student={"arch": "hf:gpt2"}, conditions={"student_size": {"a": {"n_embd": 8}}}))


def test_each_k_is_a_condition_whose_runs_read_it() -> None:
    spec = parse_spec(_lm(conditions={"top_k": [8, 32]}, cache={"top_k": 32}))
    conditions = expand(spec)
    assert [c.key for c in conditions] == ["top_k=8", "top_k=32"]
    assert "top-8 teacher targets" in conditions[0].describe()
    task = TASKS["language"]
    # the k reaches the run's parameters (the results' top_k column, LMTrainConfig.top_k) from its condition
    assert [task.run_params(spec, {"alpha": 0.5}, c)["top_k"] for c in conditions] == [8, 32]
    assert task.run_params(spec, {"alpha": 0.5})["top_k"] is None


def test_the_image_preflight_builds_every_student_size_and_names_the_one_that_fails(
        short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kdtune.study.preflight import check_inputs

    spec = tiny_study_spec("sizes-ok", conditions={"student_size": SIZES})
    check_inputs(spec, expand(spec))  # both build and run on a batch of digits
    bad = tiny_study_spec("sizes-bad", conditions={"student_size": {**SIZES, "w0": {"widths": [-3]}}})
    with pytest.raises(SpecError, match=r"^conditions\.student_size\.w0 = 'mlp': failed when called as "
                                        r"factory\(\(1, 8, 8\), 10, widths=\[-3\]\): RuntimeError"):
        check_inputs(bad, expand(bad))
    # through the command line: one line naming the size, exit code 2, nothing written
    spec_file = short_tmp / "bad.yaml"
    spec_file.write_text(json.dumps(bad.to_dict()))
    out = short_tmp / "study"
    assert main(["run", str(spec_file), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "conditions.student_size.w0" in err and "Traceback" not in err
    assert not out.exists()


def test_the_plan_times_each_condition_with_its_own_models(short_tmp: Path) -> None:
    from kdtune.study.estimate import make_plan

    spec = tiny_study_spec("sizes-plan", conditions={"student_size": SIZES})
    plan = make_plan(spec, cache_dir=str(short_tmp / "cache"), cpus=2, worker_start_s=0.0)
    rows = {row["key"]: row for row in plan["conditions"]}
    assert rows["student_size=w8"]["models"]["student"] == {"size": "w8", "arch": "mlp", "kwargs": {"widths": [8]}}
    assert rows["student_size=w32"]["models"]["student"]["kwargs"] == {"widths": [32]}
    timed = [name for name in plan["calibration"] if name.startswith("student ")]
    assert any('{"widths": [8]}' in name for name in timed) and any('{"widths": [32]}' in name for name in timed)
    assert not (short_tmp / "cache").exists()


def test_results_written_before_the_size_columns_read_them_as_null(short_tmp: Path) -> None:
    old_schema = pa.schema([f for f in RESULT_SCHEMA if f.name not in ("teacher_size", "student_size")])
    folder = StudyFolder(short_tmp).results
    folder.mkdir()
    row = {name: None for name in old_schema.names} | {"trial_id": "t1", "seed": 0, "epoch": 1, "alpha": 1.0,
                                                       "condition": "all"}
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), folder / "part-0.parquet")
    (read,) = read_results(short_tmp).to_pylist()
    assert read["trial_id"] == "t1" and read["student_size"] is None and read["teacher_size"] is None
