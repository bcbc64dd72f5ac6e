"""kdtune from Python (a notebook, a script): the commands' work as functions, imported lazily by ``kdtune``.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 - alpha).

    import kdtune
    study = kdtune.run_study("search_spaces/quickstart.yaml", out="runs/quickstart")
    runs = kdtune.load_results(study)          # pandas: one row per run at its best validation epoch
    verdicts = kdtune.recommend(study)         # what `kdtune recommend` prints, as a dict
    kdtune.write_report(study)                 # runs/quickstart/report.html
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any


if TYPE_CHECKING:
    import pandas as pd

    from kdtune.spec.schema import StudySpec

PathLike = str | os.PathLike[str]


def run_study(spec: PathLike | dict[str, Any] | StudySpec, out: PathLike | None = None, *,
              overrides: Sequence[str] = (), storage: str | None = None, address: str | None = None,
              cache_dir: str | None = None, max_concurrent: int | None = None, progress: bool = True) -> Path:
    """Run a study (as ``kdtune run``) and return its folder (default ``runs/<spec name>``).

    ``spec``: a YAML file, a mapping with the spec's sections, or a :class:`~kdtune.spec.schema.StudySpec`;
    ``overrides``: ``key.path=value`` strings, as ``--set``. The recommendation is not computed here: call
    :func:`recommend` on the folder.
    """
    from kdtune.spec.schema import StudySpec
    from kdtune.spec.schema import load_spec
    from kdtune.spec.schema import parse_spec
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study as run
    from kdtune.study.interrupts import catching_signals

    if isinstance(spec, StudySpec):
        resolved = spec
    elif isinstance(spec, dict):
        resolved = parse_spec(spec)
    else:
        resolved = load_spec(spec, overrides=list(overrides))
    folder = (Path(out) if out is not None else Path("runs") / resolved.name).absolute()
    with catching_signals():  # Ctrl-C leaves the study for resume_study (kdtune.errors.Interrupted)
        return run(resolved, RunOptions(out=folder, storage=storage or os.environ.get("KDTUNE_STORAGE"),
                                        address=address or os.environ.get("RAY_ADDRESS"), cache_dir=cache_dir,
                                        max_concurrent=max_concurrent, progress=progress))


def resume_study(study_dir: PathLike, *, address: str | None = None, max_concurrent: int | None = None,
                 progress: bool = True) -> Path:
    """Continue an interrupted study (as ``kdtune resume``); finished trials are not run again."""
    from kdtune.study.driver import resume_study as resume
    from kdtune.study.interrupts import catching_signals

    with catching_signals():
        return resume(Path(study_dir).absolute(), address=address or os.environ.get("RAY_ADDRESS"),
                      max_concurrent=max_concurrent, progress=progress)


def load_results(study_dir: PathLike) -> pd.DataFrame:
    """One row per run (one seed of one trial) at its best validation epoch, scored by :mod:`kdtune.analysis.scoring` as
    the recommendation and the report score it.

    The validation objective selects the epoch (the earliest on ties); the row holds every metric at that
    epoch, the trial's final ``trial_state`` (COMPLETE, PRUNED, FAIL, or RUNNING while the study runs) and
    ``best_epoch``. Runs without a finite validation value are left out.
    """
    import pandas as pd

    from kdtune.analysis.scoring import score_runs
    from kdtune.records.folder import StudyFolder
    from kdtune.records.results import RESULT_SCHEMA
    from kdtune.records.results import read_results
    from kdtune.tasks import objective_of

    spec = StudyFolder(study_dir).spec()
    runs = score_runs(read_results(Path(study_dir)).to_pylist(), objective_of(spec))
    columns = [("best_epoch" if n == "epoch" else n) for n in [*RESULT_SCHEMA.names, "trial_state"]]
    frame = pd.DataFrame([{**r.row, "best_epoch": r.row["epoch"]} for r in runs], columns=columns)
    return frame.sort_values(["condition", "trial_id", "seed"]).reset_index(drop=True)


def recommend(study_dirs: PathLike | Sequence[PathLike]) -> dict[str, Any]:
    """The recommendation per condition (``docs/recommendation_schema.md``); several folders are pooled.

    Nothing is written: :func:`kdtune.analysis.recommendation.write_recommendation` writes the JSON.
    """
    from kdtune.analysis.recommendation import recommend as make

    dirs = [study_dirs] if isinstance(study_dirs, (str, os.PathLike)) else list(study_dirs)
    return make(dirs)


def write_report(study_dirs: PathLike | Sequence[PathLike], out: PathLike | None = None) -> Path:
    """Write the HTML report (as ``kdtune report``; several folders: the comparison) and return its path."""
    from kdtune.report import write_comparison
    from kdtune.report import write_report as write

    target = Path(out) if out is not None else None
    if isinstance(study_dirs, (str, os.PathLike)):
        return write(Path(study_dirs), out=target).html
    return write_comparison([Path(d) for d in study_dirs], out=target).html
