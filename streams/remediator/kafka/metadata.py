"""Which partitions a topic has, asked of the broker in a way both brokers answer alike.

aiokafka's ``consumer.partitions_for_topic`` reads the consumer's own metadata, which
covers the topics it subscribed to or was assigned. Tansu answers every metadata request
with all topics, so on Tansu it knew every topic; Apache Kafka answers with the topics
asked for, so on Kafka it said ``None`` for a topic that exists (``remediator tail``, the
API gateway's replies and the transition stream all waited for ever: found by running
them on Kafka). Here the broker is asked for every topic and the answer is read directly.
"""

from __future__ import annotations

from typing import Any


async def partitions_of(consumer: Any, topic: str) -> set[int]:
    """The partitions of ``topic`` (empty when it does not exist) for a started
    aiokafka consumer."""
    cluster = await consumer._client.fetch_all_metadata()  # aiokafka: no public call
    return set(cluster.partitions_for_topic(topic) or ())
