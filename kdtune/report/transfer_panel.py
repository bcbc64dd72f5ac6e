"""The report's panel of the transfer check: does the cheap search's answer hold at full fidelity?

A study with a ``fidelity`` section searches cheap (a fraction of the data, fewer epochs, a narrower student), then
re-runs the cheap search's best configurations, alpha = 1 and alpha = 0 at full fidelity on paired seeds
(:mod:`kdtune.analysis.transfer`). Per condition with that check, this panel draws each re-run configuration at
its cheap mean (x) against its full-fidelity mean (y), both on the validation objective, and says the check's
verdict in words beside it. The two axes have their own scales (a cheap run is worse, not differently ranked), so
there is no y = x line: what matters is whether the order along x is the order along y.

Apart from :mod:`kdtune.report.answer_panels` because it reads the recommendation's ``transfer`` block, which only
fidelity studies have; a condition without it shows nothing here. The words (:func:`transfer_lines`,
:func:`transfer_cell`) are shared with the page's summary table.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.analysis.wording import config_words
from kdtune.report.figures import Figure
from kdtune.report.figures import save_figure
from kdtune.report.figures import subplots
from kdtune.report.view import Series
from kdtune.report.view import View


if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from kdtune.tasks import Objective


#: Half-width of the normal 95% interval drawn around each fidelity's mean: 1.96 sd / sqrt(n).
Z95 = 1.96
NEAR_LABEL = "near-optimal at full fidelity"
FAR_LABEL = "shown to lose more than the tolerance"


def transfer_panel(view: View, folder: Path) -> Figure | None:
    """Per condition with a transfer check: the re-run configurations' cheap means against their full-fidelity
    means with 95% intervals, the cheap search's choice and the best at full fidelity marked, the baselines
    labelled, and the verdict in words. None where no condition has a transfer check."""
    def checked(series: Series) -> bool:
        return (series.data.entry(series.condition) or {}).get("transfer") is not None

    tiles, cols = view.tiles(checked)
    if not tiles:
        return None
    rows = math.ceil(len(tiles) / cols)
    fig, axes = subplots(rows, cols, (6.6 * cols, 6.6 * rows))
    drawn, summary = [], []
    for axis, series in zip(axes, tiles):
        if series is None:
            axis.set_visible(False)
            continue
        drawn.append(axis)
        entry = series.data.entry(series.condition) or {}
        _scatter(axis, series, entry, view)
        lines = transfer_lines(entry, series.data.objective)
        axis.text(0.0, -0.14, "\n".join(textwrap.fill(line, 90) for line in lines), transform=axis.transAxes,
                  va="top", ha="left", fontsize=8)
        axis.set_title(f"{series.label}: {series.match}" if view.compare else series.condition,
                       color=series.color if view.compare else "black", fontsize=10)
        summary.append(f"{series.where}: " + "; ".join(lines) + ".")
    for axis in axes[len(tiles):]:
        axis.set_visible(False)
    for axis in drawn:
        view.axis_legend(axis, fontsize=7, loc="best", markerscale=0.6)
    if view.compare:
        view.legends(fig, drawn, on=[])
    figure = save_figure(fig, folder, "transfer", "Does the cheap search's answer hold at full fidelity?",
                         "The transfer check, per condition whose search ran cheap: each point is a configuration "
                         "re-run at full fidelity (the cheap search's best ones, alpha = 1 and alpha = 0, labelled), "
                         "at its mean validation objective over the cheap search's seeds (x) and over the "
                         "full-fidelity seeds (y), with bars of ±1.96 sd/√n at each fidelity. The scales differ "
                         "(cheap runs are worse), so the question is whether the order along x is the order along y: "
                         "Spearman's rank correlation. Ringed: the cheap search's choice (its best distilled "
                         "configuration); star: the best configuration at full fidelity. Filled: the near-optimal set "
                         "(its regret's 95% bootstrap interval reaches the tolerance, the margin); hollow: shown to "
                         "lose more. The verdict: fails when the cheap choice is shown to lose more than the "
                         "tolerance at full fidelity (then the recommendation comes from the full-fidelity runs), "
                         "holds when it is shown to lose at most that, else unclear. Intervals: percentile bootstrap "
                         "over each fidelity's seeds.")
    figure.summary = summary
    return figure


def _scatter(ax: Axes, series: Series, entry: dict[str, Any], view: View) -> None:
    """One condition's re-run configurations, cheap (x) against full fidelity (y)."""
    transfer, fidelity = entry["transfer"], entry.get("fidelity") or {}
    color, label = series.color, series.data.objective.label
    configs = transfer["configurations"]
    xs = [c["cheap"]["mean"] for c in configs]
    ys = [c["full"]["mean"] for c in configs]
    if view.compare:  # the study's entry in the figure legend
        ax.plot([], [], color=color, label=series.label)
    ax.errorbar(xs, ys, xerr=[_half(c["cheap"]) for c in configs], yerr=[_half(c["full"]) for c in configs],
                fmt="none", ecolor=color, elinewidth=1, capsize=3, alpha=0.6)
    near = [c["params"] in transfer["near_optimal"] for c in configs]
    for keep, face, words in ((True, color, NEAR_LABEL), (False, "white", FAR_LABEL)):
        chosen = [i for i, flag in enumerate(near) if flag == keep]
        if chosen:
            ax.plot([xs[i] for i in chosen], [ys[i] for i in chosen], "o", color=color, markerfacecolor=face,
                    markersize=7, markeredgewidth=1.4, label=words, zorder=3)
    for i, c in enumerate(configs):
        if c["params"]["alpha"] in (0.0, 1.0):  # alpha = 1 labelled below its point, alpha = 0 above: never on top
            ax.annotate(f"alpha = {c['params']['alpha']:g}", (xs[i], ys[i]), textcoords="offset points",
                        xytext=(7, -11 if c["params"]["alpha"] == 1.0 else 5), fontsize=8)
    for params, marker, size, words in ((transfer["cheap_choice"], "o", 17, "cheap search's choice"),
                                        (transfer["full_best"], "*", 19, "best at full fidelity")):
        at = next((k for k, c in enumerate(configs) if c["params"] == params), None)
        if at is not None:
            ax.plot([xs[at]], [ys[at]], marker=marker, markersize=size, linestyle="none", markerfacecolor="none",
                    markeredgecolor="black", markeredgewidth=1.4, zorder=4, label=f"{words}: {config_words(params)}")
    cheap = f" ({fidelity['search']})" if fidelity.get("search") else ""
    ax.set_xlabel(f"cheap search{cheap}: {label}")
    ax.set_ylabel(f"full fidelity: {label}")


def _half(estimate: dict[str, Any]) -> float:
    """Half-width of a mean's normal 95% interval; 0 for one run (no spread to estimate)."""
    return Z95 * estimate["sd"] / math.sqrt(estimate["n"]) if estimate["n"] > 1 else 0.0


def _amount(value: float, objective: Objective) -> str:
    """An objective difference in points of accuracy, else in the objective's own units."""
    return f"{value / 0.01:.2f}" if objective.margin_scale == 0.01 else f"{value:.4g}"


def transfer_lines(entry: dict[str, Any], objective: Objective) -> list[str]:
    """The transfer check in short lines: the verdict, the rank agreement, the cheap choice's regret, whether it is
    near-optimal, and the fidelity the verdicts hold at. Empty without a transfer check."""
    transfer = entry.get("transfer")
    if transfer is None:
        return []
    points = " points" if objective.margin_scale == 0.01 else ""
    rho = transfer["spearman"]
    if rho["value"] is None:
        rank = "Spearman not defined (one fidelity's means are all equal)"
    else:
        interval = "" if rho["low"] is None else f" [{rho['low']:.2f}, {rho['high']:.2f}]"
        rank = f"Spearman {rho['value']:.2f}{interval} (cheap vs full ranks)"
    regret = transfer["regret"]
    confidence, seeds = transfer["confidence"], transfer["seeds"]
    near = "yes" if transfer["cheap_choice_near_optimal"] else "no"
    fidelity = entry.get("fidelity") or {}
    where = f" ({fidelity['full']})" if fidelity.get("full") else ""
    return [f"transfer check: {transfer['verdict']}", rank,
            f"regret of the cheap choice ({config_words(transfer['cheap_choice'])}) at full fidelity: "
            f"{_amount(regret['value'], objective)} [{_amount(regret['low'], objective)}, "
            f"{_amount(regret['high'], objective)}]{points} of {objective.label}",
            f"cheap choice in the near-optimal set: {near} (tolerance {_amount(transfer['tolerance'], objective)}"
            f"{points})",
            f"{confidence:.0%} intervals: bootstrap over {seeds['cheap']} cheap and {seeds['full']} full-fidelity "
            "seeds",
            f"verdicts hold at {fidelity.get('verdict_at', 'full')} fidelity{where}"]


def transfer_cell(entry: dict[str, Any], objective: Objective) -> str:
    """The transfer check in a table cell: the verdict, Spearman and the cheap choice's regret; "-" without one."""
    transfer = entry.get("transfer")
    if transfer is None:
        return "-"
    rho = transfer["spearman"]["value"]
    points = " points" if objective.margin_scale == 0.01 else ""
    rank = "Spearman -" if rho is None else f"Spearman {rho:.2f}"
    return f"{transfer['verdict']} ({rank}, regret {_amount(transfer['regret']['value'], objective)}{points})"
