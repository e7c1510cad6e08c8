"""Decoding input bytes, and the dead letter for what cannot be decoded."""

from __future__ import annotations

import base64
import uuid

import orjson
import pytest

from remediator.domain.models import ActiveHealthCheckRun, PassiveHealthCheckEvent
from remediator.pipeline.decode import InvalidInput, dead_letter, decode_signal
from tests.builders import T0, event_payload, run_payload


def test_valid_run_parses_and_ignores_unknown_fields() -> None:
    raw = orjson.dumps({**run_payload(), "from_the_future": {"x": 1}})
    run = decode_signal(ActiveHealthCheckRun, raw)
    assert isinstance(run.run_id, uuid.UUID)


def test_timestamps_with_an_offset_are_converted_to_utc() -> None:
    raw = orjson.dumps(event_payload(observed_at="2026-11-24T14:00:00+02:00"))
    event = decode_signal(PassiveHealthCheckEvent, raw)
    assert event.observed_at == T0
    assert event.model_dump(mode="json")["observed_at"] == "2026-11-24T12:00:00Z"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "empty message"),
        (None, "empty message"),
        (b"{not json", "not valid JSON"),
        (b'"a string"', "Input should be an object"),
        (orjson.dumps(run_payload(result="MAYBE")), "result: Input should be 'PASSED'"),
        (orjson.dumps(run_payload(run_id="nope")), "run_id: Input should be a valid UUID"),
        (orjson.dumps(run_payload(completed_at="2026-11-24T12:00:00")), "timezone"),
        (
            orjson.dumps(run_payload(instance_id="a/b")),
            "instance_id: not an id: no '/' or whitespace, not '.' or '..' (got 'a/b')",
        ),
        # "." and "..": a URL with one names another resource (the REST API's, the
        # control plane's); "..." or ".x" are ordinary ids.
        (orjson.dumps(run_payload(instance_id="..")), "instance_id: not an id: no '/' or"),
        (orjson.dumps(run_payload(cluster_id=".")), "cluster_id: not an id: no '/' or"),
        (
            orjson.dumps({k: v for k, v in run_payload().items() if k != "test"}),
            "test: Field required",
        ),
    ],
)
def test_invalid_input_is_explained_in_one_line(raw: bytes | None, expected: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_signal(ActiveHealthCheckRun, raw)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("ActiveHealthCheckRun: ")


def test_error_line_is_bounded_for_huge_inputs() -> None:
    raw = orjson.dumps({"metrics": {f"m{i}": "x" * 1000 for i in range(50)}})
    with pytest.raises(InvalidInput) as caught:
        decode_signal(ActiveHealthCheckRun, raw)
    assert len(str(caught.value)) < 1000


def test_dead_letter_keeps_utf8_payload_as_text() -> None:
    letter = dead_letter(
        source_topic="t",
        partition=1,
        offset=7,
        key=b"k",
        payload=b'{"a":1}',
        error="bad\nthing",
        received_at=T0,
    )
    assert (letter.payload, letter.payload_encoding, letter.key) == ('{"a":1}', None, "k")
    assert letter.error == "bad thing"


def test_dead_letter_base64_encodes_binary_payload() -> None:
    letter = dead_letter(
        source_topic="t",
        partition=0,
        offset=0,
        key=None,
        payload=b"\xff\x00",
        error="x",
        received_at=T0,
    )
    assert letter.payload_encoding == "base64"
    assert base64.b64decode(letter.payload) == b"\xff\x00"
    assert letter.key is None


def test_an_oversized_payload_keeps_a_prefix_its_size_and_sha256() -> None:
    import hashlib

    from remediator.pipeline.decode import MAX_KEPT_PAYLOAD, InvalidInput, check_size

    raw = b'{"message": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    with pytest.raises(InvalidInput, match="larger than the limit of 262144 bytes"):
        check_size(raw, 256 * 1024)
    letter = dead_letter(
        source_topic="in",
        partition=0,
        offset=7,
        key=b"k" * 5000,
        payload=raw,
        error="too big",
        received_at=T0,
    )
    assert letter.payload_truncated
    assert letter.payload_size == len(raw)
    assert letter.payload_sha256 == hashlib.sha256(raw).hexdigest()
    assert len(letter.payload) == MAX_KEPT_PAYLOAD
    assert letter.key is not None
    assert len(letter.key) == 1024
    assert len(letter.model_dump_json()) < 100 * 1024
