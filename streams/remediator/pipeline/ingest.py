"""The ingest agent: input topics -> validated, re-keyed signals on the instance inbox.

Reads ``active-health-check-runs`` and ``passive-health-check-events`` as raw bytes,
whatever their key. A message that fails validation goes to the dead-letter topic with a
one-line reason and the agent moves on; a valid one is forwarded to the internal inbox
keyed ``"{cluster_id}/{instance_id}"``, so everything about an instance meets in one
partition. Forwarding is at-least-once (Faust flushes the producer before it commits the
input offset); the instance agent drops the repeats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import faust
from faust.types import StreamT

from remediator.domain import ids
from remediator.domain.models import ActiveHealthCheckRun, PassiveHealthCheckEvent, dump_json

from .decode import InvalidInput, dead_letter, decode_signal
from .messages import InboxMessage

log = logging.getLogger(__name__)


def register_ingest(
    app: faust.App,
    *,
    active_runs: faust.TopicT,
    passive_events: faust.TopicT,
    inbox: faust.TopicT,
    dead_letters: faust.TopicT,
    clock: Callable[[], datetime],
) -> faust.types.AgentT[bytes]:
    models: dict[str, type[ActiveHealthCheckRun] | type[PassiveHealthCheckEvent]] = {
        active_runs.get_topic_name(): ActiveHealthCheckRun,
        passive_events.get_topic_name(): PassiveHealthCheckEvent,
    }
    sources = app.topic(
        *models, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def ingest(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            raw = message.value
            try:
                signal = decode_signal(models[message.topic], raw)
            except InvalidInput as exc:
                letter = dead_letter(
                    source_topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    payload=raw,
                    error=str(exc),
                    received_at=clock(),
                )
                log.warning(
                    "dead-lettered %s[%d]@%d: %s",
                    message.topic,
                    message.partition,
                    message.offset,
                    letter.error,
                )
                await dead_letters.send(key=message.key, value=dump_json(letter))
                continue
            key = ids.instance_key(signal.cluster_id, signal.instance_id).encode()
            await inbox.send(key=key, value=dump_json(InboxMessage.of_signal(signal)))
            log.debug(
                "forwarded %s[%d]@%d to the inbox as %s",
                message.topic,
                message.partition,
                message.offset,
                key.decode(),
            )

    return app.agent(sources, name="ingest")(ingest)
