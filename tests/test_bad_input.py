"""Malformed specs and options, as a careless or hostile user writes them: each is refused with exit code 2, one
line per mistake, no traceback, and nothing written (no study folder, no cache entry).

The CLI runs in this process (``kdtune.cli.main``) so that the table stays fast; the two cases that are found
once Ray runs use the session's Ray. That a Ray kdtune starts itself is stopped again after such a refusal is
checked in a process of its own (``test_a_refusal_after_ray_started_stops_ray``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kdtune.cli import main


TINY = {
    "name": "tiny",
    "dataset": {"name": "digits", "val_fraction": 0.2},
    "teacher": {"arch": "mlp", "epochs": 1, "kwargs": {"widths": [16]}},
    "student": {"arch": "mlp", "epochs": 1, "kwargs": {"widths": [8]}},
    "budget": {"trials_per_condition": 1, "repeats": 1},
    "scheduler": {"type": "fifo"},
    "tracking": "none",
}


@dataclass(frozen=True)
class Case:
    """``argv(folder)`` is the command line; the files it names are made by ``setup(folder)``."""

    id: str
    argv: Callable[[Path], list[str]]
    mistakes: int = 1
    expect: str = ""  # a piece of the message
    setup: Callable[[Path], None] | None = None
    ray: bool = False  # needs the session's Ray (the check runs against the cluster)


def spec_file(folder: Path, **changes: object) -> str:
    """TINY with top-level sections replaced, written as YAML to ``folder/spec.yaml``; returns the path."""
    raw = {**TINY, **changes}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in raw.items() if v is not None}, sort_keys=False))
    return str(path)


def run(*extra: str, **changes: object) -> Callable[[Path], list[str]]:
    return lambda folder: ["run", spec_file(folder, **changes), "--no-progress", *extra]


def run_text(text: str, *extra: str) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        (folder / "spec.yaml").write_text(text)
        return ["run", str(folder / "spec.yaml"), "--no-progress", *extra]

    return argv


def with_(section: str, **fields: object) -> dict[str, object]:
    base = TINY.get(section)
    return {section: {**(base if isinstance(base, dict) else {}), **fields}}


NAN, INF = float("nan"), float("inf")
ALPHA = {"type": "float", "low": 0.0, "high": 1.0}


def _file(folder: Path) -> None:
    (folder / "afile").write_text("not a folder\n")


def _module(name: str, source: str) -> Callable[[Path], None]:
    """A user's module ``name`` in the case's folder, importable from there (its folder goes on ``sys.path``)."""

    def setup(folder: Path) -> None:
        import sys

        (folder / f"{name}.py").write_text(source)
        sys.path.insert(0, str(folder))

    return setup


def _npz(name: str, content: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda folder: content(folder / name)


def _huge_header(path: Path) -> None:
    """An .npz whose arrays' headers claim 29 TiB (32e12 bytes) and hold none of it."""
    import struct
    import zipfile

    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (8000000000000,), }"
    header += " " * (118 - len(header)) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy)
        z.writestr("y.npy", npy)


def _files_run(name: str, *extra: str) -> Callable[[Path], list[str]]:
    return run(*extra, dataset={"name": "mine", "files": [name], "val_fraction": 0.2})


CASES = [
    # -- NaN and infinity, everywhere --------------------------------------------------------------------
    Case("alpha-nan", run(search={"alpha": {"type": "float", "low": NAN, "high": NAN}}), 2, "finite"),
    Case("default-temperature-inf", run(default_temperature=INF), 1, "default_temperature = inf"),
    Case("temperature-high-inf", run(search={"alpha": ALPHA, "temperature": {"type": "float", "low": 1, "high": INF}}),
         1, "search.temperature.high"),
    Case("student-lr-inf", run(**with_("student", lr=INF)), 1, "student.lr = inf"),
    Case("teacher-lr-minus-inf", run(**with_("teacher", lr=-INF)), 1, "teacher.lr"),
    Case("resources-cpu-inf", run(resources={"cpu": INF}), 1, "resources.cpu = inf"),
    Case("negative-alpha-minus-inf", run(allow_negative_alpha=True,
                                         search={"alpha": {"type": "float", "low": -INF, "high": 1}}), 1, "finite"),
    Case("noise-level-nan", run(conditions={"noise_level": [0.0, NAN]}), 1, "conditions.noise_level[1]"),
    Case("val-fraction-nan", run(**with_("dataset", val_fraction=NAN)), 1, "dataset.val_fraction"),
    Case("max-wall-minutes-inf", run(budget={"max_wall_minutes": INF}), 1, "budget.max_wall_minutes"),
    Case("reduction-factor-nan", run(scheduler={"type": "asha", "reduction_factor": NAN}), 1, "reduction_factor"),
    Case("categorical-choice-nan", run(search={"alpha": ALPHA, "lr": {"type": "categorical", "choices": [0.1, NAN]}}),
         1, "search.lr.choices[1]"),
    Case("set-nan", run("--set", "budget.repeats=.nan"), 1, "budget.repeats"),
    Case("set-inf-temperature", run("--set", "default_temperature=-.inf"), 1, "default_temperature"),
    # -- booleans are not numbers ---------------------------------------------------------------------------
    Case("epochs-true", run(**with_("student", epochs=True)), 1, "student.epochs = True"),
    Case("repeats-false", run(budget={"repeats": False}), 1, "budget.repeats"),
    Case("confirmation-too-short-for-a-verdict", run(budget={"confirm_repeats": 8, "confirm_max_repeats": 16}), 1,
         "budget.confirm_max_repeats = 16: must be at least 29: a distil or hurts verdict rests on 29 paired seeds"),
    Case("confirm-failure-rate-above-a-half", run(budget={"confirm_failure_rate": 0.9}), 1,
         "budget.confirm_failure_rate"),
    Case("noise-level-true", run(conditions={"noise_level": [True]}), 1, "not numbers"),
    Case("set-epochs-true", run("--set", "teacher.epochs=true"), 1, "teacher.epochs"),
    # -- several mistakes: one line each ------------------------------------------------------------------
    Case("three-mistakes", run(**with_("student", epochs=0, lr=-1.0), resources={"cpu": NAN}), 3),
    Case("unknown-keys-and-nan", run(colour="red", default_temperature=NAN), 2),
    # -- odd files and sizes ------------------------------------------------------------------------------
    Case("huge-grid", run(sampler="grid", search={"alpha": {**ALPHA, "step": 1e-9}}), 1, "at most 10,000"),
    Case("overflowing-grid", run(sampler="grid", search={"alpha": {**ALPHA, "step": 1e-320}}), 1, "too small"),
    Case("grid-product", run(sampler="grid", search={"alpha": {**ALPHA, "step": 0.001},
                                                     "temperature": {"type": "float", "low": 1, "high": 20,
                                                                     "step": 0.001}}), 1, "configurations"),
    Case("big-file", run_text("name: big\nnote: '" + "a" * 1_100_000 + "'\n"), 1, "larger than 1,000,000"),
    Case("folder", lambda folder: ["run", str(folder), "--no-progress"], 1, "is a folder"),
    Case("binary", lambda folder: ["run", str(folder / "b.yaml"), "--no-progress"], 1, "binary",
         lambda folder: (folder / "b.yaml").write_bytes(bytes(range(256)) * 8) and None),
    Case("alias-bomb", run_text("name: bomb\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, "
                                "*a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, "
                                "*c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, "
                                "*e, *e, *e, *e, *e]\n"), 1, "expands"),
    Case("deep-nesting", run_text("name: deep\nx: " + "[" * 3000 + "]" * 3000 + "\n"), 1, "deep"),
    Case("long-value", run(name="n" * 5000), 1, "more characters"),
    Case("long-data-root", run(**with_("dataset", name="mnist", data_root="/r" * 100_000)), 1, "more characters"),
    Case("not-found", lambda folder: ["run", str(folder / "missing.yaml"), "--no-progress"], 1, "file not found"),
    # -- found before Ray starts now (were found after) ------------------------------------------------------
    Case("mnist-root-missing", run(**with_("dataset", name="mnist", data_root="/nonexistent-kdtune")), 1,
         "files missing"),
    Case("teacher-kwargs", run(**with_("teacher", kwargs={"widths": [16], "depth": 3})), 1, "teacher.arch"),
    Case("not-a-model-factory", run(**with_("student", arch="kd_fixtures:blobs", kwargs={})), 1, "student.arch"),
    Case("not-callable", run(**with_("student", arch="os.path:sep", kwargs={})), 1, "student.arch"),
    Case("no-such-module", run(**with_("student", arch="no_such_pkg.models:net", kwargs={})), 1, "does not import"),
    Case("checkpoint-missing", run(**with_("teacher", checkpoint="missing.safetensors")), 1, "teacher.checkpoint"),
    Case("data-file-missing", run(dataset={"files": ["missing.npz"]}), 1, "dataset.files[0]"),
    Case("out-is-a-file", lambda f: run("--out", str(f / "afile"))(f), 1, "--out", _file),
    Case("out-under-a-file", lambda f: run("--out", str(f / "afile" / "study"))(f), 1, "--out", _file),
    Case("cache-dir-is-a-file", lambda f: run("--cache-dir", str(f / "afile"))(f), 1, "--cache-dir", _file),
    Case("tune-storage-is-a-file", lambda f: run("--tune-storage", str(f / "afile"))(f), 1, "--tune-storage", _file),
    Case("cache-uri-unknown-scheme", run("--cache-dir", "nosuchfs://bucket/prefix"), 1, "--cache-dir"),
    Case("cache-uri-dead-endpoint", run("--cache-dir", "s3://bucket/p?endpoint_override=127.0.0.1:9&scheme=http"
                                        "&region=us-east-1&access_key=k&secret_key=PLANTED-SECRET-1"), 1, "--cache-dir"),
    Case("cache-uri-foreign-secret", run("--cache-dir", "gs://bucket/p?token=PLANTED-SECRET-2"), 1, "credentials"),
    Case("storage-dead-server", run("--storage", "postgresql+psycopg://u:PLANTED-SECRET-3@127.0.0.1:9/db"), 1,
         "--storage"),
    Case("storage-not-a-url", run("--storage", "not a database"), 1, "--storage"),
    Case("set-malformed", run("--set", "budget.repeats"), 1, "--set"),
    Case("max-concurrent-zero", run("--max-concurrent", "0"), 1, "--max-concurrent"),
    # -- found once Ray runs, still before the study folder exists ----------------------------------------------
    Case("cpu-beyond-the-machine", run(resources={"cpu": 4096}), 1, "resources.cpu = 4096", ray=True),
    # -- found in a Ray task after the study folder was created: the folder is removed again --------------------
    Case("imported-logits-missing", run(**with_("teacher", logits="0" * 32)), 1, "teacher.logits", ray=True),
    # -- a user's module that raises, has a SyntaxError or exits at import, or a factory that exits -------------
    Case("module-raises-at-import", run(**with_("student", arch="raises_at_import:net", kwargs={})), 1,
         "RuntimeError at import", _module("raises_at_import", "raise RuntimeError('boom')\n")),
    Case("module-syntax-error", run(**with_("student", arch="syntax_error_module:net", kwargs={})), 1,
         "SyntaxError", _module("syntax_error_module", "def net(:\n")),
    Case("module-exits-at-import", run(**with_("student", arch="exits_at_import:net", kwargs={})), 1,
         "SystemExit at import", _module("exits_at_import", "import sys\nsys.exit(0)\n")),
    Case("factory-exits", run(**with_("student", arch="factory_exits:net", kwargs={})), 1, "SystemExit",
         _module("factory_exits", "def net(input_shape, num_classes):\n    raise SystemExit(3)\n")),
    Case("loader-raises-at-import", run(dataset={"name": "loader_raises_at_import:load"}), 1, "RuntimeError",
         _module("loader_raises_at_import", "raise RuntimeError('boom')\n")),
    # -- hostile .npz files ------------------------------------------------------------------------------------
    Case("npz-huge-header", _files_run("huge.npz"), 1, "claims shape", _npz("huge.npz", _huge_header)),
    Case("npz-text", _files_run("text.npz"), 1, "not an .npz file",
         _npz("text.npz", lambda p: p.write_text("hello\n") and None)),
    Case("npz-truncated", _files_run("cut.npz"), 1, "not a readable .npz file",
         _npz("cut.npz", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(20)) and None)),
    Case("npz-fifo", _files_run("fifo.npz"), 1, "not a regular file", _npz("fifo.npz", lambda p: os.mkfifo(p))),
    # -- seeds, ensembles, temperatures ------------------------------------------------------------------------
    Case("teacher-seed-2-64", run(**with_("teacher", seed=2**64)), 1, "teacher.seed"),
    Case("data-seed-negative", run(**with_("dataset", seed=-1)), 1, "dataset.seed"),
    Case("ensemble-1e20", run(**with_("teacher", ensemble=10**20)), 1, "teacher.ensemble"),
    Case("ensemble-too-many", run(**with_("teacher", ensemble=65)), 1, "teacher.ensemble"),
    Case("default-temperature-tiny", run(default_temperature=1e-300), 1, "default_temperature"),
    Case("temperature-low-tiny", run(search={"alpha": ALPHA, "temperature": {"type": "float", "low": 1e-300,
                                                                             "high": 2}}), 1, "search.temperature.low"),
    # -- several mistakes, one of them found by a validator of kdtune's own: all of them reported ---------------
    Case("custom-validators-keep-the-rest", run(**with_("teacher", ensemble=0, logits="xyz"),
                                                **with_("student", epochs=0)), 3),
    # -- a cheap search (fidelity) ------------------------------------------------------------------------------
    Case("fidelity-fraction-zero", run(fidelity={"data_fraction": 0}), 1, "fidelity.data_fraction"),
    Case("fidelity-fraction-above-one", run(fidelity={"data_fraction": 1.5}), 1, "fidelity.data_fraction"),
    Case("fidelity-fraction-nan", run(fidelity={"data_fraction": NAN}), 1, "fidelity.data_fraction"),
    Case("fidelity-epochs-above-full", run(fidelity={"epochs": 3}), 1, "at most student.epochs (1)"),
    Case("fidelity-top-above-configurations", run(fidelity={"data_fraction": 0.5, "transfer_top": 2}), 1,
         "fidelity.transfer_top"),
    Case("fidelity-width-without-width",
         run(**with_("student", arch="linear"), fidelity={"width_factor": 0.5, "transfer_top": 1}), 1, "has no width"),
    Case("fidelity-cheapens-nothing", run(fidelity={"data_fraction": 1.0}), 1, "cheapens nothing"),
    Case("fidelity-student-unknown", run(fidelity={"student": "no_such_net", "transfer_top": 1}), 1, "fidelity.student"),
    # -- other commands ---------------------------------------------------------------------------------------
    Case("distill-alpha-nan", lambda f: ["distill", "--alpha", "nan"], 1, "--alpha"),
    Case("distill-lr-inf", lambda f: ["distill", "--lr", "inf"], 1, "--lr"),
    Case("distill-temperature-inf", lambda f: ["distill", "--temperature", "inf"], 1, "--temperature"),
    Case("distill-threads-negative", lambda f: ["distill", "--threads", "-1"], 1, "--threads"),
    Case("distill-noise-nan", lambda f: ["distill", "--noise", "nan"], 1, "--noise"),
    Case("distill-cache-is-a-file", lambda f: ["distill", "--epochs", "1", "--cache-dir", str(f / "afile")], 1,
         "--cache-dir", _file),
    Case("cache-ls-file", lambda f: ["cache", "ls", "--cache-dir", str(f / "afile")], 1, "--cache-dir", _file),
    Case("cache-prune-nan", lambda f: ["cache", "prune", "--older-than", "nan"], 1, "--older-than"),
    Case("plan-nan", lambda f: ["plan", spec_file(f, default_temperature=NAN)], 1, "finite"),
    Case("distill-shift-abc", lambda f: ["distill", "--student-augment", "{shift: abc}"], 1, "--student-augment shift"),
    Case("distill-shift-inf", lambda f: ["distill", "--student-augment", "{shift: .inf}"], 1, "--student-augment shift"),
    Case("distill-shift-fraction", lambda f: ["distill", "--student-augment", "{shift: 1.5}"], 1, "fractional"),
    Case("distill-shift-beyond-the-image", lambda f: ["distill", "--student-augment", "{shift: 1000}"], 1,
         "images' side"),
    Case("distill-ensemble-two", lambda f: ["distill", "--teacher-recipe", "{ensemble: two}"], 1,
         "--teacher-recipe ensemble"),
    Case("distill-weight-decay-inf", lambda f: ["distill", "--teacher-recipe", "{weight_decay: .inf}"], 1,
         "--teacher-recipe weight_decay"),
    Case("distill-data-seed-negative", lambda f: ["distill", "--data-seed", "-1"], 1, "--data-seed"),
    Case("distill-temperature-tiny", lambda f: ["distill", "--temperature", "1e-300"], 1, "--temperature"),
]


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input_is_refused_in_one_line_per_mistake(
    case: Case, short_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    import ray

    if case.ray:
        request.getfixturevalue("ray_local")
    cache = short_tmp / "cache"
    monkeypatch.setenv("KDTUNE_CACHE_DIR", str(cache))
    monkeypatch.chdir(short_tmp)  # the default study folder, runs/<name>, would land here
    if case.setup:
        case.setup(short_tmp)
    argv = case.argv(short_tmp)
    before = set(short_tmp.iterdir())
    ray_was_up = ray.is_initialized()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own one-line refusal
        code = exc.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    if not case.ray:  # found by the checks, before the plan's estimate times any step (a dead endpoint included)
        assert "plan:" not in out, out
    assert 1 <= len(lines) <= case.mistakes, err
    if case.mistakes > 1:
        assert len(lines) == case.mistakes, err
    assert all(" error: " in line and len(line) < 1100 for line in lines), err
    assert "Traceback" not in err and "PLANTED-SECRET" not in err
    assert case.expect in err
    assert set(short_tmp.iterdir()) == before  # no study folder (runs/ or --out), no cache folder
    assert not (cache / "logits").exists() and not (cache / "teachers").exists()
    assert ray.is_initialized() == ray_was_up  # a Ray kdtune started is stopped again


@pytest.mark.slow
def test_a_refusal_after_ray_started_stops_ray(short_tmp: Path) -> None:
    """The Ray that kdtune started for the study is stopped when the study is refused (its own process)."""
    import subprocess
    import sys

    code = ("import ray, sys; from kdtune.cli import main; rc = main(sys.argv[1:]); "
            "print('exit', rc, 'ray up', ray.is_initialized())")
    spec = spec_file(short_tmp, resources={"cpu": 4096})
    result = subprocess.run([sys.executable, "-c", code, "run", spec, "--out", str(short_tmp / "study"),
                             "--no-progress"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KDTUNE_CACHE_DIR": str(short_tmp / "cache")})
    # stdout: the plan's estimate (printed before the study starts), then this script's own line
    assert result.stdout.strip().splitlines()[-1] == "exit 2 ray up False", result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kdtune: error: resources.cpu = 4096.0: must be at most"), lines
    assert not (short_tmp / "study").exists()


@pytest.mark.slow
def test_a_study_whose_trials_all_failed_exits_1_saying_why(
    ray_local: None, short_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KDTUNE_CACHE_DIR", str(short_tmp / "cache"))
    spec = spec_file(short_tmp, **with_("student", arch="kd_fixtures:nan_model", kwargs={}))
    assert main(["run", spec, "--out", str(short_tmp / "study"), "--no-progress"]) == 1
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("kdtune: error: all 3 trials failed: the loss or objective became NaN or infinite")
    assert "kdtune report" not in out.out  # no recommendation and no next steps
    assert (short_tmp / "study" / "study.json").exists()  # what ran stays, for `kdtune status` and a look
