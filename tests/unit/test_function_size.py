"""No function of the package is over 60 lines, apart from the few that are literals."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "streams" / "remediator"
LIMIT = 60
#: Functions that are one declaration each: a document, an argument parser's options.
LITERALS = {
    "api/openapi.py:_remediations_api",  # the OpenAPI paths, one dict
    "simulation/fleet/options.py:add_arguments",  # argparse options, one after the other
}


def long_functions() -> dict[str, int]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LIMIT:
                    found[f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"] = length
    return found


def test_no_function_is_over_sixty_lines_outside_literals() -> None:
    over = {name: n for name, n in long_functions().items() if name not in LITERALS}
    assert not over, f"functions over {LIMIT} lines (split them): {over}"


def test_the_literals_listed_still_exist() -> None:
    assert set(long_functions()) >= LITERALS, "a listed literal shrank: drop it from LITERALS"
