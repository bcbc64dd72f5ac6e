"""The recommendation in words: the notes each condition carries, its verdict sentence and the method header.

Kept apart from :mod:`kdtune.analysis.recommendation`, which computes the numbers: these functions only read a
finished condition entry (a JSON-ready dict) and phrase it, so the wording can change without touching the
statistics, and the statistics can be tested without parsing sentences.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from kdtune.analysis.verdicts import FAMILY_CONFIDENCE
from kdtune.spec.rules import min_directional_pairs


if TYPE_CHECKING:
    from kdtune.analysis.alpha_fit import Fit
    from kdtune.analysis.recommendation import Context
    from kdtune.analysis.scoring import Metric


MEMORISATION_WARNING = 0.25  # share of flipped training labels the teacher predicts as the noisy label


def notes(entry: dict[str, Any], info: dict[str, Any], fit: Fit) -> list[str]:
    """Caveats the numbers carry (cut-short and unfinished studies end the verdict itself)."""
    notes = []
    if fit.method == "best observed":
        alpha = entry["recommended"]["alpha"]
        spread = (f"; the alpha interval ({_range(alpha)}) holds the configurations the search cannot tell from its "
                  "best (multiple comparisons with the best)" if _range(alpha) else "")
        notes.append(f"only {fit.configurations} completed configurations: too few for the smooth fit, so there is "
                     f"no fitted optimum and no fitted interval{spread}")
    if entry["no_distillation"] is None:
        notes.append("no completed alpha = 1 (no distillation) runs: the gain cannot be measured")
    if entry["pure_distillation"] is None:
        notes.append("no completed alpha = 0 (pure distillation) runs (pruned, failed or not run)")
    teacher = info["teacher"] or {}
    memorised = teacher.get("memorisation_rate")
    if memorised is not None and memorised >= MEMORISATION_WARNING:
        advice = ("; a validation-selected teacher is available with `teacher.select: best_val`"
                  if teacher.get("select") == "final" else "")
        notes.append(f"the teacher predicts the noisy label on {memorised:.0%} of the flipped training labels "
                     f"(memorisation){advice}")
    if info["unfinished_studies"]:
        notes.append(f"not finished: {', '.join(info['unfinished_studies'])} (still running, or interrupted: "
                     "`kdtune resume` finishes it)")
    return notes


def verdict_text(kind: str, entry: dict[str, Any], info: dict[str, Any], context: Context) -> str:
    where = entry["description"]
    closed = entry["closed_form"]
    star = f"; closed-form α* = {_fmt(closed['alpha_star'])}" if closed else ""
    gain = entry["gain"]
    test = context.metric
    words = f"{recommended_words(entry['recommended'])}{star}"
    recommended, searched = f"recommended: {words}", f"recommended from the search alone: {words}"
    if kind == "undetermined":
        text = f"{where}: cannot tell whether distillation helps ({_missing(entry)}); {searched}"
    elif kind == "unconfirmed":
        runs = ("the transfer check's best distilled configuration at full fidelity" if gain["source"] == "transfer"
                else "the search's best distilled configuration")
        text = (f"{where}: unconfirmed: {searched}; {runs} ({config_words(gain['params'])}) is "
                f"{_gain_words(gain, test)}, measured on the runs that won the validation selection, so it is "
                "optimistic (winner's curse). Confirmation on fresh seeds (budget.confirm_top_k ≥ 1) gives a verdict")
    else:
        confirmed = f"{config_words(gain['params'])} vs no distillation on {gain['n_pairs']} fresh paired seeds"
        if kind == "distil":
            text = f"{where}: distil: {confirmed}: {_gain_words(gain, test)}; {recommended}"
            if context.margin is not None and gain["high"] < context.margin:
                text += f" (the gain is real but smaller than the {_margin(context)} margin)"
            text += located_words(entry["recommended"], context)
        elif kind == "hurts":
            text = f"{where}: distillation hurts here: {confirmed}: {_gain_words(gain, test)}; use alpha = 1{star}"
        elif kind == "no_gain":
            text = (f"{where}: no gain: any gain or loss is within ±{_margin(context, amount=True)}: {confirmed}: "
                    f"{_gain_words(gain, test)}; alpha = 1 does as well{star}")
        else:
            margin = "" if context.margin is None else f" and reaches beyond the ±{_margin(context)} margin"
            why = f"the interval crosses 0{margin}"
            low, high = gain.get("low"), gain.get("high")
            if low is not None and high is not None and (low > 0 or high < 0):
                fewest = min_directional_pairs(gain["family_level"], context.design.failure_rate)
                why = (f"the interval lies {'above' if low > 0 else 'below'} 0, but a verdict here rests on at "
                       f"least {fewest} paired seeds, so that a failure in {context.design.failure_rate:g} of "
                       "distilled runs would show (budget.confirm_failure_rate)")
            text = (f"{where}: inconclusive (can't tell yet, which is not the same as no effect): {confirmed}: "
                    f"{_gain_words(gain, test)}: {why}{_continue_words(gain, context)}; "
                    f"recommended until more seeds settle it: {words}")
    if context.margin_after_study:
        text += (f"; margin chosen after the study (±{_margin(context, amount=True)}; the study fixed "
                 f"±{_margin(context, amount=True, value=context.study_margin)} before its data)")
    return _status_words(entry, text + _teacher_words(entry, info, context.metric))


def located_words(recommended: dict[str, Any], context: Context) -> str:
    """The locate stage's answer (:mod:`kdtune.analysis.locate`), e.g. ``; located on 21 paired seeds at 7 alphas
    (T 4): the best alpha lies in 0.45–0.72 (95%), and any alpha in 0.3–0.8 is within 0.5 points of the best on
    validation``; where the confirmed alpha lies outside that interval, it says that the located optimum was not
    itself confirmed. Empty without a locate stage."""
    located = recommended.get("located")
    if not located:
        return ""
    at = config_words({**located["params"], "alpha": located["alpha"]}).split(", ", 1)  # "alpha a, T t, ..."
    where = f" ({at[1]})" if len(at) > 1 else ""
    words = (f"; located on {located['seeds']} paired seeds at {len(located['alphas'])} alphas{where}: the best alpha "
             f"lies in {_fmt(located['low'])}–{_fmt(located['high'])} ({located['confidence']:.0%}, fitted "
             f"{_fmt(located['alpha'])})")
    near = located["near_optimal"]
    amount = (_margin(context, amount=True, value=located["tolerance"]) if context.margin is not None
              else f"{located['tolerance']:.3g}")
    if near is None:
        words += f", and no alpha is shown within {amount} of the best on validation at these seeds"
    elif near["alpha_low"] == near["alpha_high"]:
        words += f", and only alpha {_fmt(near['alpha_low'])} is shown within {amount} of the best on validation"
    else:
        words += (f", and any alpha in {_fmt(near['alpha_low'])}–{_fmt(near['alpha_high'])} is within {amount} of "
                  "the best on validation")
    value = recommended["params"]["alpha"]
    if not located["low"] <= value <= located["high"]:
        words += (f"; the confirmed alpha {_fmt(value)} lies outside that interval, and the located optimum was "
                  "not itself confirmed")
    return words


def _continue_words(gain: dict[str, Any], context: Context) -> str:
    """How an inconclusive confirmation goes on: the study's own remaining looks, or its budget raised with
    ``kdtune resume --confirm-max-repeats``, which continues the same sequential design on new seeds with its
    past looks accounted for (:mod:`kdtune.analysis.sequential`)."""
    need = gain.get("seeds_to_resolve")
    if need is None:
        return ""
    where = context.folders[0] if len(context.folders) == 1 else "DIR"
    if need <= context.design.max_n:
        how = f"the study's remaining rounds may settle it: `kdtune resume {where}`"
    else:
        how = (f"to continue on new seeds, with the looks already taken accounted for: `kdtune resume {where} "
               f"--confirm-max-repeats {need}`" + ("" if len(context.folders) == 1 else " for each pooled study"))
    return f"; at this spread about {need} paired seeds would resolve it; {how}"


def why_recommended(entry: dict[str, Any], kind: str) -> str:
    """One sentence: which configuration is recommended and why, and what the fitted optimum and the best search
    configuration are where they differ from it."""
    rec = entry["recommended"]
    source, params = rec["source"], rec["params"]
    tried = config_words((entry["confirmed"] or {}).get("params") or params)
    if source == "confirm":
        head = f"Recommended: the confirmed configuration ({config_words(params)})"
        reason = ("it beat no distillation on fresh paired seeds" if kind == "distil" else
                  "the search's best distilled configuration, whose gain over no distillation the fresh seeds "
                  "have not settled yet")
    elif source == "no_distillation":
        head = "Recommended: alpha = 1 (no distillation)"
        reason = (f"the confirmed configuration ({tried}) did worse on fresh paired seeds" if kind == "hurts" else
                  f"the confirmed configuration ({tried}) did no better, within the margin, on fresh paired seeds, "
                  "and alpha = 1 needs no teacher")
    elif source == "fit":
        head = f"Recommended: the fitted optimum ({_fitted_words(rec)})"
        reason = (f"a surface fitted to {rec['configurations']} search configurations is steadier than any one "
                  "configuration's mean; nothing was confirmed on fresh seeds")
    else:
        head = f"Recommended: the best search configuration ({config_words(params)})"
        reason = (f"only {rec['configurations']} completed configurations, too few for a fitted surface; nothing "
                  "was confirmed on fresh seeds")
    others = []
    if source != "fit" and rec["fitted"]["alpha"] is not None and not _same_point(rec["fitted"], params):
        others.append(f"the fitted optimum ({_fitted_words(rec)})")
    best = entry["best_observed"]
    if source != "best_observed" and best is not None and not _same_point(best["params"], params):
        others.append(f"the best search configuration ({config_words(best['params'])})")
    if not others:
        return f"{head}: {reason}."
    if source == "fit":
        return f"{head}: {reason}; {others[0]} is one configuration's mean on the search seeds, noisier than the fit."
    search = "the cheap search's" if rec.get("searched_at") == "cheap" else "the search's"
    verb = f"are {search} estimates" if len(others) > 1 else f"is {search} estimate"
    return f"{head}: {reason}; {' and '.join(others)} {verb} on validation, which the fresh seeds do not judge."


def recommended_words(recommended: dict[str, Any]) -> str:
    """The recommended configuration with the alphas (and temperatures) that may be best, e.g. ``alpha 0.3
    (may be best: 0.2–0.45; weight on the true labels, 1 = no distillation), T 4 (3–6)``; ``≈`` for a fitted
    optimum, which is a point of a curve, not a configuration that ran. After a locate stage the alpha's range is
    left to :func:`located_words`, which says what it is."""
    params = recommended["params"]
    if params["alpha"] == 1.0:
        return "alpha = 1 (no distillation)"
    about = "≈ " if recommended["source"] == "fit" else ""
    spread = "" if recommended.get("located") else _range(recommended["alpha"])  # the located words say where
    where = " in the cheap search" if recommended.get("searched_at") == "cheap" else ""
    inside = "; ".join(filter(None, [f"may be best{where}: {spread}" if spread else "",
                                     "weight on the true labels, 1 = no distillation"]))
    words = f"alpha {about}{_fmt(params['alpha'])} ({inside})"
    temperature = recommended["temperature"]
    if temperature is not None:
        t_range = _range(temperature)
        words += f", T {about}{_fmt(temperature['value'])}" + (f" ({t_range})" if t_range else "")
    return ", ".join([words, *_extras(params)])


def _fitted_words(recommended: dict[str, Any]) -> str:
    fitted = recommended["fitted"]
    words = f"alpha ≈ {_fmt(fitted['alpha'])}"
    if fitted["temperature"] is not None and fitted["alpha"] != 1.0:
        words += f", T ≈ {_fmt(fitted['temperature'])}"
    return words


def _same_point(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same alpha and, where it matters (alpha < 1), the same temperature, at the 3 digits shown."""
    if _fmt(a["alpha"]) != _fmt(b["alpha"]):
        return False
    if a["alpha"] == 1.0 or a.get("temperature") is None or b.get("temperature") is None:
        return True
    return _fmt(a["temperature"]) == _fmt(b["temperature"])


def _missing(entry: dict[str, Any]) -> str:
    if entry["no_distillation"] is None:
        return "no alpha = 1 baseline to compare with"
    if entry["gain"] is None:
        return "no distilled configuration completed"
    return f"only {entry['gain']['n_pairs']} paired seed(s); raise budget.repeats"


def _teacher_words(entry: dict[str, Any], info: dict[str, Any], metric: Metric) -> str:
    """The teacher's test metric beside the student's own interval: shown, not used as a cause."""
    teacher = (info["teacher"] or {}).get(metric.test_column)
    student = (entry["no_distillation"] or {}).get("test") or {}
    if teacher is None or student.get("mean") is None:
        return ""
    alone = _value(student["mean"], metric)
    if student.get("low") is not None:
        alone += f" (95% CI {_value(student['low'], metric)}–{_value(student['high'], metric)})"
    return f". Teacher: {_value(teacher, metric)} {metric.test_label}; the student alone: {alone}"


def _value(value: float, metric: Metric) -> str:
    """A test metric's value: accuracy as a percentage, a loss as it is."""
    return f"{value:.1%}" if metric.margin_scale == 0.01 else f"{value:.4g}"


def _status_words(entry: dict[str, Any], text: str) -> str:
    """End the verdict, saying when it rests on a cut-short or unfinished study."""
    trials = entry["trials"]
    if entry["cut_short"]:
        text += (f". The study was cut short ({trials['complete']} trials of this condition completed): "
                 "this may change")
    if trials["unfinished"]:
        text += f". {trials['unfinished']} trial(s) had not ended (still running, or interrupted)"
    return text + "."


def _range(interval: dict[str, Any]) -> str:
    if interval["low"] is None or interval["low"] == interval["high"]:
        return ""
    return f"{_fmt(interval['low'])}–{_fmt(interval['high'])}"


def _gain_words(gain: dict[str, Any], test_metric: Metric) -> str:
    """E.g. ``+0.8 points test accuracy vs no distillation (repeated 98.3% CI +0.5 to +1.1, 12 paired seeds)``;
    where lower is better, a (signed) reduction of the test metric (``+0.021 nats/token reduction of test loss``:
    the no-distillation student's test loss minus the distilled one's)."""
    unit = test_metric.margin_unit
    if test_metric.mode == "max":
        what = "points test accuracy" if unit == "points of test accuracy" else (unit or f"gain in {test_metric.test_label}")
    else:
        what = f"{unit.split(' of ')[0]} reduction of {test_metric.test_label.split(' (')[0]}" if unit else \
            f"reduction of {test_metric.test_column}"
    if gain["low"] is None:
        return f"{_signed(gain['mean'], test_metric)} {what} vs no distillation ({gain['n_pairs']} paired seed(s))"
    if gain["source"] == "confirm":
        name = f"repeated {gain['confidence']:.1%} CI"
    else:
        name = f"{gain['confidence']:.0%} CI"
    ci = f"{name} {_signed(gain['low'], test_metric)} to {_signed(gain['high'], test_metric)}"
    return f"{_signed(gain['mean'], test_metric)} {what} vs no distillation ({ci}, {gain['n_pairs']} paired seeds)"


def _signed(value: float, test_metric: Metric) -> str:
    """A gain in the margin unit: points of accuracy to one decimal, anything else to three significant digits."""
    return f"{value / test_metric.margin_scale:+.1f}" if test_metric.margin_scale == 0.01 else f"{value:+.3g}"


def _margin(context: Context, *, amount: bool = False, value: float | None = None) -> str:
    """The equivalence margin (or another ``value`` of it) in its unit: ``0.5-point`` (``0.5 points`` as an
    ``amount``) of accuracy, ``0.01 nats/token`` of a loss."""
    margin, metric = context.margin if value is None else value, context.metric
    if margin is None:
        return "-"
    if metric.margin_scale == 0.01:
        return f"{margin / metric.margin_scale:.2g}" + (" points" if amount else "-point")
    return f"{margin / metric.margin_scale:.2g} {(metric.margin_unit or '').split(' of ')[0]}"


def config_words(params: dict[str, Any]) -> str:
    words = [f"alpha {_fmt(params['alpha'])}"]
    if params.get("temperature") is not None and params["alpha"] != 1.0:
        words.append(f"T {_fmt(params['temperature'])}")
    return ", ".join(words + _extras(params))


def _extras(params: dict[str, Any]) -> list[str]:
    """A language study's divergence and top-k targets, where the student distils."""
    if params["alpha"] == 1.0:
        return []
    words = []
    if params.get("divergence") is not None:
        words.append(params["divergence"] + (f" (beta {_fmt(params['beta'])})" if params["divergence"] == "jsd" else ""))
    if params.get("top_k") is not None:
        words.append(f"top-{params['top_k']} targets")
    return words


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def method(context: Context) -> dict[str, Any]:
    """The method in words, as the recommendation's header records it."""
    return {
        "scoring": "each run at its best validation epoch (earliest on ties); COMPLETE trials only",
        "recommended": "maximum of a surface fitted to the search configurations' mean validation objectives "
                       "(quadratic in 1 - alpha, with log T terms inside the distillation term); interval: "
                       "parametric bootstrap of the fit",
        "located": "after a distil verdict, more alphas at the confirmed temperature on the first confirmation "
                   "round's paired seeds; a split parabola's maximum, with a percentile bootstrap over seeds "
                   "(Efron & Tibshirani 1993) for its interval and the near-optimal alphas",
        "verdict": "confirmation runs only: the chosen confirmed configuration vs alpha = 1 on fresh paired "
                   "seeds; repeated confidence interval (Jennison & Turnbull 1989) with a Pocock-type constant "
                   "nominal level, valid under adaptive confirmation",
        "multiplicity": f"Bonferroni over the {context.conditions} condition(s) and each condition's confirmed "
                        f"candidates: family-wise confidence {FAMILY_CONFIDENCE:.0%}",
        "equivalence": "no gain when the interval lies inside ± margin (interval form of TOST, Schuirmann 1987)",
        "looks": list(context.design.looks),
        "confidence": FAMILY_CONFIDENCE,
        "coverage": "student-seed noise only: the data draw, the teacher and the validation set are fixed",
    }
