"""The package's layout: a short top level, and a docstring on every module whose first
line is a sentence (the docs site's module map is made from those lines)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import remediator

PACKAGE = Path(remediator.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
#: At most this many modules beside the packages at the top, ``__init__.py`` included.
TOP_MODULES = 8


def test_the_top_of_the_package_has_at_most_eight_modules_beside_its_packages() -> None:
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_MODULES, top


def first_line_problem(path: Path) -> str | None:
    """Why the module's docstring does not open with a one-line sentence, or None."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
    if not docstring or not docstring.strip():
        return "no docstring"
    lines = docstring.strip("\n").splitlines()
    first = lines[0].strip()
    if not (first[0].isupper() or first[0] in "`:*'\""):
        return f"does not start as a sentence: {first!r}"
    if not first.endswith((".", "?", "!")):
        return f"first line is not a whole sentence: {first!r}"
    if len(lines) > 1 and lines[1].strip():
        return f"first line goes on on the next: {first!r}"
    return None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_opens_its_docstring_with_a_sentence(path: Path) -> None:
    assert first_line_problem(path) is None, first_line_problem(path)
