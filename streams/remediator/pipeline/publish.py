"""Publishing that must not be lost: wait for the broker's ack, retry until it comes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import faust

log = logging.getLogger(__name__)

_BACKOFF_START = 0.2
_BACKOFF_MAX = 10.0


Batch = tuple[faust.TopicT, Sequence[tuple[bytes, bytes]]]


async def publish(topic: faust.TopicT, messages: Sequence[tuple[bytes, bytes]]) -> None:
    """Send ``(key, value)`` pairs to ``topic`` and return once the broker has them all.

    A failed send is retried with backoff, forever: the caller must not move past its
    input before its output is safe (a later replay would otherwise lose it). Resending
    is harmless, since every message we publish carries a stable id.
    """
    await publish_all([(topic, messages)])


async def publish_all(batches: Sequence[Batch]) -> None:
    """:func:`publish` for several topics at once: everything is sent, then every ack is
    awaited together (one round trip, not one per topic). Order within a partition is
    the order given."""
    batches = [(topic, messages) for topic, messages in batches if messages]
    if not batches:
        return
    delay = _BACKOFF_START
    while True:
        try:
            futures = [
                await topic.send(key=key, value=value)
                for topic, messages in batches
                for key, value in messages
            ]
            await asyncio.gather(*futures)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any producer failure means: try again
            log.error(
                "publishing %d message(s) to %s failed (%s); retrying in %.1fs",
                sum(len(messages) for _, messages in batches),
                ", ".join(topic.get_topic_name() for topic, _ in batches),
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)
