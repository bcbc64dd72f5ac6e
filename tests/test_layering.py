"""kdtune's layers, checked: the layer map (a module imports only from its own layer or below, every
exception listed with its reason; a command never imports another command); the core (data, models, losses,
training loop, teacher) never imports Ray or W&B; read-only commands import neither Ray nor torch (plan: no
Ray); the readers (status, report, recommend, results, the cache) never import Ray or W&B, not even inside a
function; and no import cycle among kdtune's modules.

The static checks read the source with ``ast`` (nothing is imported): every ``import`` counts, at the top of a
module or inside a function, except under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parents[1] / "kdtune"


def test_core_does_not_import_ray_or_wandb() -> None:
    code = ("import sys, kdtune.core.data, kdtune.tasks.image.models, kdtune.core.distill, kdtune.core.train,"
            " kdtune.cache.teacher, kdtune.tasks.image.views;"
            "print([m for m in ('ray', 'wandb', 'optuna') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# Read-only commands and what they must not import: they read files, and Ray (~1.3 s) or torch (~2 s) would
# be most of their time. `plan` times a few training steps, so it needs torch, never Ray.
READ_ONLY = [
    (["status", "{study}"], ("ray", "torch", "wandb")),
    (["status", "{study}", "--format", "json"], ("ray", "torch", "wandb")),
    (["recommend", "{study}", "--out", "{tmp}/recommendation.json"], ("ray", "torch", "wandb")),
    (["report", "{study}", "--out", "{tmp}/report.html"], ("ray", "torch", "wandb")),
    (["cache", "ls"], ("ray", "torch", "wandb")),
    (["plan", "{spec}", "--format", "json"], ("ray", "wandb")),
]


@pytest.mark.parametrize(("argv", "forbidden"), READ_ONLY, ids=[" ".join(a[:2]) for a, _ in READ_ONLY])
def test_read_only_commands_import_neither_ray_nor_torch(small_study: Path, tmp_path: Path, argv: list[str],
                                                        forbidden: tuple[str, ...]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text((small_study / "spec.yaml").read_text())
    args = [a.format(study=small_study, tmp=tmp_path, spec=spec) for a in argv]
    code = ("import sys\nfrom kdtune.cli import main\nrc = main(sys.argv[1:])\n"
            f"print('imported:', sorted(m for m in {forbidden!r} if m in sys.modules), file=sys.stderr)\n"
            "sys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported: []" in done.stderr, done.stderr[-2000:]


# ------------------------------------------------------------------------------------ the static import graph

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in ``tree``, at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
        visit(node)

    visit(tree)
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """kdtune's modules -> the kdtune modules they import, and -> the top-level outside packages they import.

    ``from kdtune.x import y`` imports ``kdtune.x`` and, when ``y`` is a module of it, ``kdtune.x.y``.
    """
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for name, path in files.items():
        internal[name], external[name] = set(), set()
        for module, names in _imports(ast.parse(path.read_text(), filename=str(path))):
            if module == "kdtune" or module.startswith("kdtune."):
                internal[name].add(module)
                internal[name].update(f"{module}.{n}" for n in names if f"{module}.{n}" in files)
            else:
                external[name].add(module.split(".")[0])
        internal[name] = {m for m in internal[name] if m in files and m != name}
    return internal, external


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_among_kdtune_modules() -> None:
    internal, _ = _graph()
    assert len(internal) > 40  # the whole package was read
    cycles = _cycles(internal)
    detail = ["; ".join(f"{m} -> {sorted(internal[m] & set(c))}" for m in c) for c in cycles]
    assert cycles == [], detail


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check itself can fail: a function-level import closing a loop is one."""
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import kdtune.c\n"
                     "def f():\n    from kdtune.b import g\n")
    assert [m for m, _ in _imports(tree)] == ["typing", "kdtune.b"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def _closure(graph: dict[str, set[str]], roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


# The readers and what they reach, at any depth and inside functions: never Ray or W&B. The one exception is
# the W&B Report (``kdtune report --wandb``), which imports W&B when called, and the W&B settings it uses.
READERS = ["kdtune.records.status", "kdtune.commands.status", "kdtune.report", "kdtune.commands.report",
           "kdtune.analysis.recommendation", "kdtune.commands.recommend", "kdtune.records.results", "kdtune.cache",
           "kdtune.commands.cache"]
WANDB_ON_REQUEST = {"kdtune.report.wandb_report", "kdtune.wandb_settings"}


def test_readers_never_import_ray_or_wandb() -> None:
    internal, external = _graph()
    roots = [m for m in internal if any(m == r or m.startswith(f"{r}.") for r in READERS)]
    reached = _closure(internal, roots)
    assert "kdtune.report.panels" in reached and "kdtune.records.status" in reached
    ray = sorted(m for m in reached if "ray" in external[m])
    wandb = sorted(m for m in reached if external[m] & {"wandb", "wandb_workspaces"} and m not in WANDB_ON_REQUEST)
    assert ray == [], f"these modules reached from {READERS} import Ray: {ray}"
    assert wandb == [], f"these modules reached from {READERS} import W&B: {wandb}"


def test_readers_load_without_ray_wandb_or_torch() -> None:
    """Importing the readers loads neither Ray, W&B nor torch (torch comes only where a cache entry is built
    or read, inside the cache's functions)."""
    code = ("import sys, kdtune.records.status, kdtune.report, kdtune.analysis.recommendation,"
            " kdtune.records.results, kdtune.cache, "
            "kdtune.records.folder; print(sorted(m for m in ('ray', 'wandb', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------- the layer map

#: kdtune's layers from the bottom (docs/architecture.md). A module belongs to the layer of its longest
#: matching prefix; it may import its own layer and those below, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("kdtune._version", "kdtune.errors", "kdtune.secrets", "kdtune.tables", "kdtune.wandb_settings",
              "kdtune.trial_io", "kdtune.log_output")),
    ("core", ("kdtune.core",)),
    # The cache's storage primitives know no task: a root on any filesystem, atomic writes, one builder per
    # key, the checked Parquet file. Every task's codec builds on them.
    ("storage", ("kdtune.cache.store", "kdtune.cache.lock", "kdtune.cache.parquet", "kdtune.cache.tensors")),
    ("tasks", ("kdtune.tasks",)),
    ("inputs", ("kdtune.spec", "kdtune.cache")),
    ("records", ("kdtune.records",)),
    ("analysis", ("kdtune.analysis",)),
    ("study", ("kdtune.study",)),
    ("report", ("kdtune.report",)),
    ("faces", ("kdtune", "kdtune.api", "kdtune.cli", "kdtune.__main__", "kdtune.commands")),
]

#: Upward imports that are allowed, each with its reason.
UPWARD_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("kdtune.tasks.image.task", "kdtune.cache"): "the image task's teacher logits are kept in the teacher-logit "
    "cache (its codec); Task.prepare, run by the driver before any trial, gets them there",
    ("kdtune.tasks.image.task", "kdtune.cache.teacher"): "Task.prepare checks the student on one batch with the "
    "cache's build_checked before any teacher trains, as the teacher is checked inside the cache",
}


def _layer(module: str) -> int:
    matches = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(f"{prefix}.")]
    assert matches, f"{module} is in no layer of LAYERS: add it"
    return max(matches)[1]


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[_layer(m)][0]}) -> {d} ({LAYERS[_layer(d)][0]})"
                  for m, deps in graph.items() for d in deps
                  if _layer(d) > _layer(m) and (m, d) not in UPWARD_EXCEPTIONS)


def test_every_module_is_in_a_layer_and_imports_only_downward() -> None:
    internal, _ = _graph()
    assert {LAYERS[_layer(m)][0] for m in internal} == {name for name, _ in LAYERS}  # every layer is populated
    assert _upward(internal) == []


def test_the_layer_check_finds_an_upward_import() -> None:
    """The check itself can fail: the core importing the study driver is an upward import."""
    graph = {"kdtune.core.train": {"kdtune.study.driver", "kdtune.errors"}, "kdtune.study.driver": {"kdtune.core.train"},
             "kdtune.errors": set()}
    assert _upward(graph) == ["kdtune.core.train (core) -> kdtune.study.driver (study)"]


def test_commands_never_call_other_commands() -> None:
    """Commands parse, call the library and print: finishing a run calls a library function, not ``recommend``."""
    internal, _ = _graph()
    sideways = sorted(f"{m} -> {d}" for m, deps in internal.items() if m.startswith("kdtune.commands.")
                      for d in deps if d.startswith("kdtune.commands."))
    assert sideways == []
