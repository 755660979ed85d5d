"""The layout is the architecture (docs/architecture.md): who may import whom, and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("graphhook", "receiver", "workers", "emulator")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Project modules ``module`` imports, at any depth of its code (lazy and TYPE_CHECKING imports included)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
    return {n for n in names if n in MODULES and n != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _importers(of: str, among: str) -> list[str]:
    return sorted(m for m, deps in GRAPH.items() if m.startswith(among) and any(d.startswith(of) for d in deps))


@pytest.mark.parametrize("among, of", [
    ("receiver", "workers"), ("workers", "receiver"),  # peers: the receiver enqueues jobs by dotted name
    ("graphhook.core", "receiver"), ("graphhook.core", "workers"), ("graphhook.core", "emulator"),
    ("graphhook.core", "graphhook.commands"), ("graphhook.core", "graphhook.cli"),
    ("emulator", "graphhook"), ("emulator", "receiver"), ("emulator", "workers"),
])
def test_forbidden_imports(among, of):
    assert _importers(of, among) == [], f"{among} must not import {of}"


def test_no_import_cycles():
    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            for dep in GRAPH[current]:
                if dep == goal:
                    return True
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return False

    cyclic = sorted(m for m in GRAPH if reaches(m, m))
    assert cyclic == [], f"modules on an import cycle: {cyclic}"


def test_the_check_sees_the_imports():
    assert "graphhook.core.settings" in GRAPH["receiver.app"] and "graphhook.core.settings" in GRAPH["workers.runtime"]
    assert "workers.triggers.model" in GRAPH["workers.triggers.actions"]
