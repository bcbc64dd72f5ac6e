"""The report of a study that searched cheap (a ``fidelity`` section): per condition with a transfer check, the
cheap-vs-full scatter and the check's verdict in words beside it, a transfer column in the summary table and in
``kdtune recommend``'s table; a condition without the check shows none of it.

The study folder is written the way the engine writes one (tests/test_recommend.py's builder): three noise levels
searched cheap on a grid; noise 0.1 and 0.2 re-run at full fidelity (phase ``transfer``) on the search's seeds, the
best cheap configuration, three of its neighbours and both baselines. At noise 0.1 the optimum moves (alpha 0.2 is
1.5 points better at full fidelity than the cheap choice alpha 0.3: the check fails); at noise 0.2 full fidelity is
the cheap search plus one point everywhere (it holds). Noise 0.0 has no transfer runs. The recommendation is the real
one (:func:`kdtune.analysis.recommendation.recommend`), the report the CLI's.

Run: ``.venv/bin/python -m pytest -q tests/test_report_transfer.py``
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_recommend import SD
from test_recommend import build
from test_recommend import centred
from test_recommend import flat
from test_recommend import peaked

from kdtune.analysis.recommendation import recommend
from kdtune.cli import main
from kdtune.report import FIGURES_DIR
from kdtune.report import MANIFEST


RERUN = [(0.2, 4.0), (0.3, 4.0), (0.4, 4.0), (0.3, 8.0), (1.0, 4.0), (0.0, 4.0)]  # the cheap best four, baselines
CHEAP = "25% of the training data, 5 of 20 epochs"
FULL = "all of the spec's training data, 20 epochs, student reference_student"


def peaked_pure_worse(alpha: float, temperature: float) -> float:
    """:func:`peaked`, with pure distillation a point below the student alone (so the two baselines part)."""
    return peaked(alpha, temperature) - (0.01 if alpha == 0.0 else 0.0)


FULL_TRUTH = {0.1: dict(zip(RERUN, (0.97, 0.955, 0.95, 0.952, 0.945, 0.93))),  # the optimum moves to alpha 0.2
              0.2: {k: peaked_pure_worse(*k) + 0.01 for k in RERUN}}  # the cheap order holds


@pytest.fixture(scope="module")
def fidelity_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fidelity-report") / "fidelity"
    builder = build(folder, {0.0: flat, 0.1: peaked, 0.2: peaked_pure_worse}, fidelity__data_fraction=0.25,
                    fidelity__epochs=5)
    seeds = list(range(10))  # the transfer check pairs with the search's seeds
    for i, (level, truth) in enumerate(FULL_TRUTH.items()):
        rng = np.random.default_rng(70 + i)
        seed_effect = centred(rng, len(seeds), SD)
        for (alpha, temperature), mean in truth.items():
            shared = seed_effect + centred(rng, len(seeds), SD)
            val, test = (mean + shared + centred(rng, len(seeds), SD) for _ in range(2))
            builder.add(level, {"alpha": alpha, "temperature": temperature}, seeds, list(val), list(test),
                        phase="transfer")
    assert main(["report", str(folder)]) == 0
    return folder


def _entries(study: Path) -> dict[str, dict[str, Any]]:
    return {c["key"]: c for c in recommend([study])["conditions"]}


def _transfer_figure(study: Path) -> dict[str, Any]:
    manifest = json.loads((study / FIGURES_DIR / MANIFEST).read_text())
    return next(f for f in manifest["figures"] if f["name"] == "transfer")


def _point(axis: dict[str, Any], label: str) -> tuple[float, float]:
    """Where the one marker whose legend entry starts with ``label`` is drawn (rounded: PNG coordinates are floats)."""
    (found,) = [p for p in axis["points"] if p["label"].startswith(label)]
    assert len(found["x"]) == 1
    return _at(found["x"][0], found["y"][0])


def _at(x: float, y: float) -> tuple[float, float]:
    return round(x, 9), round(y, 9)


def test_the_study_checks_transfer_where_it_reran(fidelity_study: Path) -> None:
    entries = _entries(fidelity_study)
    assert entries["noise_level=0.0"]["transfer"] is None and entries["noise_level=0.0"]["fidelity"] is not None
    assert entries["noise_level=0.1"]["transfer"]["verdict"] == "fails"
    assert entries["noise_level=0.2"]["transfer"]["verdict"] == "holds"


def test_a_scatter_per_checked_condition_with_every_rerun_configuration(fidelity_study: Path) -> None:
    figure = _transfer_figure(fidelity_study)
    entries = _entries(fidelity_study)
    assert [a["title"] for a in figure["axes"]] == ["noise_level=0.1", "noise_level=0.2"]  # not noise 0.0
    for axis in figure["axes"]:
        transfer = entries[axis["title"]]["transfer"]
        assert axis["xlabel"] == f"cheap search ({CHEAP}): validation accuracy"
        assert axis["ylabel"] == "full fidelity: validation accuracy"
        drawn = [_at(x, y) for p in axis["points"] if p["label"] in ("near-optimal at full fidelity",
                                                                  "shown to lose more than the tolerance")
                 for x, y in zip(p["x"], p["y"])]
        configs = transfer["configurations"]
        assert len(drawn) == len(configs) == len(RERUN)  # one point per re-run configuration
        assert sorted(drawn) == sorted(_at(c["cheap"]["mean"], c["full"]["mean"]) for c in configs)
        means = {json.dumps(c["params"], sort_keys=True): _at(c["cheap"]["mean"], c["full"]["mean"]) for c in configs}
        choice, best = (means[json.dumps(transfer[k], sort_keys=True)] for k in ("cheap_choice", "full_best"))
        assert _point(axis, "cheap search's choice: alpha 0.3, T 4") == choice
        assert _point(axis, "best at full fidelity") == best
        assert {"alpha = 1", "alpha = 0"} <= set(axis["texts"])  # the baselines labelled
    fails = figure["axes"][0]
    assert "best at full fidelity: alpha 0.2, T 4" in fails["legend"]  # the optimum moved
    hollow = next(p for p in fails["points"] if p["label"] == "shown to lose more than the tolerance")
    assert _point(fails, "cheap search's choice") in [_at(x, y) for x, y in zip(hollow["x"], hollow["y"])]


def test_the_verdict_in_words_beside_the_scatter(fidelity_study: Path) -> None:
    figure = _transfer_figure(fidelity_study)
    entries = _entries(fidelity_study)
    page = (fidelity_study / "report.html").read_text()
    section = page[page.index('<section id="fig-transfer">'):].split("</section>", 1)[0]
    for axis, (key, verdict, near) in zip(figure["axes"], (("noise_level=0.1", "fails", "no"),
                                                          ("noise_level=0.2", "holds", "yes"))):
        transfer = entries[key]["transfer"]
        rho, regret = transfer["spearman"], transfer["regret"]
        words = [f"transfer check: {verdict}",
                 f"Spearman {rho['value']:.2f} [{rho['low']:.2f}, {rho['high']:.2f}]",
                 f"{100 * regret['value']:.2f} [{100 * regret['low']:.2f}, {100 * regret['high']:.2f}] points",
                 f"cheap choice in the near-optimal set: {near}",
                 f"verdicts hold at full fidelity ({FULL})"]
        (summary,) = [s for s in figure["summary"] if s.startswith(f"{key}: ")]
        (text,) = axis["texts"][-1:]  # the words under the scatter
        for part in words:
            assert part in summary and html.escape(part) in section
            assert part in " ".join(text.split()), part
    assert not any(s.startswith("noise_level=0.0") for s in figure["summary"])
    assert '<div class="beside"><img' in section


def test_the_summary_table_and_verdicts_carry_the_transfer_check(fidelity_study: Path) -> None:
    page = (fidelity_study / "report.html").read_text()
    entries = _entries(fidelity_study)
    summary = page[page.index('<section id="summary">'):].split("</section>", 1)[0]
    assert "<th>transfer check (cheap search vs full fidelity)</th>" in summary
    rows = {key: summary[summary.index(f"<td>{key}</td>"):].split("</tr>", 1)[0] for key in entries}
    assert rows["noise_level=0.0"].endswith("<td>-</td>")
    assert rows["noise_level=0.1"].endswith("<td>fails (Spearman 0.79, regret 1.50 points)</td>")
    assert rows["noise_level=0.2"].endswith("<td>holds (Spearman 0.99, regret 0.00 points)</td>")
    # unconfirmed with a transfer check: the gain is measured on the full-fidelity runs, and said so
    assert "10 full-fidelity seeds of the transfer check, optimistic" in rows["noise_level=0.1"]
    for key, entry in entries.items():
        assert html.escape(entry["verdict"]["text"]) in summary
        assert ("Transfer check on 6 configurations" in entry["verdict"]["text"]) == (key != "noise_level=0.0")


def test_an_unconfirmed_gain_is_shown_on_the_full_fidelity_runs(fidelity_study: Path) -> None:
    """Without confirmation the recommendation measures the gain on the transfer check's runs: the per-class and
    teacher-vs-student panels read those runs, never the cheap search's."""
    from kdtune.report import load_study

    data = load_study(fidelity_study)
    distilled, alone, source = data.compared("noise_level=0.1") or pytest.fail("no gain compared")
    assert source == "transfer" and {r.phase for r in distilled.runs + alone.runs} == {"transfer"}
    assert distilled.mean("test") == pytest.approx(0.97, abs=1e-9) and alone.mean("test") == pytest.approx(0.945)
    plain = data.compared("noise_level=0.0")  # no transfer check: the search's runs, as before
    assert plain is not None and plain[2] == "search"
    manifest = json.loads((fidelity_study / FIGURES_DIR / MANIFEST).read_text())
    teacher = next(f for f in manifest["figures"] if f["name"] == "teacher_vs_student")
    assert teacher["axes"][0]["texts"][3:6] == ["97.0%", "94.5%", "97.0%"]  # noise 0.1: teacher, alone, distilled


def test_recommend_prints_a_transfer_column(fidelity_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(fidelity_study)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if " verdict " in line)
    assert header.rstrip(" ┃").endswith("transfer")
    for key, verdict in (("noise_level=0.0", "-"), ("noise_level=0.1", "fails"), ("noise_level=0.2", "holds")):
        row = next(line for line in lines if f" {key} " in line)
        assert row.rstrip(" ┃│").endswith(f" {verdict}"), row
    out = " ".join(" ".join(lines).split())
    assert "the cheap search's answer does not hold at full fidelity" in out
    assert "the transfer check (whether the cheap search's answer holds at full fidelity) its column" in out


def test_in_a_log_the_transfer_check_is_in_the_verdict_lines(fidelity_study: Path,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    from kdtune.analysis.recommendation_output import print_recommendation
    from kdtune.log_output import LINE_WIDTH
    from kdtune.log_output import stamped_output

    report = recommend([fidelity_study])
    with stamped_output():  # 120 characters a line: the compact table, without the transfer column
        print_recommendation(report, fidelity_study / "recommendation.json")
    lines = capfd.readouterr().out.splitlines()
    assert max(map(len, lines)) <= LINE_WIDTH
    for c in report["conditions"]:  # each condition's row on one line, its verdict unbroken
        assert any(f" {c['key']} " in line and f" {c['verdict']['kind']} " in line for line in lines)
    out = " ".join(line.split(" ", 2)[2] for line in lines if line.count(" ") >= 2)  # without the time stamps
    assert "transfer check (whether the cheap search's answer holds at full fidelity) is in each" in " ".join(out.split())
    assert " ".join(out.split()).count("Transfer check on 6 configurations:") == 2


def test_a_study_without_transfer_check_shows_none(fidelity_study: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    build(plain, {0.0: flat, 0.1: peaked})
    assert main(["report", str(plain)]) == 0
    manifest = json.loads((plain / FIGURES_DIR / MANIFEST).read_text())
    assert "transfer" not in {f["name"] for f in manifest["figures"]}
    page = (plain / "report.html").read_text()
    assert "transfer check" not in page.lower() and 'class="beside"' not in page
