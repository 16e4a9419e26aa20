"""The layers run one way, checked on the source (every import, also inside functions):

    geowarn (plumbing) <- devices <- ingest, gis <- alerts <- notify, api
                       <- simulators <- demo, services (and bench) on top

A module may import its own package and packages of lower layers only; siblings of one layer
(ingest and gis, notify and api) do not import each other. No two modules import each other,
directly or round a loop (a function-level import is still an import). The command table of
geowarn/cli.py names modules as strings: the composition root, not an import.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from geowarn.settings import PROJECT_ROOT

LAYER = {
    "geowarn": 0,
    "devices": 1,
    "ingest": 2, "gis": 2,
    "alerts": 3,
    "notify": 4, "api": 4,
    "simulators": 5,
    "demo": 6, "services": 6,
    "bench": 7,
}
# Known exceptions, each with the reason it is allowed; keep this empty if at all possible.
ALLOWED: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYER:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _known(name: str) -> str | None:
    """The project module `name` refers to (a module, or a name inside one), if any."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := _known(alias.name)) is not None:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                if (target := _known(f"{source}.{alias.name}")) is not None:
                    yield target, node.lineno


GRAPH = {m: {t: line for t, line in _imports(m, p) if t != m} for m, p in MODULES.items()}


def test_every_top_level_package_has_a_layer() -> None:
    packages = {p.parent.name for p in PROJECT_ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(LAYER), f"give {sorted(packages - set(LAYER))} a layer here"


def test_imports_go_down_the_layers_only() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        here = module.split(".")[0]
        for target, line in targets.items():
            there = target.split(".")[0]
            if there != here and LAYER[there] >= LAYER[here] and \
                    (module, target) not in ALLOWED:
                wrong.append(f"{MODULES[module].relative_to(PROJECT_ROOT)}:{line}: {module} "
                             f"(layer {LAYER[here]}) imports {target} (layer {LAYER[there]})")
    assert wrong == [], "\n".join(wrong)


def test_plumbing_imports_no_feature_package() -> None:
    assert {t for m, ts in GRAPH.items() if m.split(".")[0] == "geowarn"
            for t in ts if t.split(".")[0] != "geowarn"} == set()


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(GRAPH[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(GRAPH[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_check_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function and a relative one are found."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from alerts.engine import service\n"
                      "from .broker import embedded_broker\n")
    found = dict(_imports("demo.probe", source))
    assert "alerts.engine.service" in found and "demo.broker" in found


def test_nothing_probes_for_the_projects_own_packages() -> None:
    """A broken import of the project's own code must fail, not turn into a skip or a
    silently missing feature: no importorskip/find_spec on its own modules."""
    own = "|".join(LAYER)
    probe = re.compile(rf"""(importorskip|find_spec)\(\s*["']({own})\b""")
    files = [*MODULES.values(), *sorted((PROJECT_ROOT / "tests").rglob("*.py"))]
    found = [f"{p.relative_to(PROJECT_ROOT)}: {m.group(0)}" for p in files
             for m in probe.finditer(p.read_text(encoding="utf-8"))]
    assert found == []
