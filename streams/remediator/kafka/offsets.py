"""The fetch loop and the commit rule: every record delivered, none committed unprocessed.

What the worker reads and commits: every fetched record is delivered, and no offset is
committed over a record that was not processed.

Faust (faust-streaming 0.15.3, as pinned in requirements.lock) loses records in three
places, all found by the fault suite (README "Reliability": kill -9 of starting workers,
and scale-out with a takeover, lost signals with the group's offsets committed past them
and nothing in any log):

1. **Commits over holes.** Faust commits the end of the first run of consecutive
   acknowledged offsets, checking its start against the committed offset loosely: a
   partition never committed (or committed at 0) is not checked at all, and one committed
   at *c* skips record *c* when *c + 1* is acknowledged. Records fetched and not processed
   (dropped from a stream's queue at a rebalance, skipped as belonging to an older
   generation, held by the state owner) were committed over. :func:`next_commit` starts
   the run at the committed offset, or at the partition's first offset when nothing is
   committed, and commits nothing otherwise.
2. **Records dropped as "already read".** Faust's drain loop drops a record whose offset
   is below the last one it delivered for the partition. After a seek back (the worker's
   re-seek after a rebalance, the stall check), the rest of a batch fetched *before* the
   seek is still being delivered and moves that mark ahead, so the records the seek was
   for are fetched again and dropped. Here every fetched record is delivered: a repeat is
   harmless (the state owner drops it by its id), a drop is a loss.
3. **Gaps that are not there.** Faust counts the offsets between the last record it
   delivered and the next as records that do not exist (transaction markers, compaction)
   and so as done, including the next record itself (off by one); after such a seek the
   "gap" was every record the seek was for. Here a gap is only what the fetcher itself
   moved past without returning a record: the offsets between its position before and
   after one fetch that no returned record has (:func:`skipped_ranges`, read in the
   consumer's thread around each fetch: ``transport.py``). aiokafka moves its position
   past transaction markers, aborted transactions (read_committed) and compacted-away
   offsets, also when a fetch returns nothing else: the markers that a transactional
   producer upstream leaves after each transaction, at the end of a partition too, are
   committed over (found on Apache Kafka: the rule of 0.3, "between two records of one
   response", left the commits of such a partition stuck at its first marker). A seek
   during a fetch moves the position back (nothing counted) or forward to offsets below
   the committed one (already done).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable, MutableSequence
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.types import TP
from mode import Service, ServiceT

from remediator import failpoints

log = logging.getLogger(__name__)


def skipped_ranges(before: int, after: int, delivered: Iterable[int]) -> list[tuple[int, int]]:
    """The offsets in ``[before, after)`` that no delivered record has, as inclusive
    ``(first, last)`` ranges: where the fetcher moved past without a record."""
    if after <= before:
        return []
    ranges: list[tuple[int, int]] = []
    cursor = before
    for offset in sorted(o for o in delivered if before <= o < after):
        if offset > cursor:
            ranges.append((cursor, offset - 1))
        cursor = max(cursor, offset + 1)
    if cursor < after:
        ranges.append((cursor, after - 1))
    return ranges


def next_commit(
    acked: MutableSequence[int],
    acked_index: set[int],
    gaps: Iterable[range],
    start: int | None,
) -> int | None:
    """The offset to commit for a partition, or None: the end of the run of consecutive
    acknowledged offsets that starts at ``start`` (the committed offset, or the
    partition's first offset when nothing is committed). ``None`` while ``start`` itself
    is not acknowledged or not known: a record not processed is never committed over.

    ``gaps`` are offsets a fetch response skipped (no record there), counted as done. The
    committed run is removed from ``acked`` and ``acked_index`` (Faust's bookkeeping), as
    Faust's own ``_new_offset`` does.
    """
    if start is None:
        return None
    offsets = set(acked)
    for gap in gaps:
        offsets.update(gap)
    end = start
    while end in offsets:
        end += 1
    if end == start:
        return None
    # Offsets below the commit are done with; later ones wait for the next commit.
    remaining = sorted(offset for offset in acked if offset >= end)
    acked[:] = remaining
    acked_index.intersection_update(remaining)
    return end


class SafeOffsets:
    """Mixed into Faust's consumer (``transport.py``): see the module docstring."""

    # Faust's consumer attributes this class works with (typed here for mypy).
    app: Any
    _acked: Any
    _acked_index: Any
    _gap: Any
    _committed_offset: Any
    _n_acked: int
    _commit_every: int | None
    consumer_stopped_errors: tuple[type[BaseException], ...]
    transport: Any
    diag: Any
    callback: Any
    suspend_flow: asyncio.Event
    should_stop: bool
    _thread: Any

    #: Per partition never committed: its first offset, where its run must start.
    _first_offsets: dict[TP, int]

    def _starts(self) -> dict[TP, int]:
        try:
            return self._first_offsets
        except AttributeError:
            self._first_offsets = {}
            return self._first_offsets

    def _new_offset(self, tp: TP) -> int | None:
        committed = self._committed_offset[tp]
        start = committed if committed else self._starts().get(tp)
        gaps = self._gap[tp]
        end = next_commit(
            self._acked[tp], self._acked_index[tp], [range(i.begin, i.end) for i in gaps], start
        )
        if end is not None and gaps:
            gaps.chop(0, end)
        return end

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, then learn where the partitions with
        nothing committed start (where :func:`next_commit` must begin)."""
        await super().perform_seek()  # type: ignore[misc]
        starts = self._starts()
        starts.clear()
        consumer = cast(Any, self)
        uncommitted = [
            tp
            for tp in consumer.assignment()
            if not self._committed_offset[tp] and self.app.topics.acks_enabled_for(tp.topic)
        ]
        if not uncommitted:
            return
        try:
            earliest = await consumer.earliest_offsets(*uncommitted)
        except Exception:
            log.warning(
                "first offsets of %d partition(s) unavailable: not committing them yet",
                len(uncommitted),
                exc_info=True,
            )
            return
        starts.update({tp: offset for tp, offset in earliest.items() if offset is not None})

    # Faust's own loop, kept in its shape so that an upgrade diffs against it cleanly.
    async def _drain_messages(  # noqa: C901, PLR0912  # pragma: no cover - loop
        self, fetcher: ServiceT
    ) -> None:
        """Faust's fetch loop (``Consumer._drain_messages``), delivering every record and
        recording only true gaps (see the module docstring)."""
        consumer = cast(Any, self)
        callback = self.callback
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        acks_enabled_for = self.app.topics.acks_enabled_for
        # The worker's own topics go in batches, past Faust's streams (kafka/direct.py);
        # a plain Faust app (the bench's bare agent) has none.
        direct = getattr(self.app, "direct", None)
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records: AsyncIterator[tuple[TP, Any]] = consumer.getmany(timeout=1.0)
                await consumer.sleep(0)  # getmany may return at once, again and again
                if not self.should_stop:
                    async for tp, message in records:
                        since_yield += 1
                        if since_yield > 100:
                            await asyncio.sleep(0)
                            since_yield = 0
                        if failpoints.armed("consumer.drop_fetched") and consumer.dropping(tp):
                            continue
                        if direct is not None and direct.takes(message.topic):
                            direct.add(message)
                            continue
                        if self._commit_every is not None and self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            await consumer.commit()
                        await consumer.wait_first(callback(message), self.suspend_flow.wait())
                    if direct is not None:
                        await direct.flush()
                await self._record_skipped(acks_enabled_for)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception:
            log.exception("the fetch loop crashed")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _record_skipped(self, acks_enabled_for: Any) -> None:
        """Count as done the offsets the fetcher moved past without a record (the consumer
        thread notes them around each fetch: ``transport.py``)."""
        skipped: deque[tuple[TP, int, int]] | None = getattr(self._thread, "skipped", None)
        while skipped:
            tp, first, last = skipped.popleft()
            if acks_enabled_for(tp.topic):
                await cast(Any, self)._add_gap(tp, first, last)

    def dropping(self, tp: TP) -> bool:
        """Failpoint ``consumer.drop_fetched``: whether to drop a fetched record of ``tp``
        without delivering it, as Faust's queues drop records at a rebalance (the app
        sets the window after each rebalance)."""
        until = getattr(self.app, "drop_fetched_until", 0.0)
        return bool(
            tp.topic in self.app.watched_topics and asyncio.get_running_loop().time() < until
        )
