"""The brokers the tests, the fault suite and the bench run on, by kind.

- ``tansu``: the embedded Tansu broker (memory storage), what ``make run`` starts;
- ``kafka``: Apache Kafka (``remediator.kafka.local``), what production runs.

Both offer ``host``, ``port``, ``address``, ``url``, ``name`` (``tansu 0.6.0``,
``kafka 4.1.1``) and ``stop()``.
"""

from __future__ import annotations

from pathlib import Path

from remediator.kafka.embedded import EmbeddedBroker
from remediator.kafka.local import LocalKafka

KINDS = ("tansu", "kafka")

#: A broker a test can use.
Broker = EmbeddedBroker | LocalKafka

#: Apache Kafka for tests: sessions as short as the tests' 3 s (Kafka's default minimum
#: is 6 s), and the log cleaner quick enough for a compaction test to see it work.
KAFKA_TEST_PROPERTIES = {
    "group.min.session.timeout.ms": "1000",
    "log.cleaner.backoff.ms": "500",
}


def make_broker(kind: str, log_dir: Path) -> Broker:
    """A broker of ``kind`` on loopback (its ports chosen, not started yet: set
    ``advertised_port`` to put a proxy in front of it)."""
    if kind == "tansu":
        return EmbeddedBroker(port=0, log_dir=log_dir)
    if kind == "kafka":
        return LocalKafka(log_dir=log_dir, properties=KAFKA_TEST_PROPERTIES)
    raise ValueError(f"unknown broker kind {kind!r} (known: {', '.join(KINDS)})")


def start_broker(kind: str, log_dir: Path) -> Broker:
    """A broker of ``kind``, started: returns once it serves."""
    broker = make_broker(kind, log_dir)
    broker.start()
    return broker


def kind_of(broker: Broker) -> str:
    return "kafka" if isinstance(broker, LocalKafka) else "tansu"
