"""MkDocs hook: adds the generated pages (remediator.reference.docs) to the site at build time.

Named in mkdocs.yml (``hooks:``); the pages are never written into docs/, so they cannot
be edited by hand or go stale.
"""

from __future__ import annotations

from typing import Any

from mkdocs.structure.files import File, Files

from remediator.reference import docs as docsgen


def on_files(files: Files, config: Any) -> Files:
    for path, text in docsgen.pages().items():
        files.append(File.generated(config, path, content=text))
    return files
