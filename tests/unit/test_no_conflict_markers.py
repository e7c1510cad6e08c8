"""No merge conflict markers in the repository's files (0.4's README shipped two)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(rb"^(<<<<<<< |>>>>>>> |=======$)", re.MULTILINE)


def test_no_file_holds_a_conflict_marker() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if not path.is_file() or path.suffix in {".png", ".lock"}:
            continue
        text = path.read_bytes()
        if MARKER.search(text):
            line = text[: MARKER.search(text).start()].count(b"\n") + 1  # type: ignore[union-attr]
            found.append(f"{name.decode()}:{line}")
    assert not found, f"merge conflict markers in: {', '.join(found)}"
