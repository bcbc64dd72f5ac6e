"""`kdtune plan`: a dry run that counts trials and runs, asks the cache what exists, and estimates the cost.

How close the estimate comes to the measured time is a timing comparison, so it lives in
``benchmarks/plan_estimate.py``, not here; the test checks what the plan says about the cache and that the
study it describes runs from that cache.
alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_study_spec

from kdtune.cache import LogitCache
from kdtune.cli import main
from kdtune.spec.conditions import expand
from kdtune.spec.rules import trials_per_condition
from kdtune.study.driver import RunOptions
from kdtune.study.driver import run_study


def _write(spec: object, path: Path) -> Path:
    path.write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))  # type: ignore[attr-defined]
    return path


def test_plan_counts_trials_and_runs_and_writes_nothing(short_tmp: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(short_tmp)
    spec_file = _write(tiny_study_spec("plan-count"), short_tmp / "spec.yaml")
    cache = short_tmp / "cache"
    assert main(["plan", str(spec_file), "--set", "budget.confirm_top_k=2", "--set", "budget.confirm_repeats=3",
                 "--set", "budget.confirm_max_repeats=6", "--set", "budget.confirm_failure_rate=0",
                 "--cache-dir", str(cache), "--cpus", "4",
                 "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    per_condition = trials_per_condition(tiny_study_spec("plan-count"))  # 2 proposals + 2 baselines
    assert [c["key"] for c in plan["conditions"]] == ["noise_level=0.0", "noise_level=0.2"]
    for row in plan["conditions"]:
        # confirmation at its most: 2 rounds of 3 seeds, each for the 2 candidates and alpha = 1; then the locate
        # stage's 5 alphas on 3 seeds (the first round's)
        assert (row["trials"], row["confirm_trials"], row["runs"]) == (per_condition, 6 + 5,
                                                                       per_condition * 2 + 3 * 6 + 5 * 3)
        assert row["teacher"]["action"] == "train teacher" and row["teacher"]["teacher_cached"] is False
        assert row["estimate"]["teacher_s"] > 0 and row["estimate"]["cpu_s"] > row["estimate"]["teacher_s"]
    assert plan["total"]["trials"] == 2 * (per_condition + 11)
    assert plan["total"]["runs"] == 2 * (per_condition * 2 + 18 + 15)
    assert plan["total"]["teachers_to_train"] == 2 and plan["resources"]["concurrency"] == 4
    # two conditions on 4 CPUs: each teacher is timed on the 2 threads its preparation will have
    assert plan["resources"]["teacher_threads"] == 2
    assert any(name.startswith("teacher ") and name.endswith(" threads 2") for name in plan["calibration"])
    assert any("ASHA" in line for line in plan["assumptions"])
    assert not cache.exists() and not (short_tmp / "runs").exists()  # a dry run: nothing written


def test_plan_table_says_what_must_be_built(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tiny_study_spec("plan-table", teacher={"logits": "0" * 32}, conditions={"noise_level": [0.1]})
    assert main(["plan", str(_write(spec, short_tmp / "spec.yaml")), "--cache-dir", str(short_tmp)]) == 0
    out = capsys.readouterr().out
    assert "missing (imported)" in out and "is not in the cache" in out
    assert "ASHA stops no trial early" in out and "wall time: about" in out


@pytest.mark.slow
def test_plan_sees_the_cached_teacher_the_study_then_uses(ray_local: None, short_tmp: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = tiny_study_spec("plan-real", conditions={"noise_level": [0.1]})
    cache = short_tmp / "cache"
    [condition] = expand(spec)
    prepared = LogitCache(cache).prepare(condition.teacher_spec(spec), condition.load_data(spec), threads=1)

    assert main(["plan", str(_write(spec, short_tmp / "spec.yaml")), "--cache-dir", str(cache), "--cpus", "2",
                 "--ray-running", "--format", "json"]) == 0  # the session's Ray has 2 CPUs and is running
    plan = json.loads(capsys.readouterr().out)
    [row] = plan["conditions"]
    assert row["teacher"] == {"source": "trained", "teacher_key": prepared.teacher_key, "teacher_cached": True,
                              "logits_key": prepared.key, "logits_cached": True, "action": "cached", "problem": None}
    assert row["estimate"]["teacher_s"] == 0.0 and plan["total"]["cached"] == 1

    assert plan["total"]["wall_s"] > 0 and set(plan["total"]["wall_parts_s"])
    study = run_study(spec, RunOptions(out=short_tmp / "study", cache_dir=str(cache), progress=False))
    teachers = json.loads((study / "teachers.json").read_text())
    assert teachers["all"]["cache_hit"] is True and teachers["all"]["cache_key"] == prepared.key


class _Stop(Exception):
    """Ends a run at its announcement, before Ray starts."""


def test_kdtune_run_checks_its_inputs_once_and_its_estimate_reuses_them(short_tmp: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-of-run estimate is made from what the study's checks found: the inputs are checked once per
    run, and the data the checks loaded are not loaded again."""
    import sys
    from types import FrameType

    from kdtune.spec.conditions import Condition
    from kdtune.study.preflight import check_inputs

    monkeypatch.setenv("KDTUNE_CACHE_DIR", str(short_tmp / "cache"))
    counted = {"check_inputs": 0, "load_data": 0}

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is check_inputs.__code__:
            counted["check_inputs"] += 1
        elif event == "call" and frame.f_code is Condition.load_data.__code__:
            counted["load_data"] += 1

    plans: list[dict[str, object] | None] = []

    def announce(plan: dict[str, object] | None) -> None:
        plans.append(plan)
        raise _Stop

    out = short_tmp / "study"
    sys.setprofile(profile)
    try:
        with pytest.raises(_Stop):
            run_study(tiny_study_spec("plan-once", conditions={"noise_level": [0.1]}), RunOptions(out=out),
                      announce=announce)
    finally:
        sys.setprofile(None)
    assert counted == {"check_inputs": 1, "load_data": 1}  # digits: the model check loads it, the estimate reuses it
    (plan,) = plans
    assert plan is not None and plan["spec"] == "plan-once"
    assert not out.exists()  # a run stopped before its trials started leaves nothing behind
