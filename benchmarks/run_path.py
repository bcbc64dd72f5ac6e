"""The spec's path through `kdtune run`: which of kdtune's modules it passes through, and how often it comes back.

A profiler follows one `kdtune run` of a tiny digits study in this process (the driver's side: Ray's workers are
other processes). From the moment `load_spec` returns the spec, every call of a kdtune function that is handed
that spec as an argument (not as ``self``: the spec's own properties are the spec, not its path) appends the
function's module to the path; repeats in a row are one visit. Two figures, each up to Ray's start (the checks,
the estimate, the study folder) and for the whole run:

* modules: the distinct modules on the path;
* returns: visits to a module the path had already left (path length - modules).

    python benchmarks/run_path.py            # about a minute on 2 cores
    python benchmarks/run_path.py --path     # also print the path itself
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import yaml


SPEC = {
    "name": "run-path",
    "dataset": {"name": "digits", "val_fraction": 0.2},
    "teacher": {"arch": "mlp", "epochs": 2, "kwargs": {"widths": [32]}},
    "student": {"arch": "mlp", "epochs": 2, "kwargs": {"widths": [16]}},
    "conditions": {"noise_level": [0.1]},
    "budget": {"trials_per_condition": 1, "repeats": 1, "confirm_top_k": 0},
    "scheduler": {"type": "fifo"},
    "tracking": "none",
}


class PathTracer:
    """Profiles calls; keeps the module of each kdtune function called with the spec among its arguments."""

    def __init__(self) -> None:
        self.spec: Any = None
        self.path: list[str] = []
        self.until_ray: list[str] | None = None

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("kdtune"):
            return
        code = frame.f_code
        if event == "return" and code.co_name == "load_spec" and module == "kdtune.spec.schema":
            self.spec = arg
        if event != "call" or self.spec is None:
            return
        if code.co_name == "init_ray" and self.until_ray is None:
            self.until_ray = list(self.path)
        if self._has_spec(frame) and (not self.path or self.path[-1] != module):
            self.path.append(module)

    def _has_spec(self, frame: FrameType) -> bool:
        code = frame.f_code
        names = list(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
        if names and names[0] in ("self", "cls"):
            names = names[1:]
        values = [frame.f_locals.get(n) for n in names]
        flags = code.co_flags
        index = code.co_argcount + code.co_kwonlyargcount
        if flags & 0x04:  # *args
            values += list(frame.f_locals.get(code.co_varnames[index], ()))
            index += 1
        if flags & 0x08:  # **kwargs
            values += list(frame.f_locals.get(code.co_varnames[index], {}).values())
        return any(v is self.spec for v in values)


def figures(path: list[str]) -> tuple[int, int]:
    """(distinct modules, returns to a module already left) of a path whose repeats in a row are collapsed."""
    return len(set(path)), len(path) - len(set(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", action="store_true", help="print the path, one module per visit")
    args = parser.parse_args()
    from kdtune.cli import main as kdtune

    work = Path(tempfile.mkdtemp(prefix="kdtune-path-"))
    spec_file = work / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    os.environ["KDTUNE_CACHE_DIR"] = str(work / "cache")
    tracer = PathTracer()
    sys.setprofile(tracer)
    try:
        rc = kdtune(["run", str(spec_file), "--out", str(work / "study"), "--no-progress"])
    finally:
        sys.setprofile(None)
    assert rc == 0, rc
    until_ray = tracer.until_ray or []
    for name, path in (("up to Ray's start", until_ray), ("whole run (driver)", tracer.path)):
        modules, returns = figures(path)
        print(f"{name}: {modules} modules, {returns} returns")
        if args.path:
            print("  " + " -> ".join(m.removeprefix("kdtune.") for m in path))


if __name__ == "__main__":
    main()
