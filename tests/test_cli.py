"""The command line end to end, as a user runs it (a subprocess, real training on digits)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest


def kdtune(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdtune", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def test_help_is_fast_and_imports_no_heavy_modules() -> None:
    code = ("import sys; from kdtune.cli import build_parser; build_parser();"
            "print(sorted(m for m in ('torch', 'ray', 'wandb', 'optuna', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_text = " ".join(kdtune("distill", "--help").stdout.split())
    assert "weight on the true labels" in help_text and "1 = no distillation" in help_text
    assert "--noise" in help_text and "--teacher-select" in help_text


def test_distill_end_to_end_json() -> None:
    result = kdtune("distill", "--dataset", "digits", "--noise", "0.1", "--alpha", "0.5", "--temperature", "4",
                    "--epochs", "6", "--teacher-epochs", "4", "--format", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    teacher, distilled, baseline = out["models"]
    assert teacher["test_accuracy"] > 0.8
    assert distilled["alpha"] == 0.5 and distilled["temperature"] == 4.0 and baseline["alpha"] == 1.0
    for row in (distilled, baseline, out["teacher_diagnostics"]):  # --noise 0.1 flips labels: both rates measured
        correction, memorisation = row["correction_rate"], row["memorisation_rate"]
        assert 0.0 <= correction <= 1.0 and 0.0 <= memorisation <= 1.0 and correction + memorisation <= 1.0
    for row in (distilled, baseline):
        assert 0.5 < row["test_accuracy"] <= 1.0


def test_distill_table_shows_all_three_models() -> None:
    result = kdtune("distill", "--epochs", "2", "--teacher-epochs", "1", "--noise", "0.05")
    assert result.returncode == 0, result.stderr
    for text in ("teacher (reference_teacher)", "student, distilled", "student, no distillation", "corrected",
                 "teacher calibration error (ECE)", "soft-target entropy"):
        assert text in result.stdout
    assert "teacher" in result.stderr  # the progress display


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "cifar"], "--dataset = 'cifar': must be one of digits, mnist"),
    (["--noise", "1.2"], r"--noise = 1.2: must be in [0, 1)"),
    (["--alpha", "1.5"], "--alpha = 1.5: must be in [0, 1]; alpha is the weight on the true labels"),
    (["--alpha", "-0.2"], "--alpha = -0.2"),
    (["--temperature", "0"], "--temperature = 0.0: must be at least 0.01"),
    (["--epochs", "0"], "--epochs = 0: must be a positive integer"),
    (["--teacher-epochs", "-1"], "--teacher-epochs = -1: must be a positive integer"),
    (["--student", "resnet"], "--student = 'resnet': must be one of"),
    (["--teacher", "resnet"], "--teacher = 'resnet': must be one of"),
    (["--noise-type", "x"], "argument --noise-type: invalid choice"),
    (["--epochs", "ten"], "argument --epochs: invalid int value"),
    (["--dataset", "mnist", "--data-root", "/nonexistent-kdtune"], "files missing in /nonexistent-kdtune/MNIST/raw"),
])
def test_bad_input_is_one_line_with_exit_code_2(args: list[str], message: str) -> None:
    extra = ["--epochs", "1"] if "--epochs" not in args else ["--lr", "0.001"]
    result = kdtune("distill", *args, *extra)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback() -> None:
    result = kdtune("distill", "--noise", "2", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "SpecError" in result.stderr


def test_negative_alpha_is_refused_for_classification() -> None:
    """alpha < 0 makes the cross-entropy's mixed target negative (unbounded loss): only the linear task allows it."""
    result = kdtune("distill", "--alpha", "-0.5", "--epochs", "1", "--teacher-epochs", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kdtune: error: --alpha = -0.5: must be in [0, 1]; alpha is the weight on the true labels, 1 = no distillation "
        "(alpha < 0 is only for the linear regression task)"]


@pytest.mark.parametrize("command", ["status", "recommend", "report", "resume", "export"])
def test_a_missing_study_folder_is_exit_2_in_every_command(command: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    extra = ["--out", str(tmp_path / "out")] if command == "export" else []
    result = kdtune(command, str(tmp_path / "nope"), *extra)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"kdtune: error: {tmp_path / 'nope'}: no such study folder"


LOG_SPEC = """
name: logged
dataset: {name: digits, val_fraction: 0.2}
teacher: {arch: mlp, epochs: 3, kwargs: {widths: [64]}, lr: 0.003}
student: {arch: mlp, epochs: 2, kwargs: {widths: [16]}, lr: 0.003}
conditions: {noise_level: [0.1]}
budget: {trials_per_condition: 1, repeats: 2, confirm_top_k: 0}
scheduler: {type: fifo}
tracking: {wandb: {mode: offline, project: kdtune-tests}}
"""


def test_run_into_a_log_prints_the_plan_one_line_per_trial_and_the_answer(short_tmp) -> None:  # type: ignore[no-untyped-def]
    """Output to a pipe, as `kdtune run spec > log`: plain lines, each with its time and at most 120 characters, no
    library noise; the plan, each teacher started and ready (with its validation accuracy), each trial, the answer."""
    from kdtune.records.results import read_trials

    spec = short_tmp / "logged.yaml"
    spec.write_text(LOG_SPEC)
    (short_tmp / "ray").mkdir()
    study = short_tmp / "logged"
    result = subprocess.run([sys.executable, "-m", "kdtune", "run", str(spec), "--out", str(study)],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "RAY_TMPDIR": str(short_tmp / "ray")})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")
    assert all(stamp.match(line) for line in lines), [line for line in lines if not stamp.match(line)][:3]
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)
    times = [stamp.match(line).group(1) for line in lines]  # type: ignore[union-attr]
    assert times == sorted(times)
    out = [line[20:] for line in lines]
    assert out[0] == f"study folder: {study.absolute()}"  # absolute, so that `kdtune resume` works from anywhere
    assert out[1].startswith("plan: wall time: about ")
    teacher = json.loads((study / "teachers.json").read_text())["all"]
    started = out.index("teacher all: started (read from the cache if it is there, else trained)")
    epoch = teacher["selected_epoch"]  # trained here, or by an earlier test of the session with this teacher
    how = f"(trained 3 epochs, kept epoch {epoch}|read from the cache \\(epoch {epoch} kept\\))"
    ready = next(i for i, line in enumerate(out) if re.match(f"teacher all: {how}, val_accuracy 0\\.", line))
    assert started < ready < next(i for i, line in enumerate(out) if line.startswith("trial ended: "))
    shown = float(out[ready].split("val_accuracy ")[1].split(",")[0])
    assert shown == pytest.approx(teacher["curve"][teacher["selected_epoch"] - 1]["val_accuracy"], abs=5e-5)
    ended = read_trials(study).to_pylist()
    trial_lines = [line for line in out if line.startswith("trial ended: all alpha=")]  # one condition: "all"
    assert len(trial_lines) == len(ended) == 3  # one searched + the two baselines
    assert sum("(baseline): COMPLETE, val_accuracy 0." in line for line in trial_lines) == 2
    assert any(line.startswith("progress: finished: 3 trials (3 complete, 0 pruned, 0 failed) in ") for line in out)
    assert "recommendation per condition" in result.stdout
    assert (study / "recommendation.json").exists()
    assert f"written to {study / 'recommendation.json'}" in " ".join(" ".join(line.split()) for line in out)
    for noise in ("Token authentication", "performance bottleneck", "wandb:"):
        assert noise not in result.stdout + result.stderr
