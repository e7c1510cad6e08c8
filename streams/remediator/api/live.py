"""Live transitions for the dashboard: ``remediation-transitions`` as server-sent events.

``GET /v1/compute/transitions/stream`` (an addition to the API; bearer token as everywhere)
answers ``text/event-stream``. Each transition published from the moment the stream is
positioned arrives as one ``transition`` event whose data is the topic's JSON value,
unchanged (a ``RemediationTransition``, ``domain/models.py``). Optional ``cluster_id`` and
``instance_id`` query parameters keep only that cluster's or instance's transitions.

- ``ready`` (data ``{}``) comes first, once the worker reads the topic from its end, and
  again whenever transitions may have been missed (the tab fell too far behind, the broker
  went away and the reader started over). A client (re)loads what it shows on each
  ``ready`` and applies the transitions after it: nothing falls between the two.
- A comment line every ``heartbeat`` seconds keeps proxies from closing an idle stream and
  tells the worker when a tab has gone.

Why a stream and not polling: a list is a scan of every owned instance by the state
owners, in line with the health signals they apply; a stream costs the state owners
nothing. Each worker reads the topic with one consumer of its own (no group), and only
while a tab is open: the README's "Dashboard" section has the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service
from pydantic import TypeAdapter, ValidationError

from remediator.api.errors import ApiError
from remediator.domain.bounds import echo
from remediator.domain.models import Identifier
from remediator.kafka.metadata import partitions_of
from remediator.kafka.security import Connection

log = logging.getLogger(__name__)

STREAM = "/v1/compute/transitions/stream"
READY = b"event: ready\ndata: {}\n\n"
PING = b": ping\n\n"
#: Frames a tab may fall behind by before it is told to reload instead (``ready``).
QUEUE_MAX = 2000

_identifier: TypeAdapter[str] = TypeAdapter(Identifier)


@dataclass(eq=False)
class Subscriber:
    """One open stream: the frames waiting to be written to it."""

    cluster_id: bytes | None = None
    instance_id: bytes | None = None
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def wants(self, key: bytes | None) -> bool:
        """Transitions are keyed ``{cluster_id}/{instance_id}``: filter on the key alone,
        without parsing the value."""
        if self.cluster_id is None:
            return True
        if key is None:
            return False
        cluster, _, instance = key.partition(b"/")
        return cluster == self.cluster_id and (
            self.instance_id is None or instance == self.instance_id
        )

    def offer(self, frame: bytes) -> None:
        if self.queue.qsize() >= QUEUE_MAX:
            # Too far behind to catch up frame by frame: drop the backlog, ask for a reload.
            while not self.queue.empty():
                self.queue.get_nowait()
            frame = READY
        self.queue.put_nowait(frame)

    def close(self) -> None:
        self.queue.put_nowait(None)


class TransitionFeed(Service):
    """Reads the transitions topic while anyone listens, and fans it out to the streams.

    The consumer starts with the first subscriber and stops ``idle_seconds`` after the
    last one left (a reload should not pay for a new consumer).
    """

    def __init__(
        self,
        *,
        connection: Connection,
        topic: str,
        fetch_max_wait_ms: int = 100,
        idle_seconds: float = 30.0,
    ) -> None:
        super().__init__()
        self.connection = connection
        self.topic = topic
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.idle_seconds = idle_seconds
        self.subscribers: set[Subscriber] = set()
        self._reader: asyncio.Task[None] | None = None
        #: Every reader still running, the current one and any stopping its consumer.
        self._readers: set[asyncio.Task[None]] = set()
        self._positioned = False
        self._closed = False

    @contextlib.asynccontextmanager
    async def subscribe(
        self, cluster_id: str | None = None, instance_id: str | None = None
    ) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(
            cluster_id=cluster_id.encode() if cluster_id else None,
            instance_id=instance_id.encode() if cluster_id and instance_id else None,
        )
        if self._closed:
            subscriber.close()
        else:
            self.subscribers.add(subscriber)
            if self._positioned:
                subscriber.offer(READY)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read())
                self._readers.add(self._reader)
                self._reader.add_done_callback(self._readers.discard)
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

    def close_subscribers(self) -> None:
        """End every open stream (the worker is stopping)."""
        self._closed = True
        for subscriber in list(self.subscribers):
            subscriber.close()
        self.subscribers.clear()

    async def on_stop(self) -> None:
        self.close_subscribers()
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while not self._closed:
            try:
                consumer = await self._start_consumer()
            except Exception:  # the broker may be away: subscribers wait, we retry
                log.warning(
                    "transition stream: cannot read %s; retrying", self.topic, exc_info=True
                )
                await asyncio.sleep(2.0)
                if self._idle(loop.time() - idle_since):
                    return
                continue
            try:
                self._positioned = True
                for subscriber in list(self.subscribers):
                    subscriber.offer(READY)
                while not self._closed:
                    if self.subscribers:
                        idle_since = loop.time()
                    elif self._idle(loop.time() - idle_since):
                        return
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            self._fan_out(record.key, record.value)
            except Exception:  # never take the worker down; start over from the end
                log.warning(
                    "transition stream: reading %s failed; restarting", self.topic, exc_info=True
                )
                await asyncio.sleep(1.0)
            finally:
                self._positioned = False
                await consumer.stop()

    def _idle(self, for_seconds: float) -> bool:
        """No one has listened for long enough: this reader ends. It lets go of its place
        at once (no await in between), so a stream opened while it stops its consumer
        starts a new reader instead of waiting on this one."""
        if self.subscribers or for_seconds <= self.idle_seconds:
            return False
        self._reader = None
        return True

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = self.connection.consumer(
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            partitions = await partitions_of(consumer, self.topic)
            while not partitions:
                await asyncio.sleep(0.5)
                partitions = await partitions_of(consumer, self.topic)
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the lazy "end" now: "ready" means from here on
                await consumer.position(tp)
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    def _fan_out(self, key: bytes | None, value: bytes | None) -> None:
        if not value or not self.subscribers:
            return
        # Compact JSON has no raw newline; one would end the SSE data line early.
        frame = b"event: transition\ndata: " + value.replace(b"\n", b" ") + b"\n\n"
        for subscriber in self.subscribers:
            if subscriber.wants(key):
                subscriber.offer(frame)


class TransitionStream:
    """The ``GET …/transitions/stream`` view."""

    def __init__(
        self,
        feed: TransitionFeed,
        authenticate: Callable[[web.Request], str],
        heartbeat: float = 15.0,
    ) -> None:
        self.feed = feed
        self.authenticate = authenticate
        self.heartbeat = heartbeat

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.authenticate(request)
        cluster_id = _optional(request, "cluster_id")
        instance_id = _optional(request, "instance_id")
        if instance_id and not cluster_id:
            raise ApiError.invalid("instance_id needs cluster_id")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a buffering proxy would hold events back
            }
        )
        async with self.feed.subscribe(cluster_id, instance_id) as subscriber:
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):
                while await self._write_next(response, subscriber):
                    pass
        return response

    async def _write_next(self, response: web.StreamResponse, subscriber: Subscriber) -> bool:
        """Write what is waiting (a heartbeat if nothing came); False once closed."""
        try:
            frame = await asyncio.wait_for(subscriber.queue.get(), self.heartbeat)
        except TimeoutError:
            await response.write(PING)
            return True
        frames = [frame]
        while frames[-1] is not None and not subscriber.queue.empty():
            frames.append(subscriber.queue.get_nowait())
        await response.write(b"".join(f for f in frames if f is not None))
        return frames[-1] is not None

    def routes(self) -> list[web.RouteDef]:
        return [web.get(STREAM, self.stream)]


def _optional(request: web.Request, name: str) -> str | None:
    value = request.query.get(name) or None
    if value is None:
        return None
    try:
        return _identifier.validate_python(value)
    except ValidationError:
        raise ApiError.invalid(f"{name} {echo(value)} is not valid") from None
