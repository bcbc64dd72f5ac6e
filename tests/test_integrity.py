"""A study is never silently corrupted: interrupted at any phase, written by two drivers, moved or copied, or read
from damaged files.

Each case reproduces what a user does: a real ``kdtune run`` in its own process, killed with SIGINT (Ctrl-C) or
SIGTERM in its checks, its teachers' preparation or its trials, then resumed; a second run on a folder that is
being written; a copy of an interrupted study resumed from another directory; study folders with a damaged
``study.json`` or part file. The slow phases are held open by ``kd_fixtures:held_mlp`` while a file exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import tiny_study_spec
from processes import kill_processes_mentioning
from processes import start_kdtune
from processes import wait_for

from kdtune.cli import main
from kdtune.errors import StudyError
from kdtune.records.folder import StudyFolder
from kdtune.records.optuna_storage import make_storage
from kdtune.records.results import read_trials
from kdtune.spec.rules import trials_per_condition
from kdtune.study.search import create_studies


# -- interrupted at each phase ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """``spec(hold, reached)`` is the study; ``ready(study_dir, cache)`` says the driver is in the phase."""

    id: str
    signum: int
    spec: Callable[[Path, Path], dict[str, object]]
    ready: Callable[[Path, Path], bool]


def _checks_spec(hold: Path, reached: Path) -> dict[str, object]:
    student = {"arch": "kd_fixtures:held_mlp", "epochs": 2, "kwargs": {"hold": str(hold), "reached": str(reached)}}
    return tiny_study_spec("int-checks", student=student, conditions={"noise_level": [0.0]},
                           budget={"trials_per_condition": 1, "repeats": 1}, scheduler={"type": "fifo"}).to_dict()


def _teachers_spec(hold: Path, reached: Path) -> dict[str, object]:
    teacher = {"arch": "kd_fixtures:held_mlp", "epochs": 1, "kwargs": {"hold": str(hold), "delay": 0.02}}
    return tiny_study_spec("int-teachers", teacher=teacher, conditions={"teacher_epochs": [1, 60]},
                           budget={"trials_per_condition": 1, "repeats": 1}, scheduler={"type": "fifo"}).to_dict()


def _trials_spec(hold: Path, reached: Path) -> dict[str, object]:
    return tiny_study_spec("int-trials", student={"arch": "mlp", "epochs": 3, "kwargs": {"widths": [16]}, "lr": 3e-3},
                           budget={"trials_per_condition": 4, "repeats": 1}, scheduler={"type": "fifo"}).to_dict()


def _logits_cached(study_dir: Path, cache: Path) -> bool:
    return any(p for p in (cache / "logits").rglob("*") if p.is_file() and ".tmp-" not in p.name)


def _trial_ended(study_dir: Path, cache: Path) -> bool:
    return (study_dir / "study.json").exists() and read_trials(study_dir).num_rows >= 1


PHASES = [
    Phase("checks-sigint", signal.SIGINT, _checks_spec, lambda d, c: (d.parent / "reached").exists()),
    Phase("teachers-sigint", signal.SIGINT, _teachers_spec, _logits_cached),
    Phase("trials-sigint", signal.SIGINT, _trials_spec, _trial_ended),
    Phase("trials-sigterm", signal.SIGTERM, _trials_spec, _trial_ended),
]


def _interrupted_study(short_tmp: Path, phase: Phase) -> tuple[Path, Path, str]:
    """Start the phase's study, signal its driver once it is in the phase; return the folder, the cache, the log."""
    hold, reached = short_tmp / "hold", short_tmp / "reached"
    hold.touch()
    spec_path = short_tmp / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(phase.spec(hold, reached)))
    study_dir, cache, ray_tmp, log = short_tmp / "study", short_tmp / "cache", short_tmp / "ray1", short_tmp / "run.log"
    driver = start_kdtune(["run", str(spec_path), "--out", str(study_dir), "--no-progress"], ray_tmp, log,
                          {"KDTUNE_CACHE_DIR": str(cache)})
    try:
        wait_for(lambda: phase.ready(study_dir, cache), timeout=400, what=phase.id, proc=driver, log=log)
        driver.send_signal(phase.signum)
        code = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        kill_processes_mentioning(str(ray_tmp))
    hold.unlink(missing_ok=True)
    output = log.read_text()
    assert code == 128 + phase.signum, output[-3000:]
    return study_dir, cache, output


def _resume(study_dir: Path, ray_tmp: Path, log: Path, cache: Path, cwd: Path | None = None) -> tuple[int, str]:
    proc = start_kdtune(["resume", str(study_dir), "--no-progress"], ray_tmp, log, {"KDTUNE_CACHE_DIR": str(cache)},
                        cwd=cwd)
    try:
        code = proc.wait(timeout=600)
    finally:
        kill_processes_mentioning(str(ray_tmp))
    return code, log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES, ids=[p.id for p in PHASES])
def test_an_interrupted_study_says_so_and_resume_finishes_it(phase: Phase, short_tmp: Path) -> None:
    study_dir, cache, output = _interrupted_study(short_tmp, phase)
    assert f"kdtune: interrupted: continue with `kdtune resume {study_dir}`" in output, output[-3000:]
    assert "Traceback" not in output and "recommended" not in output, output[-3000:]
    meta = StudyFolder(study_dir).meta()
    assert meta.get("finished_at") is None and not (study_dir / "recommendation.json").exists()
    assert (study_dir / ".lock").read_text() == ""  # released cleanly: nothing to take over
    teachers_before = StudyFolder(study_dir).teachers()

    code, resumed = _resume(study_dir, short_tmp / "ray2", short_tmp / "resume.log", cache)
    assert code == 0, resumed[-3000:]
    assert "taking over" not in resumed
    spec = StudyFolder(study_dir).spec()
    trials = read_trials(study_dir).to_pylist()
    conditions = len(StudyFolder(study_dir).meta()["conditions"])
    assert len({t["trial_id"] for t in trials}) == conditions * trials_per_condition(spec)
    assert StudyFolder(study_dir).meta()["finished_at"] is not None
    assert (study_dir / "recommendation.json").exists()
    if phase.id.startswith("teachers"):  # the teacher that had finished came from the cache, the other was trained
        assert teachers_before == {}
        teachers = StudyFolder(study_dir).teachers()
        assert teachers["teacher_epochs=1"]["trained"] is False, teachers
        assert teachers["teacher_epochs=60"]["trained"] is True, teachers


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_copied_study_resumes_into_itself_from_any_directory_and_leaves_the_original_alone(short_tmp: Path) -> None:
    phase = next(p for p in PHASES if p.id == "trials-sigterm")
    original, cache, _ = _interrupted_study(short_tmp, phase)
    (original / ".lock").write_text("process 4194304 on elsewhere")  # as a kill -9 leaves it: taken over below
    before = _digest(original)
    copy = short_tmp / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    elsewhere = short_tmp / "cwd"
    elsewhere.mkdir()
    code, output = _resume(copy, short_tmp / "ray2", short_tmp / "resume.log", cache, cwd=elsewhere)
    assert code == 0, output[-3000:]
    assert "taking over the study lock of process 4194304 on elsewhere" in output
    assert _digest(original) == before  # not a byte of the original was written
    assert StudyFolder(copy).meta()["finished_at"] is not None
    assert list(elsewhere.iterdir()) == []
    # the copy moves again and its readers follow it, from another directory, by a relative path
    moved = short_tmp / "moved"
    copy.rename(moved)
    for argv in (["status", "moved"], ["recommend", "moved", "--format", "json"], ["report", "moved"]):
        result = subprocess.run([sys.executable, "-m", "kdtune", *argv], cwd=short_tmp, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, (argv, result.stderr[-2000:])
    assert _digest(original) == before


# -- one writer per study folder ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_or_resume_of_a_folder_being_written_is_refused(short_tmp: Path) -> None:
    hold, reached = short_tmp / "hold", short_tmp / "reached"
    hold.touch()
    spec_path = short_tmp / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(_checks_spec(hold, reached)))
    study_dir, ray_tmp, log = short_tmp / "study", short_tmp / "ray1", short_tmp / "run.log"
    first = start_kdtune(["run", str(spec_path), "--out", str(study_dir), "--no-progress"], ray_tmp, log)
    try:
        wait_for(reached.exists, timeout=300, what="the first run's checks", proc=first, log=log)
        for argv in (["run", str(spec_path), "--out", str(study_dir), "--no-progress"], ["resume", str(study_dir)]):
            second = subprocess.run([sys.executable, "-m", "kdtune", *argv], capture_output=True, text=True, timeout=300)
            lines = second.stderr.strip().splitlines()
            assert second.returncode == 1 and len(lines) == 1, second.stderr
            assert lines[0].startswith(f"kdtune: error: {study_dir} is being written by process {first.pid} on ")
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        kill_processes_mentioning(str(ray_tmp))
    assert len(list(read_trials(study_dir).to_pylist())) == 0 and StudyFolder(study_dir).meta()["spec"]


# -- Optuna study names ---------------------------------------------------------------------------------------------


def test_a_new_study_never_joins_optuna_studies_that_exist(short_tmp: Path) -> None:
    spec = tiny_study_spec("names")
    storage = make_storage(f"sqlite:///{short_tmp / 'shared.db'}")
    create_studies(spec, storage, ["a", "b"], prefix="names/1234", join=False)
    create_studies(spec, storage, ["a", "b"], prefix="names/5678", join=False)  # another study: its own names
    with pytest.raises(StudyError, match=r"already holds study names/1234/a .*kdtune resume"):
        create_studies(spec, storage, ["a", "b"], prefix="names/1234", join=False)
    create_studies(spec, storage, ["a", "b"], prefix="names/1234", join=True)  # resume of that study joins


# -- damaged study folders: one line, exit code 1, for every reader ---------------------------------------------------


def _synthetic_study(folder: Path) -> Path:
    """A study folder as kdtune writes it, with one results part and one trials part (no run needed)."""
    from kdtune.records.results import results_writer
    from kdtune.records.results import trials_writer
    from kdtune.spec.conditions import expand

    spec = tiny_study_spec("damaged", conditions={"noise_level": [0.0]})
    folder.mkdir(parents=True)
    meta = {"id": "abc123", "spec": spec.to_dict(), "conditions": [c.as_dict() for c in expand(spec)],
            "created_at": 1.0, "finished_at": 2.0, "storage_url": "sqlite:///optuna.db", "storage_redacted": False}
    StudyFolder(folder).create(meta, "")
    key = expand(spec)[0].key
    results_writer(folder).append([{"study": "damaged", "condition": key, "trial_id": "t1", "phase": "baseline",
                                    "alpha": 1.0, "seed": 0, "epoch": 1, "val_accuracy": 0.5}])
    trials_writer(folder).append([{"trial_id": "t1", "condition": key, "phase": "baseline", "params": "{}",
                                   "state": "COMPLETE", "objective": 0.5, "ended_at": 3.0}])
    return folder


def _truncate_part(folder: Path, table: str) -> None:
    part = next((folder / table).glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:40])


def _garbage_part(folder: Path, table: str) -> None:
    (folder / table / "part-99999999999999999999-garbage.parquet").write_bytes(b"not parquet at all" * 10)


def _study_json(content: object) -> Callable[[Path], None]:
    return lambda folder: (folder / "study.json").write_text(json.dumps(content))


DAMAGE = [
    ("results-truncated", lambda f: _truncate_part(f, "results.parquet"), "damaged part"),
    ("trials-garbage", lambda f: _garbage_part(f, "trials.parquet"), "damaged part"),
    ("study-json-list", _study_json([1, 2]), "not the study's record"),
    ("study-json-conditions", lambda f: _study_json({**json.loads((f / "study.json").read_text()),
                                                    "conditions": "garbage"})(f), "field 'conditions'"),
    ("study-json-empty", _study_json({}), "no recorded spec"),
]
READERS = ["status", "recommend", "report"]


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize(("damage", "expect"), [(d[1], d[2]) for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_a_damaged_study_folder_is_one_line_for_every_reader(
    command: str, damage: Callable[[Path], None], expect: str, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _synthetic_study(short_tmp / "study")
    damage(folder)
    code = main([command, str(folder)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and expect in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("content", [[1, 2], {}, {"spec": {}, "conditions": "garbage"}], ids=["list", "empty", "garbage"])
def test_resume_of_a_damaged_study_json_is_one_line_and_writes_nothing(
    content: object, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (short_tmp / "study.json").write_text(json.dumps(content))
    code = main(["resume", str(short_tmp)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "study.json" in err, err
    assert sorted(p.name for p in short_tmp.iterdir()) == ["study.json"]


def test_recommend_out_in_a_missing_folder_is_one_line(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _synthetic_study(short_tmp / "study")
    code = main(["recommend", str(folder), "--out", str(short_tmp / "missing" / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--out" in err, err
    assert not (short_tmp / "missing").exists()



# -- teachers whose logits are not finite ---------------------------------------------------------------------------

DISTILL = ["distill", "--dataset", "digits", "--teacher", "mlp", "--teacher-epochs", "1", "--student", "mlp",
           "--epochs", "1", "--threads", "1", "--format", "json"]


@pytest.mark.slow
def test_a_diverged_teacher_is_never_cached(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = short_tmp / "cache"
    code = main([*DISTILL, "--teacher-recipe", "{weight_decay: 1.0e30}", "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("kdtune: error: ")]  # after distill's progress bar
    assert code == 1 and len(errors) == 1 and "not finite" in errors[0] and "Traceback" not in err, err
    assert not any(p.is_file() for p in cache.rglob("*.parquet")), list(cache.rglob("*"))


@pytest.mark.slow
def test_cache_verify_finds_logits_that_are_not_finite(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An entry whose bytes are intact (its checksum recomputed) but whose logits are NaN, as a teacher that
    diverged left it before kdtune checked: verify calls it damaged."""
    from types import SimpleNamespace

    import numpy as np
    import pyarrow.parquet as pq
    import torch

    from kdtune.cache.parquet import decode
    from kdtune.cache.parquet import encode

    root = short_tmp / "cache"
    assert main([*DISTILL, "--cache-dir", str(root)]) == 0
    key = json.loads(capsys.readouterr().out)["cache"]["logits_key"]
    path = root / "logits" / key / "train.parquet"
    array, table, meta = decode(path.read_bytes())
    poisoned = np.array(array, copy=True)
    poisoned[:3] = np.nan
    split = SimpleNamespace(**{name: torch.from_numpy(table.column(column).to_numpy().copy())
                               for name, column in (("clean", 2), ("y", 3), ("flipped", 4))})
    path.write_bytes(encode(poisoned, split, meta))  # type: ignore[arg-type]
    assert pq.read_table(path).num_rows == len(array)
    assert main(["cache", "verify", "--cache-dir", str(root)]) == 1
    assert "3 of" in capsys.readouterr().out
