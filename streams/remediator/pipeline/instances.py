"""The inbox agent: everything about the owned clusters that comes through Kafka.

API commands, the executor's step reports, kicks and health signals forwarded by other
workers arrive on ``{app_id}-instance-inbox``, partitioned by cluster. This agent reads
them in batches and hands them to the state owner (``pipeline/processor.py``), the one
writer of every cluster it owns; their offsets are acknowledged once the batch is
durable. An unreadable message (only this service writes the inbox, so a bug or a
foreign writer) is skipped loudly rather than wedging its partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import cast

import faust
from faust.types import EventT, StreamT
from pydantic import ValidationError

from .batches import BatchingStream
from .context import Item, Origin
from .ingest import record_time
from .messages import InboxMessage
from .processor import Processor

log = logging.getLogger(__name__)


def item_time(
    message: InboxMessage, event: EventT[bytes], clock: Callable[[], datetime]
) -> datetime:
    """The time an inbox message's changes are stamped with: the command's or the report's
    own time, else the record's (for a forwarded signal, its input record's)."""
    if message.command is not None:
        return message.command.issued_at
    if message.report is not None:
        return message.report.observed_at
    return record_time(event, clock)


def register_instances(
    app: faust.App,
    *,
    inbox: faust.TopicT,
    processor: Processor,
    batch_max: int,
    batch_wait: float,
    clock: Callable[[], datetime],
) -> faust.types.AgentT[bytes]:
    topic = inbox.get_topic_name()

    def read(event: EventT[bytes]) -> Item | None:
        record = event.message
        try:
            message = InboxMessage.model_validate_json(record.value or b"")
        except ValidationError as exc:
            log.error(
                "skipping unreadable inbox message %s[%d]@%d: %s",
                topic,
                record.partition,
                record.offset,
                exc,
            )
            return None
        origin = Origin(topic, record.partition, record.offset, record.value)
        now = item_time(message, event, clock)
        return Item(record.partition, record.key or b"", message, now, origin)

    async def instances(stream: StreamT[bytes]) -> None:
        # take_events is on faust's Stream, not on its StreamT protocol.
        batches = cast("BatchingStream", stream)
        async for events in batches.take_events(batch_max, batch_wait):
            items = [item for item in map(read, events) if item is not None]
            if log.isEnabledFor(logging.DEBUG):
                for item in items:
                    log.debug("inbox[%d]@%d %s", item.partition, item.origin.offset, item.key)
            skipped = await processor.apply(items)
            if skipped:  # not applied here: leave them for the partition's next owner
                held = {(i.origin.partition, i.origin.offset) for i in skipped}
                batches.hold(e for e in events if (e.message.partition, e.message.offset) in held)

    return app.agent(inbox, name="instances")(instances)
