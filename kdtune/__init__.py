"""kdtune: hyperparameter studies for response-based knowledge distillation.

alpha is the weight on the true labels everywhere in kdtune: alpha = 1 means no distillation.

The Python API (:mod:`kdtune.api`: ``run_study``, ``resume_study``, ``load_results``, ``load_trials``,
``recommend``, ``write_report``) loads on first use, so ``import kdtune`` stays light (no torch, no Ray).
"""

from __future__ import annotations

from typing import Any

from kdtune._version import __version__ as __version__


__all__ = ["load_results", "load_trials", "recommend", "resume_study", "run_study", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kdtune import api

        return getattr(api, name)
    raise AttributeError(f"module 'kdtune' has no attribute {name!r}")
