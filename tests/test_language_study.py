"""Language-model studies end to end: a tiny corpus written here, the byte tokenizer, tiny models, real local Ray,
real Optuna storage, real Parquet; ``kdtune run`` then ``kdtune recommend``. "Lower is better" is checked where
each part decides: Optuna's direction, ASHA's mode, each run's best epoch, the recommended configuration and the
gain's sign. Bad input is refused through the CLI in one line, exit code 2, nothing written.

alpha is the weight on the true next tokens: alpha = 1 means no distillation.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from kdtune.cli import main
from kdtune.records.folder import StudyFolder
from kdtune.records.optuna_storage import make_storage
from kdtune.records.results import read_results
from kdtune.spec.schema import parse_spec
from kdtune.tasks import TASKS
from kdtune.tasks import task_for


pytestmark = pytest.mark.slow


def _corpus(path: Path) -> Path:
    """About 12 KB of English prose, 30 documents separated by blank lines."""
    from pydoc_data.topics import topics

    docs = [" ".join(topics[name][:400].split()) for name in sorted(topics)[:30]]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def _spec(corpus: Path, name: str, **sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": name,
        "dataset": {"name": "text", "corpus": str(corpus), "tokenizer": "byte", "context": 16, "val_fraction": 0.2,
                    "test_fraction": 0.2, "seed": 0},
        "teacher": {"arch": "transformer", "kwargs": {"n_layers": 2, "d_model": 48, "n_heads": 2}, "epochs": 3,
                    "lr": 3e-3, "batch_size": 16},
        "student": {"arch": "transformer", "kwargs": {"n_layers": 1, "d_model": 16, "n_heads": 2}, "epochs": 2,
                    "lr": 3e-3, "batch_size": 16},
        "search": {"alpha": {"type": "float", "low": 0.0, "high": 1.0},
                   "temperature": {"type": "categorical", "choices": [1.0, 2.0]}},
        "default_temperature": 1.0,
        "budget": {"trials_per_condition": 3, "repeats": 2, "confirm_top_k": 1, "confirm_repeats": 2,
                   "confirm_max_repeats": 2, "confirm_failure_rate": 0},
        "scheduler": {"type": "asha", "grace_period": 1},
        "resources": {"cpu": 1},
        "tracking": "none",
    }
    raw.update(sections)
    return raw


def _write(raw: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_tiny_language_study_runs_end_to_end_lower_is_better(ray_local: None, short_tmp: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    corpus = _corpus(short_tmp / "corpus.txt")
    raw = _spec(corpus, "lm-tiny")
    spec_path = _write(raw, short_tmp / "lm.yaml")
    out = short_tmp / "study"
    assert main(["run", str(spec_path), "--out", str(out), "--no-progress"]) == 0
    assert main(["recommend", str(out)]) == 0
    capsys.readouterr()
    spec = parse_spec(raw)
    assert task_for(spec) is TASKS["language"]

    # Optuna minimises, ASHA stops on the minimum
    from kdtune.study.driver import _scheduler

    assert _scheduler(spec)._kwargs["mode"] == "min"
    storage = make_storage(f"sqlite:///{out / 'optuna.db'}")
    summaries = [s for s in optuna.get_all_study_summaries(storage)
                 if s.study_name.startswith(StudyFolder(out).optuna_prefix())]
    assert summaries and all(s.direction == optuna.study.StudyDirection.MINIMIZE for s in summaries)

    # each run is scored at its lowest validation loss (the earliest on ties), and its test loss is that epoch's
    rows = read_results(out).to_pylist()
    assert rows and all(r["divergence"] == "forward_kl" and r["val_perplexity"] == pytest.approx(math.exp(r["val_loss"]))
                        for r in rows)
    from kdtune.analysis.scoring import score_runs

    by_run: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_run[(r["trial_id"], r["seed"])].append(r)
    scored = {(s.trial_id, s.seed): s for s in score_runs(rows, spec.task.objective(None))}
    for key, run in by_run.items():
        lowest = min(run, key=lambda r: (r["val_loss"], r["epoch"]))
        assert scored[key].objective == lowest["val_loss"]
        assert scored[key].test == lowest["test_loss"]

    # the teacher is recorded with its losses and perplexity; it is ahead of the students alone
    teachers = json.loads((out / "teachers.json").read_text())
    (teacher,) = teachers.values()
    diagnostics = teacher["diagnostics"]
    assert diagnostics["test_perplexity"] == pytest.approx(math.exp(diagnostics["test_loss"]))
    assert teacher["targets"]["layout"] == "dense"

    report = json.loads((out / "recommendation.json").read_text())
    assert report["mode"] == "min" and report["test_metric"] == "test_loss" and report["objective"] == "val_loss"
    (condition,) = report["conditions"]
    assert condition["verdict"]["kind"] in ("distil", "no_gain", "hurts", "inconclusive")
    assert "nats/token" in condition["verdict"]["text"]
    # the best observed configuration has the lowest mean validation loss of the search
    means: dict[str, list[float]] = defaultdict(list)
    for s in scored.values():
        if s.phase in ("search", "baseline") and s.state == "COMPLETE":
            means[json.dumps([s.alpha, s.temperature])].append(s.objective)
    lowest = min(sum(v) / len(v) for v in means.values())
    assert condition["best_observed"]["validation"]["mean"] == pytest.approx(lowest)
    # a gain is the no-distillation student's test loss minus the distilled one's (positive: distillation helps)
    gain = condition["gain"]
    confirmed = {(s.alpha, s.temperature, s.seed): s.test for s in scored.values() if s.phase == "confirm"}
    chosen = condition["confirmed"]["params"]
    no_kd = {seed: test for (a, _, seed), test in confirmed.items() if a == 1.0}
    pairs = [no_kd[seed] - test for (a, t, seed), test in confirmed.items()
             if a == chosen["alpha"] and t == chosen["temperature"]]
    assert gain["mean"] == pytest.approx(sum(pairs) / len(pairs))


def test_a_rerun_trains_no_teacher_again(short_tmp: Path) -> None:
    """The blocks, the teacher and its targets are cached: a second preparation trains and computes nothing."""
    from kdtune.spec.conditions import expand

    corpus = _corpus(short_tmp / "corpus.txt")
    spec = parse_spec(_spec(corpus, "lm-cache", cache={"top_k": 8}))
    task = task_for(spec)
    (condition,) = expand(spec)
    epochs: list[int] = []
    first, payload = task.prepare(spec, condition, cache_dir=str(short_tmp / "cache"), on_epoch=epochs.append)
    second, again = task.prepare(spec, condition, cache_dir=str(short_tmp / "cache"), on_epoch=epochs.append)
    assert epochs == [1, 2, 3]  # trained once
    assert first["trained"] and not second["trained"] and second["cache_hit"]
    assert payload == again and all(isinstance(v, (str, int, dict, type(None))) for v in payload.values())
    assert first["targets"]["layout"] == "topk" and first["targets"]["k"] == 8


def test_a_hugging_face_gpt2_from_a_config_runs_a_study(ray_local: None, short_tmp: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    corpus = _corpus(short_tmp / "corpus.txt")
    gpt2 = {"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2}
    raw = _spec(corpus, "lm-gpt2",
                teacher={"arch": "hf-config", "kwargs": {**gpt2, "n_layer": 2, "n_embd": 32}, "epochs": 2, "lr": 3e-3,
                         "batch_size": 16},
                student={"arch": "hf-config", "kwargs": gpt2, "epochs": 1, "lr": 3e-3, "batch_size": 16},
                budget={"trials_per_condition": 2, "repeats": 2, "confirm_top_k": 0},
                scheduler={"type": "fifo"})
    out = short_tmp / "study"
    assert main(["run", str(_write(raw, short_tmp / "gpt2.yaml")), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    rows = read_results(out).to_pylist()
    assert {r["alpha"] for r in rows} >= {0.0, 1.0}
    assert all(math.isfinite(r["val_loss"]) and math.isfinite(r["test_loss"]) for r in rows)


def test_two_teacher_sizes_are_two_teacher_cache_entries(short_tmp: Path) -> None:
    """A teacher size's kwargs are part of the teacher's cache key: two sizes, two teachers, each trained once."""
    from kdtune.spec.conditions import expand

    corpus = _corpus(short_tmp / "corpus.txt")
    raw = _spec(corpus, "lm-teacher-sizes", conditions={"teacher_size": {"d16": {"d_model": 16}, "d48": {}}})
    raw["teacher"] = {**raw["teacher"], "epochs": 1}
    spec = parse_spec(raw)
    task = task_for(spec)
    small, large = expand(spec)
    assert (small.key, large.key) == ("teacher_size=d16", "teacher_size=d48")
    cache = str(short_tmp / "cache")
    infos = [task.prepare(spec, c, cache_dir=cache, on_epoch=lambda _: None)[0] for c in (small, large)]
    assert infos[0]["teacher_key"] != infos[1]["teacher_key"] and all(info["trained"] for info in infos)
    assert sorted(p.name for p in (short_tmp / "cache" / "lm" / "teachers").iterdir()) == sorted(
        info["teacher_key"] for info in infos)
    teachers = [info["models"]["teacher"] for info in infos]
    assert [t["kwargs"]["d_model"] for t in teachers] == [16, 48] and teachers[0]["parameters"] < teachers[1]["parameters"]
    again, _ = task.prepare(spec, small, cache_dir=cache, on_epoch=lambda _: None)
    assert again["teacher_key"] == infos[0]["teacher_key"] and not again["trained"]


def test_a_study_compares_student_sizes_reading_the_conditions_k(ray_local: None, short_tmp: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Two student sizes (conditions.student_size) over one teacher, each run reading the top-4 of a top-8 cache
    (conditions.top_k, one value: in no key). Every trial trains its condition's size and reads its k."""
    import torch

    corpus = _corpus(short_tmp / "corpus.txt")
    raw = _spec(corpus, "lm-student-sizes", cache={"top_k": 8},
                conditions={"student_size": {"d8": {"d_model": 8}, "d16": {}}, "top_k": [4]},
                budget={"trials_per_condition": 1, "repeats": 1, "confirm_top_k": 0}, scheduler={"type": "fifo"})
    raw["student"] = {**raw["student"], "epochs": 1}
    raw["teacher"] = {**raw["teacher"], "epochs": 1}
    out = short_tmp / "study"
    assert main(["run", str(_write(raw, short_tmp / "sizes.yaml")), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    rows = read_results(out).to_pylist()
    size_of = {r["trial_id"]: r["student_size"] for r in rows}
    assert {r["condition"]: r["student_size"] for r in rows} == {"student_size=d8": "d8", "student_size=d16": "d16"}
    assert {r["top_k"] for r in rows} == {4}
    # what each condition's models were built as (teachers.json): one teacher, two student sizes
    teachers = json.loads((out / "teachers.json").read_text())
    students = {key: info["models"]["student"] for key, info in teachers.items()}
    assert students["student_size=d8"]["kwargs"] == {"n_layers": 1, "d_model": 8, "n_heads": 2}
    assert students["student_size=d16"]["kwargs"]["d_model"] == 16
    assert students["student_size=d8"]["parameters"] < students["student_size=d16"]["parameters"]
    assert len({info["teacher_key"] for info in teachers.values()}) == 1
    # every trial's checkpointed students have its condition's width and read k = 4
    checkpoints = list(out.rglob("students.pt"))
    assert {p.parent.parent.name for p in checkpoints} == set(size_of)
    for path in checkpoints:
        (student,) = torch.load(path, weights_only=False)["students"]
        width = {"d8": 8, "d16": 16}[size_of[path.parent.parent.name]]
        assert student["model"]["embed.weight"].shape[1] == width and student["config"]["top_k"] == 4
    described = {c["key"]: c["description"] for c in json.loads((out / "recommendation.json").read_text())["conditions"]}
    assert "(size d8)" in described["student_size=d8"] and "top-4 teacher targets" in described["student_size=d8"]


# ------------------------------------------------------------------------------------------------- bad input

def _bad(corpus: Path, tmp: Path) -> dict[str, tuple[dict[str, Any], str]]:
    empty = tmp / "empty.txt"
    empty.write_text("  \n\n \n")
    binary = tmp / "binary.txt"
    binary.write_bytes(b"text\x00\x01\x02 more")
    latin = tmp / "latin1.txt"
    latin.write_bytes("caf\u00e9 au lait\n\nsecond".encode("latin-1"))
    gpt2 = {"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2}
    teacher = {"arch": "transformer", "kwargs": {"n_layers": 1, "d_model": 16, "n_heads": 2}}
    return {
        "unknown tokenizer": ({"dataset": {"name": "text", "corpus": str(corpus), "tokenizer": "wordpiece"}},
                              "dataset.tokenizer = 'wordpiece'"),
        "missing hf tokenizer": ({"dataset": {"name": "text", "corpus": str(corpus), "tokenizer": str(tmp / "no.json")}},
                                 "dataset.tokenizer = "),
        "mismatched vocabularies": ({"teacher": teacher, "student": {"arch": "hf-config", "kwargs": {**gpt2,
                                                                                                     "vocab_size": 300}}},
                                    "student.arch.vocab_size = 300"),
        "k above the vocabulary": ({"cache": {"top_k": 300}}, "cache.top_k = 300"),
        "context longer than the model's": ({"teacher": teacher, "student": {"arch": "hf-config",
                                                                             "kwargs": {**gpt2, "n_positions": 8}}},
                                            "dataset.context = 16"),
        "empty corpus": ({"dataset": {"name": "text", "corpus": str(empty)}}, "dataset.corpus = "),
        "binary corpus": ({"dataset": {"name": "text", "corpus": str(binary)}}, "binary file"),
        "non-UTF-8 corpus": ({"dataset": {"name": "text", "corpus": str(latin)}}, "is not UTF-8 text"),
        "augment on text": ({"student": {"arch": "transformer", "augment": {"shift": 2}}}, "student.augment = "),
        "unknown model": ({"student": {"arch": "lstm"}}, "student.arch = 'lstm'"),
        "a size that does not build": ({"conditions": {"student_size": {"d16": {}, "d31": {"d_model": 31}}}},
                                       "conditions.student_size.d31.n_heads = 2: must divide d_model (31)"),
    }


CASES = ["unknown tokenizer", "missing hf tokenizer", "mismatched vocabularies", "k above the vocabulary",
         "context longer than the model's", "empty corpus", "binary corpus", "non-UTF-8 corpus", "augment on text",
         "unknown model", "a size that does not build"]


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdtune", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def _refused_in_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", CASES)
def test_bad_language_input_is_one_line_exit_2_nothing_written(short_tmp: Path, case: str) -> None:
    corpus = _corpus(short_tmp / "corpus.txt")
    changes, expected = _bad(corpus, short_tmp)[case]
    raw = _spec(corpus, "lm-bad")
    for section, value in changes.items():
        raw[section] = {**raw[section], **value} if section in ("dataset", "student") else value
    spec_path = _write(raw, short_tmp / "bad.yaml")
    cache = short_tmp / "cache"
    result = _cli(["run", str(spec_path), "--out", str(short_tmp / "study")], {"KDTUNE_CACHE_DIR": str(cache)})
    _refused_in_one_line(result, expected)
    assert not (short_tmp / "study").exists() and not cache.exists()


def test_hf_models_without_the_extra_are_one_line(short_tmp: Path) -> None:
    """Without transformers installed (an import that fails, as it does then), hf: models are refused."""
    blocker = short_tmp / "blocker" / "transformers"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named transformers')\n")
    corpus = _corpus(short_tmp / "corpus.txt")
    raw = _spec(corpus, "lm-no-extra", student={"arch": "hf:gpt2"})
    result = _cli(["run", str(_write(raw, short_tmp / "hf.yaml")), "--out", str(short_tmp / "study")],
                  {"PYTHONPATH": str(blocker.parent), "KDTUNE_CACHE_DIR": str(short_tmp / "cache")})
    _refused_in_one_line(result, "pip install 'kdtune[lm]'")
    assert not (short_tmp / "study").exists()


def test_plan_prints_the_token_cache_and_refuses_above_max_bytes(short_tmp: Path) -> None:
    corpus = _corpus(short_tmp / "corpus.txt")
    spec_path = _write(_spec(corpus, "lm-plan", cache={"top_k": 8}), short_tmp / "plan.yaml")
    env = {"KDTUNE_CACHE_DIR": str(short_tmp / "cache")}
    result = _cli(["plan", str(spec_path)], env)
    assert result.returncode == 0, result.stderr
    assert "token cache all:" in result.stdout and "top 8 of 257 ids" in result.stdout
    refused = _cli(["plan", str(spec_path), "--set", "cache.max_bytes=1000"], env)
    _refused_in_one_line(refused, "cache.max_bytes = 1000")
    assert not (short_tmp / "cache").exists()


def test_a_language_study_searched_cheap_checks_transfer(ray_local: None, short_tmp: Path) -> None:
    """A language study searched with fewer epochs and a smaller student (fidelity.epochs, fidelity.student): the
    cheap search trains 1 epoch of the smaller transformer, the transfer check and confirmation 2 epochs of the
    spec's student, and the recommendation judges transfer on validation loss (lower is better) in its own units."""
    from kdtune.analysis.recommendation import recommend
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study

    corpus = _corpus(short_tmp / "corpus.txt")
    raw = _spec(corpus, "lm-cheap", fidelity={"epochs": 1, "student": "transformer", "transfer_top": 2,
                                              "student_kwargs": {"n_layers": 1, "d_model": 8, "n_heads": 2}})
    out = run_study(parse_spec(raw), RunOptions(out=short_tmp / "study", progress=False))
    rows = read_results(out).to_pylist()
    longest = {p: max(r["epoch"] for r in rows if r["phase"] == p) for p in {r["phase"] for r in rows}}
    assert longest == {"search": 1, "baseline": 1, "transfer": 2, "confirm": 2}, longest
    (condition,) = recommend([out])["conditions"]
    transfer = condition["transfer"]
    assert transfer is not None and transfer["seeds"]["full"] == 2
    # the best 2 distilled configurations (alpha = 0 may be one of them) with both baselines
    alphas = [c["params"]["alpha"] for c in transfer["configurations"]]
    assert len(alphas) in (3, 4) and 1.0 in alphas and 0.0 in alphas, alphas
    assert all(c["regret"]["value"] >= 0 for c in transfer["configurations"])  # behind the best: a higher loss
    assert "points" not in transfer["text"] and "at full fidelity by " in transfer["text"]
    assert transfer["text"].endswith("of validation loss (nats/token); 95% bootstrap intervals)")
    assert condition["fidelity"]["student"] == "transformer" and "student transformer" in condition["verdict"]["text"]
