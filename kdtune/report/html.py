"""The report's HTML: self-contained (figures as base64 PNGs, inline CSS, opens offline), with each study's
status, its recommendation (:func:`kdtune.analysis.recommendation.recommend`: the one answer, with the fitted
optimum and the best search configuration named as what they are) and its trials."""

from __future__ import annotations

import base64
import datetime
import html
import json
from dataclasses import dataclass
from typing import Any

from kdtune.analysis.scoring import finite
from kdtune.report.data import StudyData
from kdtune.report.data import gain_source
from kdtune.report.figures import ALPHA_LABEL
from kdtune.report.figures import Figure
from kdtune.report.view import View


@dataclass
class Section:
    """What the report says about one study besides the figures."""

    data: StudyData
    label: str
    color: str
    notes: list[str]

    @property
    def verdicts(self) -> dict[str, str]:
        """Per condition, the verdict's text (the study's own recommendation)."""
        return {c["key"]: c["verdict"]["text"] for c in (self.data.recommendation or {}).get("conditions", [])}


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}
.status{color:#555}.snapshot{background:#fff4d6;border:1px solid #e6c36a;padding:.5em .8em;border-radius:4px}
img{max-width:100%;height:auto;border:1px solid #eee}.caption{color:#444;font-size:.92em}
table{border-collapse:collapse;font-size:.92em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f6f6f6}.verdicts li{margin:.4em 0}.notes li{color:#555;font-size:.92em}
footer{margin-top:3em;color:#888;font-size:.85em}
.swatch{display:inline-block;width:.9em;height:.9em;margin-right:.4em;vertical-align:-.1em;border-radius:2px}
.beside{display:flex;gap:1.2em;align-items:flex-start}.beside img{flex:0 1 auto;min-width:0}
.beside ul{flex:0 0 22em;padding-left:1.1em;margin:0}
"""


_SCORING = ("Each run is scored at its best validation epoch (the validation objective selects, the test metric "
            "at that epoch is reported).")


def render_html(view: View, figures: list[Figure], notes: list[str], sections: list[Section]) -> str:
    from kdtune._version import __version__

    esc = html.escape
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    alpha = f"alpha is the {esc(ALPHA_LABEL[len('alpha ('):-1])}."
    if view.compare:
        title = "comparison of " + ", ".join(view.labels)
        matched = (f"conditions are matched across studies by {', '.join(view.match_axes)}"
                   if view.match_axes else "each study has one condition: one panel shows them all")
        header = [f"<h1>kdtune {esc(title)}</h1>",
                  f"<p>{alpha} {_SCORING} One colour per study in every figure; {esc(matched)}. Each study's "
                  "recommendation (its own, not pooled) is in its section below the figures.</p>"]
        summary = "<section id=\"studies\"><h2>Studies</h2>" + _studies_table(sections) + "</section>"
    else:
        one = sections[0]
        title = one.data.spec.name
        header = [f"<h1>kdtune study {esc(title)}</h1>", _study_status(one.data, now), f"<p>{alpha} {_SCORING}</p>"]
        summary = ("<section id=\"summary\"><h2>Recommendation per condition</h2>" + _summary_table(one.data)
                   + "</section>")
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>kdtune report: {esc(title)}</title><style>{_CSS}</style></head><body>",
             "<header>" + "\n".join(header) + "</header>", summary]
    for figure in figures:
        encoded = base64.b64encode(figure.file.read_bytes()).decode("ascii")
        image = f"<img alt=\"{esc(figure.title)}\" src=\"data:image/png;base64,{encoded}\">"
        if figure.summary:  # what the figure says in words, beside it
            image = (f"<div class=\"beside\">{image}<ul class=\"verdicts\">"
                     + "".join(f"<li>{esc(line)}</li>" for line in figure.summary) + "</ul></div>")
        parts.append(f"<section id=\"fig-{esc(figure.name)}\"><h2>{esc(figure.title)}</h2>{image}"
                     f"<p class=\"caption\">{esc(figure.caption)}</p>"
                     + _list(figure.notes) + "</section>")
    if view.compare:
        for i, section in enumerate(sections, start=1):
            parts.append(f"<section id=\"study-{i}\"><h2>{_swatch(section.color)}Study {esc(section.label)}</h2>"
                         + _study_status(section.data, now) + _summary_table(section.data)
                         + _list(section.notes) + _trials_table(section.data) + "</section>")
    else:
        parts.append("<section id=\"trials\"><h2>Trials</h2>" + _trials_table(sections[0].data) + "</section>")
    if notes:
        parts.append("<section id=\"notes\"><h2>Notes</h2>" + _list(notes) + "</section>")
    sources = ", ".join(str(d.path) for d in view.studies)
    parts.append(f"<footer>kdtune {esc(__version__)}, {esc(now)}, from {esc(sources)}</footer></body></html>\n")
    return "\n".join(parts)


def _study_status(data: StudyData, now: str) -> str:
    text = f"<p class=\"status\">{html.escape(_status_line(data))}</p>"
    if not data.finished:
        text += (f"\n<p class=\"snapshot\">Snapshot taken {html.escape(now)}: the study has not finished (still "
                 f"running, or interrupted). {data.running_trials} trial(s) had not ended; their runs are drawn "
                 "hollow and left out of means and selections.</p>")
    return text


def _status_line(data: StudyData) -> str:
    counts: dict[str, int] = {}
    for trial in data.trials:
        counts[trial["state"]] = counts.get(trial["state"], 0) + 1
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trial ended yet"
    finished = "finished" if data.finished else "not finished"
    cut = " (cut short by budget.max_wall_minutes)" if data.meta.get("cut_short") else ""
    return (f"{data.task.kind} study on {data.spec.dataset.name}, objective {data.spec.objective_name}, "
            f"{len(data.conditions)} condition(s), {finished}{cut}: {states}, {data.running_trials} running.")


def _summary_table(data: StudyData) -> str:
    """Per condition: the recommended configuration and why, the verdict and its gain, then the search's own
    estimates under their names (the fitted optimum, the best search configuration on its search runs), and in a
    study that searched cheap, the transfer check's verdict (its numbers in the verdict's sentence)."""
    from kdtune.analysis.wording import recommended_words
    from kdtune.report.transfer_panel import transfer_cell

    esc = html.escape
    checked = any((data.entry(c) or {}).get("transfer") is not None for c in data.conditions)
    head = ("<table><tr><th>condition</th><th>recommended</th><th>verdict</th><th>gain over no distillation</th>"
            f"<th>fitted optimum (search, validation)</th><th>best search configuration: {esc(data.objective_label)}, "
            f"{esc(data.objective.test_label)} (search runs)</th><th>runs (search + confirmation)</th>"
            + ("<th>transfer check (cheap search vs full fidelity)</th>" if checked else "") + "</tr>")
    rows, texts = [], []
    for condition in data.conditions:
        entry = data.entry(condition)
        best = data.best(condition)
        runs = data.search_runs(condition)
        confirm = sum(len(c.runs) for c in data.confirmations(condition))
        searched = "-" if best is None else f"{best.describe()}: {best.mean():.4g}, {best.mean('test'):.4g}"
        if entry is None or entry["recommended"] is None:
            cells = ["-", "-", "-", "-", searched]
        else:
            rec = entry["recommended"]
            fitted = rec["fitted"]
            cells = [recommended_words(rec), entry["verdict"]["kind"], _gain_cell(data, entry),
                     "none (too few configurations to fit)" if fitted["alpha"] is None else _fitted_cell(fitted),
                     searched]
            texts.append(f"<li><b>{esc(condition)}</b>: {esc(rec['why'])} {esc(entry['verdict']['text'])}"
                         + "".join(f"<br><i>note:</i> {esc(n)}" for n in entry["notes"]) + "</li>")
        transfer = f"<td>{esc(transfer_cell(entry or {}, data.objective))}</td>" if checked else ""
        rows.append(f"<tr><td>{esc(condition)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells)
                    + f"<td>{len(runs)} + {confirm}</td>{transfer}</tr>")
    return head + "".join(rows) + "</table>" + (f"<ul class=\"verdicts\">{''.join(texts)}</ul>" if texts else "")


def _fitted_cell(fitted: dict[str, Any]) -> str:
    words = f"alpha ≈ {fitted['alpha']:.3g}"
    if fitted["temperature"] is not None and fitted["alpha"] != 1.0:
        words += f", T ≈ {fitted['temperature']:.3g}"
    return words


def _gain_cell(data: StudyData, entry: dict[str, Any]) -> str:
    """The gain in the margin's unit (points of accuracy) with its interval, and whose runs it is."""
    gain = entry["gain"]
    if not gain or gain.get("mean") is None:
        return "-"
    scale = data.objective.margin_scale if data.objective.margin_unit else 1.0

    def signed(value: float) -> str:
        return f"{value / scale:+.1f}" if scale == 0.01 else f"{value / scale:+.3g}"

    unit = "points" if scale == 0.01 else (data.objective.margin_unit or data.objective.test_label)
    interval = "" if gain["low"] is None else f" ({signed(gain['low'])} to {signed(gain['high'])})"
    where = {"confirm": f"{gain['n_pairs']} fresh paired seeds, repeated {gain['confidence']:.1%} CI",
             "transfer": f"{gain['n_pairs']} full-fidelity seeds of the transfer check, optimistic"}.get(
        gain_source(entry), f"{gain['n_pairs']} search seeds, optimistic")
    return f"{signed(gain['mean'])}{interval} {unit}; {where}"


def _trials_table(data: StudyData) -> str:
    """Every ended trial, by condition and then objective (best first), in a folded table."""
    esc = html.escape
    test_name = data.objective.test_label
    tests: dict[str, list[float]] = {}
    for run in data.runs:
        if finite(run.test):
            tests.setdefault(run.trial_id, []).append(run.test)
    order = {c: i for i, c in enumerate(data.conditions)}
    trials = sorted(data.trials, key=lambda t: (order.get(t["condition"], len(order)), t["state"] != "COMPLETE",
                                                -data.sign * (t["objective"] if finite(t["objective"]) else 0.0)))
    rows = []
    for t in trials:
        params = json.loads(t["params"])
        temperature = params.get("temperature")
        test = tests.get(t["trial_id"])
        cells = [t["condition"], t["trial_id"], t["phase"], f"{params['alpha']:.3g}",
                 "-" if temperature is None else f"{temperature:.3g}", t["state"], str(t["epochs_done"]),
                 f"{t['objective']:.4g}" if finite(t["objective"]) else "-",
                 f"{sum(test) / len(test):.4g}" if test else "-"]
        rows.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    head = ("<table><tr><th>condition</th><th>trial</th><th>phase</th><th>alpha</th><th>T</th><th>state</th>"
            f"<th>epochs</th><th>{esc(data.objective_label)}</th><th>{test_name} (mean of runs)</th></tr>")
    return (f"<details><summary>{len(rows)} ended trials: parameters, state, objective (mean over seeds, each at "
            "its best validation epoch) and test metric at the same epochs</summary>"
            + head + "".join(rows) + "</table></details>")


def _studies_table(sections: list[Section]) -> str:
    esc = html.escape
    rows = ["<table><tr><th>study</th><th>name</th><th>dataset</th><th>teacher</th><th>student</th>"
            "<th>conditions</th><th>status</th><th>folder</th></tr>"]
    for s in sections:
        spec = s.data.spec
        cells = [spec.name, spec.dataset.name, _model_words(spec.teacher), _model_words(spec.student),
                 ", ".join(s.data.conditions), "finished" if s.data.finished else "not finished", str(s.data.path)]
        rows.append(f"<tr><td>{_swatch(s.color)}{esc(s.label)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells)
                    + "</tr>")
    return "".join(rows) + "</table>"


def _model_words(section: Any) -> str:
    kwargs = getattr(section, "kwargs", None)
    return f"{section.arch} {json.dumps(dict(kwargs))}" if kwargs else str(section.arch)


def _swatch(color: str) -> str:
    return f"<span class=\"swatch\" style=\"background:{color}\"></span>"


def _list(items: list[str]) -> str:
    return "<ul class=\"notes\">" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else ""
