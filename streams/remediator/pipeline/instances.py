"""The inbox handler: everything about the owned clusters that comes through Kafka.

API commands, the executor's step reports, kicks, unusable inputs to dead-letter and
health signals forwarded by other workers arrive on ``{app_id}-cluster-inbox``,
partitioned by cluster. They come in batches (``kafka/direct.py``) and go to the state
owner (``pipeline/processor.py``), the one writer of every cluster it owns; their offsets
are acknowledged once the batch is durable. An unreadable message (only this service
writes the inbox, so a bug or a foreign writer) is skipped loudly rather than wedging its
partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

import faust
from pydantic import ValidationError

from remediator.kafka.direct import DirectDelivery

from .context import Item, Origin
from .ingest import record_time
from .messages import InboxMessage
from .processor import Processor

log = logging.getLogger(__name__)


def item_time(message: InboxMessage, record: Any, clock: Callable[[], datetime]) -> datetime:
    """The time an inbox message's changes are stamped with: the command's or the report's
    own time, else the record's (for a forwarded signal, its input record's)."""
    if message.command is not None:
        return message.command.issued_at
    if message.report is not None:
        return message.report.observed_at
    return record_time(record, clock)


def register_instances(
    direct: DirectDelivery,
    *,
    inbox: faust.TopicT,
    processor: Processor,
    batch_max: int,
    clock: Callable[[], datetime],
) -> None:
    topic = inbox.get_topic_name()

    def read(record: Any) -> Item | None:
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
        now = item_time(message, record, clock)
        return Item(record.partition, record.key or b"", message, now, origin)

    async def instances(records: Sequence[Any]) -> Collection[Any]:
        items = [item for item in map(read, records) if item is not None]
        if log.isEnabledFor(logging.DEBUG):
            for item in items:
                log.debug("inbox[%d]@%d %s", item.partition, item.origin.offset, item.key)
        skipped = await processor.apply(items)
        if not skipped:
            return ()
        # Not applied here: leave them unacknowledged for the partition's next owner.
        held = {(i.origin.partition, i.origin.offset) for i in skipped}
        return [r for r in records if (r.partition, r.offset) in held]

    direct.route("instances", [inbox], instances, max_batch=batch_max)
