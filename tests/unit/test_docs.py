"""The documentation site: every page is in the nav, the generated pages are complete,
and (when MkDocs is installed) ``mkdocs build --strict`` succeeds."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.domain.policy import Policy
from remediator.reference import docs as docsgen
from remediator.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def nav_pages(entries: list[Any]) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages += nav_pages(value)
        else:
            pages.append(value)
    return pages


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return loaded


def test_the_nav_lists_every_page_once() -> None:
    listed = nav_pages(config()["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice"
    written = {
        p.relative_to(DOCS).as_posix()
        for p in DOCS.rglob("*.md")
        if not p.relative_to(DOCS).as_posix().startswith("gen/")
    }
    assert set(listed) == written | set(docsgen.PAGES)


def test_no_generated_page_is_also_written_by_hand() -> None:
    for path in docsgen.PAGES:
        assert not (DOCS / path).exists(), f"docs/{path} is generated: remove the file"


def test_the_configuration_page_names_every_setting() -> None:
    page = docsgen.pages()["reference/configuration.md"]
    for name, field in Settings.model_fields.items():
        assert f"`{ENV_PREFIX}{name.upper()}`" in page
        assert field.description, f"Settings.{name} has no description"
    assert "issue 1" not in page


def test_the_policy_page_has_every_key_and_the_default_policy_verbatim() -> None:
    page = docsgen.pages()["reference/policy.md"]
    for key in Policy.model_fields:
        assert f"| `{key}` |" in page
    default = (ROOT / "streams/remediator/default-policy.toml").read_text()
    assert default.rstrip("\n") in page


def test_the_module_map_has_every_module() -> None:
    page = docsgen.pages()["reference/modules.md"]
    package = ROOT / "streams" / "remediator"
    for path in package.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        assert f"| `{'.'.join(parts)}` |" in page


def test_docsgen_writes_the_pages(tmp_path: Path) -> None:
    assert docsgen.main([str(tmp_path)]) == 0
    for path in docsgen.PAGES:
        assert (tmp_path / path).read_text().startswith("# ")


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
@pytest.mark.skipif(
    importlib.util.find_spec("material") is None, reason="mkdocs-material not installed"
)
def test_mkdocs_build_strict_succeeds(tmp_path: Path) -> None:
    # About two seconds; the same command as `make docs`, into a scratch directory.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "reference" / "configuration" / "index.html").exists()
