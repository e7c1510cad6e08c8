"""GET /v1/compute/transitions/stream on a real worker: the transitions published on the
topic arrive as server-sent events, filtered by cluster, and an open stream does not hold
up the worker's shutdown. And the feed behind it on a real broker: it reads only while
someone listens."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from remediator.api.live import READY, TransitionFeed
from remediator.kafka.security import Connection
from tests.builders import event_payload
from tests.integration.conftest import (
    OPERATOR_TOKEN,
    OPERATOR_TOKENS,
    Broker,
    Kafka,
    Names,
    WorkerProcess,
)

pytestmark = pytest.mark.integration

STREAM = "/v1/compute/transitions/stream"


class Events:
    """The events of one open stream, as (event, data) pairs, read in the background."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.ended = asyncio.Event()
        self.arrived = asyncio.Event()

    async def read(self, response: httpx.Response) -> None:
        buffer = b""
        try:
            async for chunk in response.aiter_bytes():
                buffer += chunk
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    fields = dict(
                        line.split(": ", 1) for line in frame.decode().split("\n") if ": " in line
                    )
                    if "event" in fields:
                        self.received.append((fields["event"], orjson.loads(fields["data"])))
                        self.arrived.set()
        except httpx.HTTPError:
            pass  # the worker went away: the stream ended
        finally:
            self.ended.set()

    async def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.received) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"only {self.received} in {timeout}s"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)


@contextlib.asynccontextmanager
async def stream(worker: WorkerProcess, **params: str) -> AsyncIterator[Events]:
    async with httpx.AsyncClient(
        base_url=worker.base_url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    ) as client:
        request = client.build_request("GET", STREAM, params=params, timeout=None)
        response = await client.send(request, stream=True)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        events = Events()
        task = asyncio.create_task(events.read(response))
        try:
            yield events
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await response.aclose()


async def test_transitions_arrive_as_events_and_the_stream_ends_with_the_worker(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    worker = start_worker(REMEDIATOR_API_TOKENS=OPERATOR_TOKENS)
    async with stream(worker) as everything, stream(worker, cluster_id="c-other") as other:
        await everything.wait_for(1)
        await other.wait_for(1)
        assert everything.received == other.received == [("ready", {})]

        event = event_payload(cluster_id="c-live", instance_id="i-live")
        await kafka.produce(names.passive, event, key=b"i-live")
        await everything.wait_for(2)
        kind, transition = everything.received[1]
        assert (kind, transition["to_state"]) == ("transition", "PENDING_APPROVAL")
        (published,) = await kafka.read(names.transitions, at_least=1)
        published.pop("_key")
        assert transition == published  # the topic's value, unchanged
        assert other.received == [("ready", {})]  # another cluster's stream saw nothing

        # Stopping the worker ends open streams at once, not after a handler timeout.
        started = time.monotonic()
        assert worker.stop() == 0
        assert time.monotonic() - started < 15
        await asyncio.wait_for(everything.ended.wait(), 5)


async def test_the_feed_reads_only_while_someone_listens_and_starts_again(
    broker: Broker, kafka: Kafka
) -> None:
    topic = f"transitions-{uuid.uuid4().hex[:8]}"
    await kafka.create_topics(topic)
    feed = TransitionFeed(connection=Connection((broker.address,)), topic=topic, idle_seconds=0.5)
    try:
        async with feed.subscribe() as first:
            assert await asyncio.wait_for(first.queue.get(), 20) == READY
            await kafka.produce(topic, b'{"n": 1}', key=b"c1/i1")
            assert await asyncio.wait_for(first.queue.get(), 20) == (
                b'event: transition\ndata: {"n": 1}\n\n'
            )
        reader = feed._reader
        assert reader is not None
        await asyncio.wait_for(asyncio.shield(reader), 10)  # nobody listens: it stops
        async with feed.subscribe(cluster_id="c1") as second:  # a new reader, from the end
            assert await asyncio.wait_for(second.queue.get(), 20) == READY
            await kafka.produce(topic, b'{"n": 2}', key=b"c2/i1")
            await kafka.produce(topic, b'{"n": 3}', key=b"c1/i1")
            assert await asyncio.wait_for(second.queue.get(), 20) == (
                b'event: transition\ndata: {"n": 3}\n\n'
            )
    finally:
        await feed.on_stop()
