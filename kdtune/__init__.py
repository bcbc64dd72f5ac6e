"""kdtune: hyperparameter studies for response-based knowledge distillation.

alpha is the weight on the true labels everywhere in kdtune: alpha = 1 means no distillation.

The Python API (:mod:`kdtune.api`: ``run_study``, ``resume_study``, ``load_results``, ``recommend``,
``write_report``) loads on first use, so ``import kdtune`` stays light (no torch, no Ray).
"""

from __future__ import annotations

import sys
import types
from typing import Any


__version__ = "0.1.0"
__all__ = ["load_results", "recommend", "resume_study", "run_study", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kdtune import api

        return getattr(api, name)
    raise AttributeError(f"module 'kdtune' has no attribute {name!r}")


class _Package(types.ModuleType):
    """``kdtune.recommend`` is the API function, although a submodule has the same name.

    Importing a submodule sets it as an attribute of its package, which would replace the function with the
    module :mod:`kdtune.recommend` once anything imported it. The submodule stays importable as usual
    (``from kdtune.recommend import ...``, ``sys.modules``); only the package attribute is kept for the API.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
