"""`remediator policy check FILE` and `remediator policy explain FILE …` (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediator.cli import main


def test_check_shows_the_file_over_the_defaults_and_sample_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'cooldown_minutes = 5\n\n[[rules]]\nname = "site-nvlink"\nalerts = ["SiteNvlinkDown"]\n'
        'mode = "HOST_POWER_CYCLE"\n\n[clusters.c1]\nauto_approve = ["site-nvlink"]\n'
    )
    assert main(["policy", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cooldown 5 min" in out
    listed = out.split("first match wins")[1].split("sample decisions:")[0].splitlines()[1:]
    rules = [line.split()[0] for line in listed if line.startswith("    ")]
    assert rules[0] == "site-nvlink"  # the file's rules first, then the defaults
    assert "guest-faults" in rules
    assert "cluster c1: auto-approve site-nvlink" in out
    assert "alert SiteNvlinkDown CRITICAL" in out
    assert "-> rule site-nvlink: open HOST_POWER_CYCLE" in out
    assert "-> healthy" in out
    assert "-> rule fallback: open REBOOT_VM" in out

    assert main(["policy", "check", str(path), "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["policy"]["cooldown_minutes"] == 5
    assert document["policy"]["rules"][0]["name"] == "site-nvlink"
    assert len(document["sha256"]) == 64


def test_explain_names_the_rule_and_mode_for_one_signal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.toml"
    path.write_text("cooldown_minutes = 5\n")
    cases = [
        (
            ["--alert", "DmesgXidError", "--annotation", "xid=79"],
            "rule xid-79-gpu-fell-off-bus: open HOST_AWARE",
        ),
        (
            ["--alert", "DmesgXidError", "--annotation", "xid=13"],
            "rule reboot-faults: open REBOOT_VM",
        ),
        (["--alert", "KubeNodeDiskPressure"], "rule record-only: record only"),
        (["--alert", "DmesgXidError", "--status", "RESOLVED"], "healthy"),
        (["--test", "DCGM_DIAG"], "rule host-hardware-tests: open HOST_AWARE"),
        (["--test", "DCGM_DIAG", "--result", "PASSED"], "healthy"),
    ]
    for extra, expected in cases:
        assert main(["policy", "explain", str(path), *extra]) == 0
        assert capsys.readouterr().out.startswith(expected), extra


def test_a_file_that_cannot_be_used_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[clusters.c1]\nauto_approve = ["no-such-rule"]\n')
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "auto_approve names no rule: no-such-rule" in err
    assert main(["policy", "check", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text("")
    assert main(["policy", "explain", str(good), "--alert", "X", "--annotation", "novalue"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_check_lists_each_freeze_with_its_next_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "freezes.toml"
    path.write_text(
        '[[freeze]]\nname = "weekly"\ncron = "0 18 * * FRI"\nduration_hours = 62\n'
        'timezone = "America/New_York"\nreason = "weekend"\n\n'
        '[[freeze]]\nname = "past"\nstart = 2020-01-01T00:00:00Z\nend = 2020-01-02T00:00:00Z\n'
        'reason = "long gone"\n'
    )
    assert main(["policy", "check", str(path)]) == 0
    out = capsys.readouterr().out
    section = out.split("change freezes (2)")[1].split("sample decisions:")[0]
    weekly = section.split("past")[0]
    windows = [line.split() for line in weekly.splitlines() if "->" in line]
    assert len(windows) == 3
    assert all(w[2] == "Fri" and w[1] in ("22:00", "23:00") for w in windows)  # 18:00 EDT/EST
    assert all(w[6] == "Mon" for w in windows)
    assert "(over: no window from now on)" in section

    assert main(["policy", "check", str(path), "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["freeze_windows"]["weekly"]) == 3
    assert document["freeze_windows"]["past"] == []
    assert document["policy"]["freeze"][0]["timezone"] == "America/New_York"
