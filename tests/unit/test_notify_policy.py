"""The policy's ``[[notify]]`` targets: what is accepted, refused, shown and kept secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediator.cli import main
from remediator.domain.notify_policy import NotifyError, NotifyTarget, read_secrets, shown_url
from remediator.domain.policy import PolicyError, load_policy_in_force, parse_layered
from remediator.settings import ConfigError, load_settings

TARGET = """
[[notify]]
name = "ops"
url = "https://hooks.example.com/services/T0/B0/very-secret"
on = ["PENDING_APPROVAL", "FAILED", "HELD_FOR_HUMAN", "BLAST_RADIUS_TRIPPED"]
"""


def test_a_target_gets_sane_defaults() -> None:
    (target,) = parse_layered(TARGET).notify
    assert target.format == "cloudevents"
    assert target.header == "X-Remediator-Signature"
    assert target.secret_file is None
    assert target.clusters == []
    assert target.max_attempts >= 3
    assert 0 < target.backoff_initial_seconds <= target.backoff_max_seconds
    assert target.timeout_seconds > 0


def test_the_default_policy_has_no_targets() -> None:
    assert parse_layered("").notify == []


def test_an_unknown_key_in_a_target_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"notify\.0\.colour: Extra inputs are not permitted"):
        parse_layered(TARGET + 'colour = "red"\n')


def test_an_unknown_trigger_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(
        PolicyError, match=r"unknown trigger\(s\) PENDING_APROVAL.*PENDING_APPROVAL"
    ):
        parse_layered(TARGET.replace('"FAILED"', '"PENDING_APROVAL"'))


def test_every_state_and_policy_event_kind_and_the_freeze_events_are_triggers() -> None:
    policy = parse_layered(
        TARGET.replace(
            '"FAILED"', '"FAILED", "FREEZE_STARTED", "FREEZE_ENDED", "VERIFICATION_FAILED", "*"'
        )
    )
    assert "FREEZE_STARTED" in policy.notify[0].on


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "example.com/hook", "https:///nohost", "http://h:99999/"]
)
def test_a_url_that_is_not_http_or_https_is_refused(url: str) -> None:
    with pytest.raises(PolicyError, match="expected an http:// or https:// URL"):
        parse_layered(TARGET.replace("https://hooks.example.com/services/T0/B0/very-secret", url))


def test_target_names_are_unique() -> None:
    with pytest.raises(PolicyError, match="notify target names must be unique: ops"):
        parse_layered(TARGET + TARGET)


def test_a_format_other_than_cloudevents_or_slack_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"notify\.0\.format"):
        parse_layered(TARGET + 'format = "teams"\n')


def test_a_target_wants_its_triggers_in_its_clusters() -> None:
    target = NotifyTarget(name="t", url="http://h/", on=["FAILED"], clusters=["c1"])
    assert target.wants("FAILED", "c1")
    assert not target.wants("FAILED", "c2")
    assert not target.wants("PENDING", "c1")
    anything = NotifyTarget(name="t", url="http://h/", on=["*"])
    assert anything.wants("SHADOW_OPEN", "any")


def test_the_url_is_shown_without_its_path_credentials_or_query() -> None:
    assert (
        shown_url("https://u:p@hooks.slack.com/services/T/B/X?a=1") == "https://hooks.slack.com/…"
    )
    assert shown_url("http://10.0.0.1:8080/") == "http://10.0.0.1:8080/"
    (target,) = parse_layered(TARGET).notify
    assert target.model_dump(mode="json")["url"] == "https://hooks.example.com/…"
    assert target.url.endswith("very-secret")  # kept whole for delivery


def test_secrets_are_read_relative_to_the_policy_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ops").write_bytes(b"s3cret\n")
    path = tmp_path / "policy.toml"
    path.write_text(TARGET + 'secret_file = "secrets/ops"\n')
    policy = load_policy_in_force(path).policy
    assert read_secrets(policy.notify, path) == {"ops": b"s3cret"}


def test_an_unreadable_or_empty_secret_file_is_one_line_without_the_secret(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(TARGET + 'secret_file = "missing"\n')
    policy = load_policy_in_force(path).policy
    with pytest.raises(NotifyError, match="notify target 'ops': cannot read its secret_file"):
        read_secrets(policy.notify, path)
    (tmp_path / "missing").write_bytes(b"\n")
    with pytest.raises(NotifyError, match="is empty"):
        read_secrets(policy.notify, path)


def test_a_worker_does_not_start_with_an_unreadable_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(TARGET + 'secret_file = "missing"\n')
    with pytest.raises(ConfigError, match="REMEDIATOR_POLICY_FILE: notify target 'ops'"):
        load_settings({"REMEDIATOR_POLICY_FILE": str(path)})


def test_policy_check_lists_the_targets_never_the_secret_nor_the_url_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "secret").write_bytes(b"do-not-print-me")
    path = tmp_path / "policy.toml"
    path.write_text(TARGET + 'secret_file = "secret"\nclusters = ["c1"]\n')
    assert main(["policy", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "notify (1 target(s)):" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("ops "))
    assert "cloudevents" in line
    assert "https://hooks.example.com/…" in line
    assert "PENDING_APPROVAL, FAILED" in line
    assert "c1" in line
    assert "signed (X-Remediator-Signature, secret from secret)" in line
    assert main(["policy", "check", str(path), "--output", "json"]) == 0
    text = capsys.readouterr().out
    assert json.loads(text)["policy"]["notify"][0]["name"] == "ops"
    assert "do-not-print-me" not in out + text
    assert "very-secret" not in out + text


def test_policy_check_refuses_an_unreadable_secret_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(TARGET + 'secret_file = "missing"\n')
    assert main(["policy", "check", str(path)]) == 2
    assert "cannot read its secret_file" in capsys.readouterr().err
