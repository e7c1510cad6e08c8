"""The wire form of the contract's timestamps: RFC 3339, UTC, a ``Z`` suffix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from remediator.domain.models import PassiveHealthCheckEvent, format_timestamp
from tests.builders import event_payload


def test_input_with_an_offset_comes_out_in_utc_with_z() -> None:
    parsed = PassiveHealthCheckEvent.model_validate_json(
        orjson.dumps(event_payload(observed_at="2026-11-24T14:00:00.25+02:00"))
    )
    assert orjson.loads(parsed.model_dump_json())["observed_at"] == "2026-11-24T12:00:00.250000Z"


def test_times_made_in_code_serialize_like_format_timestamp() -> None:
    base = PassiveHealthCheckEvent.model_validate_json(orjson.dumps(event_payload()))
    for when in (
        datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 24, 12, 0, 1, 5, tzinfo=UTC),
        base.observed_at + timedelta(minutes=90),
        datetime.fromtimestamp(1_764_000_000.123, UTC),
    ):
        changed = base.model_copy(update={"observed_at": when})
        assert orjson.loads(changed.model_dump_json())["observed_at"] == format_timestamp(when)


def test_messages_assembled_on_the_hot_path_equal_constructed_ones() -> None:
    from remediator.domain.models import dump_json
    from remediator.pipeline.messages import InboxMessage
    from tests.builders import event, run

    for signal in (run(), event()):
        fast = InboxMessage.of_signal(signal)
        field = "active_run" if signal is fast.active_run else "passive_event"
        slow = InboxMessage.model_construct(**{field: signal})
        assert fast == slow
        assert dump_json(fast) == dump_json(slow)
        assert fast.model_fields_set == slow.model_fields_set
        assert InboxMessage.model_validate_json(dump_json(fast)) == fast
