"""The documentation site's generated pages: configuration, policy reference, module map.

Each page is made from the code itself at build time (``mkdocs build`` calls
:func:`pages` through ``docs/gen/hooks.py``), so it cannot drift from it:

* ``reference/configuration.md``: every field of :class:`remediator.settings.Settings`,
  its ``REMEDIATOR_*`` variable, default and description;
* ``reference/policy.md``: the policy's JSON Schema (:class:`remediator.domain.policy.Policy`)
  as tables, then ``default-policy.toml`` verbatim;
* ``reference/modules.md``: every package and module of ``remediator`` with the first line
  of its docstring, read with :mod:`ast` (nothing is imported).

``python -m remediator.reference.docs DIR`` writes the pages under DIR, to read them without mkdocs.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

PACKAGE_DIR = Path(__file__).resolve().parents[1]
GENERATED_NOTE = (
    "<!-- Generated at build time by remediator/docsgen.py: edit the code, not this page. -->"
)

#: "(issue 19, point 5)" and the like: the project's tracker, not the reader's business.
_ISSUE = re.compile(r"\s*\((?:[^()]*,\s*)?issues? \d[^()]*\)", re.IGNORECASE)


def _cell(text: str) -> str:
    """Text fit for one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(value: str) -> str:
    return f"`{value}`" if value else "(empty)"


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _code(str(value))


def _readable(name: str, value: object) -> str:
    """The default again in larger units, where it is a large round number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return ""
    if name.endswith("_seconds") and value >= 86400 and value % 86400 == 0:
        days = int(value // 86400)
        return f" ({days} day{'s' if days > 1 else ''})"
    if name.endswith("_seconds") and value >= 3600 and value % 3600 == 0:
        hours = int(value // 3600)
        return f" ({hours} hour{'s' if hours > 1 else ''})"
    if name.endswith("_bytes") and value % 1024 == 0:
        return f" ({int(value // 1024)} KiB)"
    return ""


def configuration_page() -> str:
    """Every setting, its variable, default and description."""
    from remediator.settings import ENV_PREFIX, Settings

    lines = [
        "# Configuration",
        "",
        GENERATED_NOTE,
        "",
        "Every setting is an environment variable; a bad value stops the worker at start "
        "with one line naming the variable (exit status 2). Unknown `REMEDIATOR_*` "
        "variables are warned about.",
        "",
        "This page is generated from `remediator.settings.Settings`: it lists every "
        "setting the worker reads, with its default and meaning.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        variable = f"{ENV_PREFIX}{name.upper()}"
        description = _ISSUE.sub("", field.description or "")
        default = _default(field) + _readable(name, field.default)
        lines.append(f"| `{variable}` | {_cell(default)} | {_cell(description)} |")
    lines += [
        "",
        "Read elsewhere than these settings: `REMEDIATOR_API_CAFILE` (the command line's "
        "CA file for an HTTPS API, see [Command line](../command-line.md)), "
        "`REMEDIATOR_PUBLISH_HOST` (the address docker-compose.yml publishes ports on, see "
        "[Operations](../operations.md)) and `REMEDIATOR_TEST_FAILPOINTS` (tests only).",
        "",
    ]
    return "\n".join(lines)


def _type(schema: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _type(schema["allOf"][0])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            return f"table of {_type(extra)}"
        return "table"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    return str(kind or "any")


def _bounds(schema: Mapping[str, Any]) -> str:
    said = []
    for key, word in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
        ("minLength", "length >="),
        ("maxLength", "length <="),
        ("minItems", "items >="),
        ("maxItems", "items <="),
    ):
        if key in schema:
            said.append(f"{word} {schema[key]}")
    return ", ".join(said)


def _schema_default(schema: Mapping[str, Any]) -> str:
    if "default" not in schema:
        return ""
    value = schema["default"]
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, str):
        return _code(value)
    return _code(json.dumps(value))


def _properties(schema: Mapping[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, prop in schema.get("properties", {}).items():
        default = "required" if key in required else _schema_default(prop)
        bounds = _bounds(prop)
        kind = _type(prop) + (f" ({bounds})" if bounds else "")
        description = _ISSUE.sub("", prop.get("description", ""))
        lines.append(f"| `{key}` | {_cell(kind)} | {_cell(default)} | {_cell(description)} |")
    return lines


def policy_page() -> str:
    """The policy's JSON Schema as tables, and the default policy verbatim."""
    from remediator.domain.policy import Policy

    schema = Policy.model_json_schema()
    lines = [
        "# Policy reference",
        "",
        GENERATED_NOTE,
        "",
        "Every key of a policy file (`REMEDIATOR_POLICY_FILE`, TOML), generated from the "
        "policy's JSON Schema (`schemas/policy.json`, made from "
        "`remediator.domain.policy.Policy`). What the policy does and how its parts fit "
        "together: [The safety policy](../concepts/policy.md). A file is layered over the "
        "defaults: a key it sets replaces the default's, key by key.",
        "",
        "## Top level",
        "",
    ]
    if schema.get("description"):
        lines += [_ISSUE.sub("", str(schema["description"])), ""]
    lines += _properties(schema)
    for name, sub in sorted(schema.get("$defs", {}).items()):
        lines += ["", f"## {name}", ""]
        if sub.get("description"):
            lines += [" ".join(_ISSUE.sub("", str(sub["description"])).split()), ""]
        if "properties" in sub:
            lines += _properties(sub)
        elif "enum" in sub:
            lines.append("One of " + ", ".join(f"`{v}`" for v in sub["enum"]) + ".")
    default = (PACKAGE_DIR / "default-policy.toml").read_text()
    lines += [
        "",
        "## The default policy",
        "",
        "The policy in force when `REMEDIATOR_POLICY_FILE` is unset "
        "(`streams/remediator/default-policy.toml`, verbatim): copy it, change it, point "
        "the setting at the copy.",
        "",
        "```toml",
        default.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


def _first_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except SyntaxError:
        return "(does not parse)"
    if not doc:
        return ""
    first = doc.strip().split("\n\n", 1)[0]
    return _ISSUE.sub("", " ".join(first.split()))


def module_map_page(root: Path = PACKAGE_DIR) -> str:
    """Each package and module under ``root`` with the first line of its docstring."""
    lines = [
        "# Module map",
        "",
        GENERATED_NOTE,
        "",
        "Every package and module of `streams/remediator`, with the first paragraph of its "
        "docstring; generated from the source at build time, so it always matches the tree.",
        "",
        "| module | what it is |",
        "| --- | --- |",
    ]
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        lines.append(f"| `{name}` | {_cell(_first_line(path))} |")
    lines.append("")
    return "\n".join(lines)


#: Page path under docs/ -> its maker.
PAGES: dict[str, Callable[[], str]] = {
    "reference/configuration.md": configuration_page,
    "reference/policy.md": policy_page,
    "reference/modules.md": module_map_page,
}


def pages() -> dict[str, str]:
    """Every generated page: path under docs/ -> Markdown."""
    return {path: make() for path, make in PAGES.items()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m remediator.docsgen OUTPUT_DIR\n")
        return 2
    out = Path(args[0])
    for path, text in pages().items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        sys.stderr.write(f"wrote {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
