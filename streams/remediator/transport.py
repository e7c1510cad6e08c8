"""Faust's aiokafka transport with a configurable fetch wait.

Faust creates its consumer with ``fetch_max_wait_ms=1500`` and no setting to change it.
Against Kafka that is harmless (a fetch returns as soon as data arrives), but Tansu
answers a fetch only when the wait is over, so every hop (input -> inbox -> agent, and
every API request) took 0.75 s on average. A short wait costs a few empty fetches a
second when idle and makes the embedded broker as responsive as Kafka.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver


def transport_class(fetch_max_wait_ms: int) -> type[driver.Transport]:
    """A Faust Kafka transport whose consumer waits at most ``fetch_max_wait_ms``."""

    class FetchConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # Read by aiokafka when the consumer starts and creates its fetcher.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class FetchConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return FetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = FetchConsumer

    return Transport
