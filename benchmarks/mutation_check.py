"""Do the statistics tests catch the regressions that matter? Break the verdict code on a copy and see.

Each mutation below is a one-line change to the statistics a verdict rests on. For each, the script copies the
package (and the tests, benchmarks and specs they read) to a temporary folder, applies the change there, runs
the statistics tests against the copy in a fresh ``pytest`` process, and reports which tests fail. The working
tree is never edited. A first run on the unchanged copy must pass, or the check means nothing; every mutation
must make at least one test fail.

A mutation that no longer applies (the code it changes was rewritten) is an error, not a pass: when the verdict
method changes, update the mutation to break the new code the same way.

    python benchmarks/mutation_check.py                      # the statistics tests (about 2 minutes on 2 cores)
    python benchmarks/mutation_check.py --tests tests/test_verdict_levels.py

Exit status: 0 when every mutation is caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
COPIED = ("kdtune", "tests", "benchmarks", "search_spaces", "docs", "pyproject.toml")
TESTS = ("tests/test_verdict_levels.py", "tests/test_recommend_calibration.py")


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path``."""

    name: str
    path: str
    old: str
    new: str


MUTATIONS = (
    Mutation("drop the per-candidate factor of the multiplicity correction", "kdtune/analysis/verdicts.py",
             "(max(1, conditions) * max(1, candidates))", "max(1, conditions)"),
    Mutation("drop Bonferroni across conditions", "kdtune/analysis/verdicts.py",
             "(max(1, conditions) * max(1, candidates))", "max(1, candidates)"),
    Mutation("sequential.nominal_level returns alpha (no repeated-interval correction)",
             "kdtune/analysis/sequential.py", "    if len(looks) == 1:\n        return alpha\n", "    return alpha\n"),
    Mutation("judge verdicts on search runs instead of confirmation runs", "kdtune/analysis/arms.py",
             "(r.objective, r.test) for s, r in self.confirm.items()", "(r.objective, r.test) for s, r in self.search.items()"),
)


def copy_tree(into: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)


def apply(mutation: Mutation, root: Path) -> None:
    path = root / mutation.path
    text = path.read_text()
    count = text.count(mutation.old)
    if count != 1:
        raise SystemExit(f"mutation {mutation.name!r}: {mutation.path} holds its text {count} times (expected once); "
                         "the code changed: update the mutation in benchmarks/mutation_check.py")
    path.write_text(text.replace(mutation.old, mutation.new))


def run_tests(root: Path, tests: list[str], timeout: float) -> tuple[list[str], int, float]:
    """The failing test ids, the number of tests run and the seconds taken, for the copy at ``root``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")])}
    env.pop("PYTHONSAFEPATH", None)
    # -P: the current directory is not put first on sys.path, so the copy's package is the one imported.
    where = subprocess.run([sys.executable, "-P", "-c", "import kdtune; print(kdtune.__file__)"], cwd=root, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"the copy's tests would import kdtune from {where}, not from the copy")
    report = root / "report.xml"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                    *tests], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if not report.exists():
        raise SystemExit(f"pytest wrote no report under {root}")
    failed, total = [], 0
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '').rsplit('.', 1)[-1]}.py::{case.get('name')}")
    return failed, total, seconds


def check(mutation: Mutation | None, tests: list[str], timeout: float) -> tuple[list[str], int, float]:
    with tempfile.TemporaryDirectory(prefix="kdtune-mutation-") as folder:
        root = Path(folder)
        copy_tree(root)
        if mutation is not None:
            apply(mutation, root)
        return run_tests(root, tests, timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", nargs="+", default=list(TESTS), help="test files to run (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run")
    args = parser.parse_args()
    failed, total, seconds = check(None, args.tests, args.timeout)
    print(f"unchanged code: {total} tests, {len(failed)} failed ({seconds:.0f} s)")
    if failed or total == 0:
        print("the unchanged code must pass every test first:", *failed, sep="\n  ")
        return 1
    rows = []
    for mutation in MUTATIONS:
        failed, total, seconds = check(mutation, args.tests, args.timeout)
        rows.append((mutation.name, failed))
        print(f"{mutation.name}: {len(failed)} of {total} tests failed ({seconds:.0f} s)", flush=True)
    print("\n| mutation | caught | failing tests |\n| --- | --- | --- |")
    for name, failed in rows:
        print(f"| {name} | {'yes' if failed else '**NO**'} | {'<br>'.join(f'`{t}`' for t in failed) or '(none)'} |")
    return 0 if all(failed for _, failed in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
