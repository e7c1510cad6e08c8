"""Fetched records handed to the pipeline in batches, without Faust's per-record machinery.

Faust delivers every record through its conductor (a lock, flow control, the producer's
buffer check, an ``Event`` built by a serializer, a queue put with pressure callbacks) to a
stream (a queue get, the current event, processors, ``take_events``' buffer and futures),
then acknowledges it. Profiled under the steady load (py-spy), that path was a quarter of
the worker's CPU, more than applying the signals: per record, on work the pipeline does in
batches anyway. So the worker's own topics (the two input topics and its inbox) bypass it:
the fetch loop (``offsets.SafeOffsets._drain_messages``) puts their records into the
batch of their :class:`Route` as they come, hands each fetch response's batch over at
once, and the route's task applies it with one call of its handler and acknowledges what
the handler did not hold back.

What Faust's streams gave that is kept here:
- **Commits.** A record is acknowledged (``Consumer.ack``, which the commit rule in
  ``offsets.py`` reads) only after its batch's effects are durable: its handler returned.
  A record the handler holds back (an inbox record of a partition no longer owned) is not.
- **Rebalances.** Records fetched in an older consumer generation, or while the flow is
  stopped, are skipped unacknowledged, as Faust's streams skip them: the re-seek after
  every rebalance (``seeks.py``) fetches them again. Batches queued when a rebalance starts
  are dropped; revocation waits for the batch being applied (:meth:`DirectDelivery.idle`),
  as Faust waits for unacknowledged events, so a partition is never applied by two workers.
- **Backpressure.** A route holds at most a few fetch responses; the fetch loop waits
  for room, so a slow handler slows fetching instead of filling memory.
- **Supervision.** A handler that raises stops the worker with one CRITICAL line
  (``pipeline/supervision.py``), as a crashed agent does.

Topics are registered with Faust's conductor all the same (:meth:`DirectDelivery.route`),
so the consumer subscribes to them and Faust's assignor keeps each partition with its
tables, exactly as when agents read them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mode import Service

from remediator.pipeline.supervision import stop_worker

#: A route's handler: applies a batch durably and returns the records it did NOT apply
#: (held back unacknowledged, for the partition's next owner).
Handler = Callable[[Sequence[Any]], Awaitable[Collection[Any]]]

#: Fetch responses a route may hold before the fetch loop waits (backpressure).
QUEUED_BATCHES = 4


@dataclass(eq=False)
class Route:
    """Some topics' records and the handler that applies them, a batch at a time."""

    name: str
    topics: frozenset[str]
    handler: Handler
    max_batch: int
    pending: list[Any] = field(default_factory=list)
    queue: asyncio.Queue[list[Any]] = field(default_factory=lambda: asyncio.Queue(QUEUED_BATCHES))
    busy: bool = False


class DirectDelivery(Service):
    """The routes of the worker's own topics and the tasks that apply their batches."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self._routes: list[Route] = []
        self._by_topic: dict[str, Route] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def route(self, name: str, topics: Iterable[Any], handler: Handler, *, max_batch: int) -> None:
        """Deliver ``topics`` (Faust topics: subscribed through the conductor) to
        ``handler`` in batches of at most ``max_batch`` records."""
        topics = list(topics)
        names = frozenset(name for topic in topics for name in topic.topics)
        route = Route(name, names, handler, max_batch)
        self._routes.append(route)
        for topic in topics:
            self.app.topics.add(topic)
        for topic_name in names:
            self._by_topic[topic_name] = route

    def takes(self, topic: str) -> bool:
        return topic in self._by_topic

    def add(self, message: Any) -> None:
        """A fetched record of one of the routes' topics (no await: the fetch loop)."""
        self._by_topic[message.topic].pending.append(message)

    async def flush(self) -> None:
        """Hand over what :meth:`add` collected since the last flush (one batch per
        route and fetch response); waits while a route has no room."""
        for route in self._routes:
            if route.pending:
                batch, route.pending = route.pending, []
                await route.queue.put(batch)

    def discard(self) -> None:
        """A rebalance started: drop what is fetched and not yet applied. It is not
        acknowledged, and the re-seek after the rebalance fetches it again."""
        for route in self._routes:
            route.pending = []
            while not route.queue.empty():
                route.queue.get_nowait()

    async def idle(self) -> None:
        """Return once no batch is being applied (a revocation waits for this)."""
        await self._idle.wait()

    async def on_start(self) -> None:
        for route in self._routes:
            self.add_future(self._apply_batches(route))

    async def _apply_batches(self, route: Route) -> None:
        while not self.should_stop:
            batch = await route.queue.get()
            while len(batch) < route.max_batch and not route.queue.empty():
                batch.extend(route.queue.get_nowait())
            current = [m for m in batch if self._current(m)]
            if not current:
                continue
            self._idle.clear()
            route.busy = True
            try:
                held = await route.handler(current)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any bug: stop the worker, say why
                await self._stop_worker(route, exc)
                return
            finally:
                route.busy = False
                if not any(r.busy for r in self._routes):
                    self._idle.set()
            self._ack(current, held)

    def _current(self, message: Any) -> bool:
        """Fetched in this consumer generation, while the flow runs (as Faust's streams
        decide what to skip)."""
        app = self.app
        return bool(
            message.generation_id == app.consumer_generation_id and app.flow_control.is_active()
        )

    def _ack(self, batch: Sequence[Any], held: Collection[Any]) -> None:
        ack = self.app.consumer.ack
        if held:
            kept = {id(message) for message in held}
            batch = [message for message in batch if id(message) not in kept]
        for message in batch:
            ack(message)

    async def _stop_worker(self, route: Route, exc: BaseException) -> None:
        await stop_worker(self.app, route.name, exc)
