"""Broker administration the worker does before it starts: create missing topics.

Done with a plain admin client before Faust subscribes, so a consumer's metadata request
never auto-creates an input topic with the broker's default partition count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached in time."""


async def ensure_topics(
    bootstrap_servers: list[str],
    names: Iterable[str],
    *,
    partitions: int,
    replication_factor: int,
    timeout: float = 30.0,
) -> list[str]:
    """Create those of ``names`` that do not exist; return the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
    try:
        await _start_with_retry(admin, bootstrap_servers, timeout)
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        created = []
        for name in missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name, num_partitions=partitions, replication_factor=replication_factor
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another worker made it first
        if created:
            log.info("created topics %s (%d partitions)", ", ".join(created), partitions)
        return created
    finally:
        await admin.close()


async def _start_with_retry(admin: AIOKafkaAdminClient, servers: list[str], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.1
    while True:
        try:
            await admin.start()
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if loop.time() + delay > deadline:
                raise BrokerUnavailable(
                    f"cannot reach the broker at {','.join(servers)} ({exc})"
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
