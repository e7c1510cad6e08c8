"""Batches of events that are acknowledged only once the agent has finished with them.

Faust's ``Stream.take_events`` acknowledges a batch's events in a ``finally`` block, so
also when the agent did *not* finish them: when its body raised, or when the worker
stopped (cancelled) in the middle of a batch and ``Stream.on_stop`` closed the generator.
Faust then commits those offsets, and the batch is lost: neither processed nor read again
after the restart (a test kills the ingest agent in the middle of a batch and proves it:
``test_an_agent_that_crashes_stops_the_worker_and_the_restart_loses_nothing``).

:class:`BatchingStream` is Faust's stream with ``take_events`` changed in that one place:
the events are acknowledged after the ``yield`` returns, that is when the agent asks for
the next batch having made this one durable, and never when the generator is closed;
and the agent may :meth:`~BatchingStream.hold` events it did not apply, which are then
not acknowledged at all.
The rest is Faust's code (faust-streaming 0.11), kept as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any, cast

from faust.streams import Stream, _tracks_buffer_agen
from faust.types import ChannelT, EventT
from mode.utils.futures import notify
from mode.utils.times import Seconds, want_seconds


class BatchingStream(Stream):  # type: ignore[type-arg]  # generic in faust, any value here
    #: Events of the current batch the agent asked to leave unacknowledged (see hold).
    _held: set[int]

    def hold(self, events: Iterable[EventT[Any]]) -> None:
        """Leave these events of the current batch unacknowledged: the agent did not
        apply them, and their partition's next owner must read them again."""
        self._held.update(id(event) for event in events)

    @_tracks_buffer_agen
    async def take_events(
        self, max_: int, within: Seconds
    ) -> AsyncGenerator[Sequence[EventT[Any]], None]:
        buffer: list[Any] = []
        events: list[EventT[Any]] = []
        buffer_full = asyncio.Event()
        buffer_consumed = asyncio.Event()
        timeout = want_seconds(within) if within else None
        stream_enable_acks: bool = self.enable_acks
        buffer_consuming: asyncio.Future[None] | None = None
        channel_it = aiter(self.channel)

        async def add_to_buffer(value: Any) -> Any:
            try:
                nonlocal buffer_consuming
                if buffer_consuming is not None:
                    try:
                        await buffer_consuming
                    finally:
                        buffer_consuming = None
                buffer.append(value)
                event = self.current_event
                if event is None:
                    raise RuntimeError("Take buffer found current_event is None")
                events.append(event)
                if len(buffer) >= max_:
                    buffer_full.set()
                    buffer_consumed.clear()
                    await self.wait(buffer_consumed)  # type: ignore[arg-type]
            except asyncio.CancelledError:  # pragma: no cover
                raise
            except Exception as exc:  # pragma: no cover - Faust's handling, kept
                self.log.exception("Error adding to take buffer: %r", exc)
                await self.crash(exc)
            return value

        self._held = set()
        self.enable_acks = False  # acknowledged here, once processed
        self.add_processor(add_to_buffer)
        self._enable_passive(cast("ChannelT[Any]", channel_it))
        try:
            while not self.should_stop:
                await self.wait_for_stopped(buffer_full, timeout=timeout)  # type: ignore[arg-type]
                if not buffer:  # pragma: no cover
                    continue
                buffer_consuming = self.loop.create_future()
                finished = False
                try:
                    yield list(events)
                    finished = True  # the agent came back for more: this batch is done
                finally:
                    if finished:
                        for event in events:
                            if id(event) not in self._held:
                                await self.ack(event)
                    self._held.clear()
                    buffer.clear()
                    events.clear()
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
        finally:
            self.enable_acks = stream_enable_acks
            self._processors.remove(add_to_buffer)
