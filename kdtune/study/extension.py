"""Raise a study's confirmation budget: ``kdtune resume DIR --confirm-max-repeats N``.

Each condition's confirmation is a sequential design fixed when the study started (``budget.confirm_repeats``
fresh paired seeds per look, up to ``budget.confirm_max_repeats``). A condition that ended inconclusive at that
maximum can go on: raising the maximum continues the *same* design, in rounds of ``confirm_repeats``, on the
next seeds of the confirmation's seed stream (never one already used, never a search seed:
:mod:`kdtune.spec.rules`), and the added looks spend only the level that the planned looks left for them, so the
error rate over all looks, past and added, stays at most the nominal one (:mod:`kdtune.analysis.sequential`).
Re-running a study with a larger budget instead would re-train the seeds already used and judge them at a
level that ignores the looks already taken.

The raise is recorded in the study's own spec (``study.json`` and ``spec.yaml``): ``confirm_max_repeats`` is the
new maximum and ``confirm_planned_repeats`` keeps the planned one, so ``kdtune recommend`` reads the same
design. The searcher takes it up when Tune restores it (``ConditionSearcher.follow_budget``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdtune.errors import SpecError
from kdtune.errors import StudyError
from kdtune.errors import UsageError


if TYPE_CHECKING:
    from kdtune.records.folder import StudyFolder
    from kdtune.spec.schema import StudySpec

FLAG = "--confirm-max-repeats"


def extend_confirmation(folder: StudyFolder, max_repeats: int, *, restorable: bool) -> StudySpec:
    """Record ``max_repeats`` as the study's ``budget.confirm_max_repeats`` (the study no longer counts as
    finished), after refusing, in one line and with nothing written, what cannot continue: a study without
    confirmation, a maximum that is not larger or not on the design's rounds, a cut-short study (its wall-clock
    deadline has passed) and a study whose Ray Tune state is gone (``restorable``: the searcher's confirmation
    state lives there)."""
    import yaml

    from kdtune.records.folder import atomic_write
    from kdtune.spec.schema import parse_spec

    spec, meta = folder.spec(), folder.meta()
    budget = spec.budget
    if budget.confirm_top_k == 0:
        raise SpecError(FLAG, max_repeats, "this study confirms nothing (budget.confirm_top_k = 0)")
    if max_repeats <= budget.confirm_max_repeats:
        raise SpecError(FLAG, max_repeats, f"must be larger than the study's budget.confirm_max_repeats "
                        f"({budget.confirm_max_repeats}): it is the new most confirmation seeds per configuration")
    if meta.get("cut_short"):
        raise SpecError(FLAG, max_repeats, "the study was cut short by budget.max_wall_minutes, whose deadline has "
                        "passed, so no confirmation round would start")
    if not restorable:
        raise StudyError(f"{folder.path}: Ray Tune's saved state of the study is missing, and with it the state of "
                         "its confirmation: it cannot be continued")
    raw = spec.to_dict()
    raw["budget"] = {**raw["budget"], "confirm_max_repeats": max_repeats,
                     "confirm_planned_repeats": budget.planned_confirm_repeats}
    try:
        extended = parse_spec(raw)
    except SpecError as exc:
        raise SpecError(FLAG, max_repeats, exc.allowed) from None
    except UsageError as exc:
        raise SpecError(FLAG, max_repeats, str(exc)) from None
    folder.update(spec=extended.to_dict(), finished_at=None)
    atomic_write(folder.spec_yaml, yaml.safe_dump(extended.to_dict(), sort_keys=False))
    print(f"kdtune: confirmation budget raised from {budget.confirm_max_repeats} to {max_repeats} paired seeds: "
          f"conditions that ended inconclusive continue in rounds of {budget.confirm_repeats} new seeds, their "
          f"looks so far accounted for", flush=True)
    return extended
