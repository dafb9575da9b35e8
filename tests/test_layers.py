"""The import graph of the package: no circle, and the layers of DESIGN.md point one way.

Every ``import`` counts, also one inside a function (imported later, it still ties the two
modules together) and one only for type checking.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_risnet

ROOT = Path(napari_risnet.__file__).resolve().parent
PACKAGE = "napari_risnet"

#: layer -> the layers it must never import
NEVER = {
    "clicks": {"annotation", "evaluation", "training", "_napari", "cli", "data"},
    "metrics": {"annotation", "evaluation", "training", "_napari", "cli", "data"},
    "model": {"annotation", "evaluation", "training", "_napari", "cli", "data", "inference"},
    "inference": {"annotation", "evaluation", "training", "_napari", "cli", "data"},
    "evaluation": {"annotation", "training", "_napari", "cli"},
    "data": {"annotation", "training", "_napari", "cli"},
    "training": {"annotation", "_napari", "cli"},
    "annotation": {"training", "_napari", "cli", "evaluation"},
    "_napari": {"cli"},
}
#: imports that cross a layer upwards on purpose: the stack protocol measures the annotation
#: workflow itself (click, propagate, correct), so it drives an AnnotationSession
ALLOWED = {("napari_risnet.evaluation.stacks", "napari_risnet.annotation")}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (``from a import b``: ``a.b`` when that is
    a module, else ``a``)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_circle():
    """A package's ``__init__`` re-exporting its modules is no circle: a module importing a
    sibling goes to the sibling, not through the package."""
    graph = _graph()
    assert "napari_risnet.inference.predictor" in graph  # the walk found the package
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", sorted(NEVER))
def test_layers_import_downwards_only(layer):
    bad = sorted(f"{m} -> {t}" for m, targets in _graph().items() if _layer(m) == layer
                 for t in targets if _layer(t) in NEVER[layer] and (m, t) not in ALLOWED)
    assert bad == []
