"""Re-seeks after a rebalance and on a stalled partition, so no record is left unread.

A faust.App that reads again what Faust counted as read but never processed.

After a rebalance Faust seeks the stream partitions to their committed offsets and
then resumes flow, which clears the streams' queues. A record fetched and queued in
between is dropped with the queue; if its partition has no committed offset yet (or
0), aiokafka's ``seek_to_committed`` does not move it, so the record is neither
processed nor fetched again until the next rebalance or restart: a health signal
silently delayed indefinitely (the takeover delay once seen in the rebalance test).
:meth:`SeekingApp.reseek`, run when a rebalance has ended, seeks such partitions to their
earliest offset and the others to their committed one; the repeats it may cause are
harmless (a signal counts once, and Faust ignores a second ack of an offset).
:meth:`SeekingApp.check_stalls`, every few seconds, re-seeks the same way when a partition
has lag but its committed offset has not moved for ``REMEDIATOR_STALL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import faust

from remediator import failpoints

log = logging.getLogger(__name__)


class SeekingApp(faust.App):
    """faust.App that re-seeks its source partitions after a rebalance and when they stall
    (see the module docstring). The subclass calls :meth:`schedule_reseeks` when a
    rebalance has ended and sets :attr:`watched_topics`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reseeks: set[asyncio.Future[None]] = set()
        #: The agents' source topics (set by create_app): what re-seeks and stall checks
        #: look at (table changelogs are read by Faust's recovery, never committed).
        self.watched_topics: frozenset[str] = frozenset()
        self._progress: dict[Any, tuple[int | None, float]] = {}
        #: How many times the stall check re-seeked (for /healthz and tests).
        self.stall_reseeks = 0

    def schedule_reseeks(self) -> None:
        """When a rebalance has ended: re-seek the source partitions shortly (and, with the
        failpoint ``consumer.reseek_storm``, again and again)."""
        if failpoints.armed("consumer.reseek_storm"):
            task = asyncio.ensure_future(self._reseek_storm())
            self._reseeks.add(task)
            task.add_done_callback(self._reseeks.discard)
        task = asyncio.ensure_future(self._seek_again(self.consumer_generation_id))
        self._reseeks.add(task)  # keep a reference until done
        task.add_done_callback(self._reseeks.discard)

    async def _reseek_storm(self) -> None:
        """Failpoint ``consumer.reseek_storm``: re-seek the source partitions every few
        milliseconds for a while, as stall checks and rebalances do now and then, to
        make a race between a seek and the consumer's fetcher show at once."""
        log.critical("failpoint consumer.reseek_storm: re-seeking every 5 ms for 8 s")
        deadline = self.loop.time() + 8.0
        while self.loop.time() < deadline and not self.rebalancing:
            tps = [tp for tp in self.consumer.assignment() if tp.topic in self.watched_topics]
            await self.reseek(tps)
            await asyncio.sleep(0.005)

    async def check_stalls(self, stall_after: float, topics: frozenset[str]) -> None:
        """Re-seek when an assigned partition has lag but made no progress for a while.

        The safety net for the takeover delay described in the README: a record that
        Faust counts as read but never processed leaves its partition with lag and a
        committed offset that no longer moves, until the next rebalance. Seeking to the
        committed offsets re-delivers what was not processed (repeats are harmless).
        """
        if self.rebalancing or not self.consumer.assignment():
            return
        consumer: Any = self.consumer
        # The agents' source topics only: table changelogs are read, never committed.
        tps = sorted(tp for tp in consumer.assignment() if tp.topic in topics)
        if not tps:
            return
        try:
            highwaters = await consumer.highwaters(*tps)
        except Exception:  # the broker may be away; the next check tries again
            log.debug("stall check: highwaters unavailable", exc_info=True)
            return
        now = asyncio.get_running_loop().time()
        stalled = []
        for tp in tps:
            # The offset committed: the next one to read (0.3 took it for the last one
            # processed, and so never noticed a partition stuck one record short).
            committed = consumer._committed_offset.get(tp)
            highwater = highwaters.get(tp)
            lagging = highwater is not None and highwater > (committed or 0)
            seen = self._progress.get(tp)
            if not lagging or seen is None or seen[0] != committed:
                self._progress[tp] = (committed, now)
                continue
            if now - seen[1] >= stall_after:
                stalled.append((tp, committed, highwater))
        if stalled:
            for tp, committed, highwater in stalled:
                log.warning(
                    "partition %s/%d has not moved for %.0fs (committed %s, end %s): "
                    "re-seeking to the committed offsets",
                    tp.topic,
                    tp.partition,
                    stall_after,
                    committed,
                    highwater,
                )
                self._progress.pop(tp, None)
            self.stall_reseeks += 1
            try:
                await self.reseek(tp for tp, _, _ in stalled)
            except Exception:  # never crash the worker; the next check tries again
                log.warning("re-seek of stalled partitions failed", exc_info=True)

    async def reseek(self, tps: Iterable[Any]) -> None:
        """Seek ``tps`` back to their committed offsets, really.

        Faust's ``perform_seek`` relies on aiokafka's ``seek_to_committed``, which leaves a
        partition whose committed offset is missing or 0 where it is (it only seeks when
        the offset is > 0). Records fetched and then dropped from Faust's stream buffers
        at a rebalance are then never fetched again until the next rebalance: the
        takeover delay. Such partitions are sought to their earliest offset here, as
        ``auto_offset_reset = earliest`` means; the repeats this causes are harmless.
        """
        consumer: Any = self.consumer
        chosen = list(tps)
        if not chosen:
            return
        committed = {tp: consumer._committed_offset.get(tp) for tp in chosen}
        missing = [tp for tp, offset in committed.items() if not offset]
        earliest = await consumer.earliest_offsets(*missing) if missing else {}
        # seek_wait runs in the consumer's own thread. Faust's consumer.seek() calls
        # aiokafka's seek from this (the app's) thread, racing the fetcher that thread
        # drives: a KeyError in Fetcher.fetched_records crashed workers at start
        # (reproduced by the failpoint consumer.reseek_storm, test_crash.py).
        await consumer.seek_wait({tp: committed[tp] or earliest.get(tp) or 0 for tp in chosen})

    async def _seek_again(self, generation: int) -> None:
        await asyncio.sleep(0.05)  # let the recovery that called us finish resuming
        if self.should_stop or self.rebalancing or self.consumer_generation_id != generation:
            return  # stopping, or another rebalance is under way and will seek itself
        # Every source partition, new ones too. A kept one may have had records fetched
        # and dropped from the queues; a new one, records fetched while the tables were
        # recovering (the consumer fetches, the streams skip them while the app's flow
        # is suspended, unacknowledged). Since commits never pass an unprocessed record
        # (kafka/offsets.py), such a partition would commit nothing more until the stall check
        # re-read it (60 s: the fault suite's kill-9 scenario showed it on every input
        # partition of a freshly started worker). Seeking costs a few records read twice.
        tps = [tp for tp in self.consumer.assignment() if tp.topic in self.watched_topics]
        try:
            await self.reseek(tps)
        except Exception:  # the next rebalance seeks anyway; never crash the worker
            if not self.should_stop:  # stopping closes the consumer's loop under it
                log.warning("re-seek after rebalance failed", exc_info=True)
