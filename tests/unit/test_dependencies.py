"""What the package imports is what it declares (issue 19, point 7).

A module imported directly but installed only as someone else's dependency breaks the
day that one stops depending on it; a floor the code does not import with breaks a
fresh install that resolves to it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "streams" / "remediator"


def _declared() -> dict[str, str]:
    """Declared dependencies: normalized name -> its version specifier."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in project["dependencies"]:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", requirement)
        assert match is not None, requirement
        found[_normalize(match.group(1))] = match.group(2)
    return found


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "remediator"}


def test_every_module_the_package_imports_comes_from_a_declared_dependency() -> None:
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    undeclared = {}
    for module in sorted(_imported_top_level()):
        owners = {_normalize(d) for d in distributions.get(module, [])}
        assert owners, f"{module} is imported but not installed"
        if not owners & declared.keys():
            undeclared[module] = sorted(owners)
    assert undeclared == {}


def test_libraries_whose_private_parts_are_used_are_capped_below_their_next_minor() -> None:
    declared = _declared()
    for name in ("aiokafka", "faust-streaming", "mode-streaming"):
        assert "<" in declared[name], f"{name} has no upper bound: {declared[name]}"


def test_floors_are_versions_the_code_imports_with() -> None:
    """Raised where a module the code uses appeared later than the old floor (checked
    against the released wheels: prometheus_client/aiohttp.py first ships in 0.24.0)."""
    floors = {"prometheus-client": (0, 24)}
    declared = _declared()
    for name, wanted in floors.items():
        match = re.search(r">=\s*(\d+)\.(\d+)", declared[name])
        assert match is not None, declared[name]
        assert (int(match.group(1)), int(match.group(2))) >= wanted, declared[name]
