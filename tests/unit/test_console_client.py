"""The CLI client's reading of error answers, of --url, and of enum values given short."""

from __future__ import annotations

import argparse

import httpx
import pytest

from remediator.console import client, commands


def answer(status: int, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.Response(status, content=body, headers={"content-type": content_type})


def test_an_api_error_carries_the_contracts_message_and_status_name() -> None:
    error = client._error_from(
        answer(
            409,
            b'{"error": {"code": 409, "status": "FAILED_PRECONDITION", "message": "it is RUNNING",'
            b' "type": "invalid_request_error"}, "code": 9, "message": "it is RUNNING"}',
        )
    )
    assert (error.status, error.name, error.message) == (
        409,
        "FAILED_PRECONDITION",
        "it is RUNNING",
    )


def test_an_error_without_the_contracts_body_still_reads_as_one_line() -> None:
    error = client._error_from(answer(502, b"<html>\n  Bad   gateway\n</html>", "text/html"))
    assert error.message == "HTTP 502 Bad Gateway: <html> Bad gateway </html>"
    assert client._error_from(answer(503, b"")).message == "HTTP 503 Service Unavailable"


@pytest.mark.parametrize(
    "given",
    ["http://h:6066", "http://h:6066/", "http://h:6066/v1/compute", " http://h:6066/v1/compute/ "],
)
def test_the_url_may_be_given_with_or_without_the_base_path(given: str) -> None:
    assert client.api_root(given) == "http://h:6066"


def test_modes_states_and_triggers_are_accepted_short_full_or_in_any_case() -> None:
    assert commands._modes("reboot_vm,REMEDIATION_MODE_VM_ONLY") == [
        "REMEDIATION_MODE_REBOOT_VM",
        "REMEDIATION_MODE_VM_ONLY",
    ]
    assert commands._states("pending_approval, RUNNING,") == ["PENDING_APPROVAL", "RUNNING"]
    assert commands._triggers("automated") == ["REMEDIATION_TRIGGER_AUTOMATED"]
    # Unknown values go as given: the API refuses them, naming the allowed ones.
    assert commands._modes("REBOOT") == ["REBOOT"]
    assert commands._one_mode("host_aware") == "REMEDIATION_MODE_HOST_AWARE"
    assert commands._one_mode(None) is None


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="remediator")
    commands.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_documented_command_shapes_parse() -> None:
    args = parse(
        "remediations", "approve", "r-1", "--cluster", "c", "--instance", "i",
        "--mode", "REBOOT_VM", "--comment", "try a reboot", "--output", "json",
    )  # fmt: skip
    assert (args.id, args.cluster, args.instance, args.mode, args.comment, args.output) == (
        "r-1", "c", "i", "REBOOT_VM", "try a reboot", "json"
    )  # fmt: skip
    args = parse("remediations", "list", "--state", "PENDING_APPROVAL", "--state", "PENDING")
    assert args.cluster is None
    assert args.state == ["PENDING_APPROVAL", "PENDING"]
    args = parse("clusters", "pause", "c", "--reason", "maintenance")
    assert (args.cluster, args.reason) == ("c", "maintenance")


def test_a_missing_required_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse("remediations", "approve", "r-1", "--cluster", "c")
    assert exit_.value.code == commands.EXIT_USAGE
    assert "--instance" in capsys.readouterr().err
