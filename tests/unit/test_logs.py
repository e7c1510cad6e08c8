"""The worker's log formats and the demotion of framework chatter (logs.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from remediator import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_context_fields(captured: io.StringIO) -> None:
    logs.configure("info", "json", captured)
    logging.getLogger("remediator.pipeline").info(
        "opened remediation %s", "r-1", extra=logs.about("cl-1", "i-1", "r-1")
    )
    logging.getLogger("remediator.api").warning("no context here")
    first, second = (json.loads(line) for line in lines(captured))
    assert first["message"] == "opened remediation r-1"
    assert first["level"] == "INFO"
    assert first["logger"] == "remediator.pipeline"
    assert (first["cluster_id"], first["instance_id"], first["remediation_id"]) == (
        "cl-1",
        "i-1",
        "r-1",
    )
    assert first["time"].endswith("+00:00")
    assert "cluster_id" not in second


def test_json_keeps_a_traceback_in_one_line(captured: io.StringIO) -> None:
    logs.configure("info", "json", captured)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("remediator").exception("failed")
    (line,) = lines(captured)
    entry = json.loads(line)
    assert "ValueError: boom" in entry["exception"]


def test_framework_info_is_hidden_at_info_and_shown_as_debug_at_debug(
    captured: io.StringIO,
) -> None:
    logs.configure("info", "text", captured)
    logging.getLogger("faust.transport.consumer").info("Updating subscribed topics to: ...")
    logging.getLogger("httpx").info("HTTP Request: GET http://cp/operations/x 404")
    logging.getLogger("remediator.pipeline.executor").info("[^--Executor]: Starting...")
    logging.getLogger("aiokafka.consumer").warning("Heartbeat failed")
    logging.getLogger("remediator.app").info("ready: API at ...")
    shown = lines(captured)
    assert len(shown) == 2
    assert "WARNING aiokafka.consumer: Heartbeat failed" in shown[0]
    assert shown[1].endswith("INFO    remediator.app: ready: API at ...")

    debug = io.StringIO()
    logs.configure("debug", "text", debug)
    logging.getLogger("httpx").info("HTTP Request: GET http://cp/operations/x 404")
    (line,) = lines(debug)
    assert " DEBUG   httpx: HTTP Request" in line


def test_about_leaves_out_what_it_was_not_told() -> None:
    assert logs.about("cl-1") == {"cluster_id": "cl-1"}
    assert logs.about(remediation_id="r") == {"remediation_id": "r"}


def test_a_request_aiohttp_cannot_parse_is_one_info_line_without_the_bytes(
    captured: io.StringIO,
) -> None:
    from aiohttp.http_exceptions import LineTooLong

    logs.configure("info", "text", captured)
    try:
        raise LineTooLong(b"/aaaa" * 10, 8190)
    except LineTooLong:
        logging.getLogger("aiohttp.server").exception("Error handling request from 127.0.0.1")
    (line,) = lines(captured)
    assert "INFO    remediator.api: refused a malformed HTTP request (400): " in line
    assert "8190" in line
    assert "aaaa" not in line
    assert "Traceback" not in captured.getvalue()


def test_aiokafkas_retried_coordinator_errors_are_not_errors(captured: io.StringIO) -> None:
    """Kafka's "coordinator not available" while a new group's coordinator loads: aiokafka
    retries it and logs an ERROR; the operator sees nothing at INFO."""
    logs.configure("info", "text", captured)
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    coordinator.error(
        "Group Coordinator Request failed: [Error 15] %s", "GroupCoordinatorNotAvailableError"
    )
    coordinator.error("something else broke")
    text = captured.getvalue()
    assert "GroupCoordinatorNotAvailableError" not in text
    assert "something else broke" in text


def test_aiokafkas_retried_offset_lookup_on_a_new_partition_is_not_an_error(
    captured: io.StringIO,
) -> None:
    """A new partition's leader not serving ListOffsets yet: retried by aiokafka's fetcher;
    other failed offset lookups stay ERRORs."""
    logs.configure("info", "text", captured)
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    fetcher.error(
        "Failed fetch offsets from %s: %s",
        1,
        "[Error 6] NotLeaderForPartitionError: TopicPartition(topic='x-replies', partition=0)",
    )
    fetcher.error("Failed fetch offsets from %s: %s", 1, "[Error 29] TopicAuthorizationFailed")
    (line,) = lines(captured)
    assert "ERROR" in line
    assert "TopicAuthorizationFailed" in line
