"""The framework's floor: a bare Faust agent consume -> produce, run as its own process.

    python tests/bench/faust_loop.py BOOTSTRAP SOURCE SINK GROUP COMMIT_INTERVAL WEB_PORT

What faust-streaming costs before any work: the worker's own consumer settings and
transport, one agent reading the source in batches (``take_events``) and sending one
output per input through the producer, the acks of each batch awaited together. No
parsing, no state. The worker's figures divided by this one say how much of the gap to
the raw aiokafka loop is the framework's and how much the pipeline's own work.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import faust

from remediator.kafka.security import Connection
from remediator.kafka.transport import transport_class


def main() -> None:
    bootstrap, source, sink, group, interval, port = sys.argv[1:7]
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=3,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=3,
        broker_commit_interval=float(interval),
        producer_linger=0.0,
        producer_max_batch_size=256 * 1024,
        web_port=int(port),
        web_bind="127.0.0.1",
    )
    app.transport = transport_class(100, Connection((bootstrap,)))(app.conf.broker_consumer, app)
    topic = app.topic(source, key_type=bytes, value_type=bytes, value_serializer="raw")

    @app.agent(topic)
    async def passthrough(stream: Any) -> None:
        producer = None
        async for events in stream.take_events(1000, 0.01):
            if producer is None:
                producer = app.producer._producer
                print("ready", flush=True)
            acks = [await producer.send(sink, e.value, key=e.key) for e in events]
            await asyncio.gather(*acks)

    @app.timer(interval=0.5)
    async def announce() -> None:
        if app.consumer.assignment():
            print("ready", flush=True)

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


if __name__ == "__main__":
    main()
