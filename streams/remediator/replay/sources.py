"""Where replayed signals come from: the input topics read by time, or a JSON Lines file.

The broker is read as ``remediator tail`` reads it, with the CLI's connection settings,
but by time: each partition of both input topics is positioned with
``offsets_for_times`` at ``--from`` (its beginning without one), and read up to the end
offset it had when the replay started. No consumer group, nothing committed, nothing
written. Each signal's time is its record's timestamp, as the worker stamps it.

A file holds one signal per line (an active run or a passive event, as the topics carry
them: ``remediator tail --from-beginning TOPIC`` prints exactly that). A line's time is
the signal's own (``completed_at``, ``observed_at``), since the file has no record
timestamps. Lines that are not a valid signal are counted and skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from remediator.domain.correlate import event_time
from remediator.domain.models import ActiveHealthCheckRun, HealthSignal, PassiveHealthCheckEvent
from remediator.kafka.security import Connection
from remediator.pipeline.decode import InvalidInput, decode_signal

from .engine import Timed

#: A fetch that brings nothing for this long, with records still due: the broker is gone.
STALL_SECONDS = 30.0

Progress = Callable[[int], None]


class SourceError(Exception):
    """The signals cannot be read (one line)."""


@dataclass
class Loaded:
    """The signals read, and what was skipped."""

    signals: list[Timed] = field(default_factory=list)
    malformed: int = 0
    #: The first few malformed inputs, ``where: why``.
    problems: list[str] = field(default_factory=list)
    #: Valid signals outside the window or of another cluster.
    filtered: int = 0

    def bad(self, where: str, why: str) -> None:
        self.malformed += 1
        if len(self.problems) < 5:
            self.problems.append(f"{where}: {why}")


@dataclass(frozen=True)
class Window:
    """Which signals to replay: event time in [since, until], one cluster or all."""

    since: datetime | None = None
    until: datetime | None = None
    cluster: str | None = None

    def admits(self, at: datetime, signal: HealthSignal) -> bool:
        if self.cluster is not None and signal.cluster_id != self.cluster:
            return False
        if self.since is not None and at < self.since:
            return False
        return self.until is None or at <= self.until


def parse_line(line: bytes) -> HealthSignal:
    """One JSON Lines signal: an active run (it has ``run_id``) or a passive event."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise InvalidInput("not a JSON object")
    model: type[ActiveHealthCheckRun] | type[PassiveHealthCheckEvent] = (
        ActiveHealthCheckRun if "run_id" in document else PassiveHealthCheckEvent
    )
    return decode_signal(model, line)


def read_file(path: Path, window: Window, progress: Progress | None = None) -> Loaded:
    """The signals of a JSON Lines file (``-`` for stdin is not supported: a path)."""
    loaded = Loaded()
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"--input {path}: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if progress is not None:
                progress(1)
            if not line:
                continue
            try:
                signal = parse_line(line)
            except InvalidInput as exc:
                loaded.bad(f"line {number}", str(exc))
                continue
            at = event_time(signal)
            if window.admits(at, signal):
                loaded.signals.append(Timed(at, signal, str(path), 0, number))
            else:
                loaded.filtered += 1
    return loaded


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


async def read_topics(
    connection: Connection,
    topics: Sequence[str],
    window: Window,
    progress: Callable[[int, int], None] | None = None,
) -> Loaded:
    """The signals on ``topics`` (active runs first, then passive events) in ``window``."""
    consumer = connection.consumer(group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        bounds = await _position(consumer, connection, topics, window.since)
        total = sum(end - start for start, end in bounds.values())
        loaded = Loaded()
        models = dict(zip(topics, (ActiveHealthCheckRun, PassiveHealthCheckEvent), strict=True))
        read = 0
        async for records in _records(consumer, bounds):
            for record in records:
                _take(loaded, record, models[record.topic], window)
            read += len(records)
            if progress is not None:
                progress(read, total)
        return loaded
    finally:
        await consumer.stop()


async def _position(
    consumer: Any, connection: Connection, topics: Sequence[str], since: datetime | None
) -> dict[Any, tuple[int, int]]:
    """Assign every partition of ``topics``, seek each to ``since``; returns, for each,
    (first offset to read, end offset now). The end offsets are checked against each
    partition's last batch (``kafka/transport.py``: Tansu answers the start of the last
    batch + 1)."""
    from aiokafka import TopicPartition

    from remediator.kafka.metadata import partitions_of
    from remediator.kafka.transport import EndOffsets

    partitions: list[Any] = []
    for topic in topics:
        found = await partitions_of(consumer, topic)
        if not found:
            raise SourceError(f"topic {topic!r} does not exist")
        partitions += [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    checker = EndOffsets(connection)
    try:
        ends = await checker.check(await consumer.end_offsets(partitions))
    finally:
        await checker.close()
    starts = await consumer.beginning_offsets(partitions)
    if since is not None:
        millis = int(since.timestamp() * 1000)
        found_at = await consumer.offsets_for_times(dict.fromkeys(partitions, millis))
        for tp in partitions:
            at = found_at.get(tp)
            starts[tp] = ends[tp] if at is None else at.offset
    for tp in partitions:
        consumer.seek(tp, starts[tp])
    return {tp: (starts[tp], ends[tp]) for tp in partitions}


async def _records(consumer: Any, bounds: dict[Any, tuple[int, int]]) -> Any:
    """Batches of records, each partition up to its end offset, then stop."""
    loop = asyncio.get_running_loop()
    due = {tp for tp, (start, end) in bounds.items() if start < end}
    last = loop.time()
    while due:
        batch = await consumer.getmany(*due, timeout_ms=500)
        for tp, records in batch.items():
            end = bounds[tp][1]
            kept = [r for r in records if r.offset < end]
            if kept:
                last = loop.time()
                yield kept
        for tp in list(due):
            if await consumer.position(tp) >= bounds[tp][1]:
                due.discard(tp)
        if due and loop.time() - last > STALL_SECONDS:
            raise SourceError(f"no records for {STALL_SECONDS:g}s from {len(due)} partition(s)")


def _take(loaded: Loaded, record: Any, model: Any, window: Window) -> None:
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    try:
        signal = decode_signal(model, record.value)
    except InvalidInput as exc:
        loaded.bad(where, str(exc))
        return
    stamp = record.timestamp
    at = datetime.fromtimestamp(stamp / 1000, UTC) if stamp and stamp > 0 else event_time(signal)
    if window.admits(at, signal):
        loaded.signals.append(Timed(at, signal, record.topic, record.partition, record.offset))
    else:
        loaded.filtered += 1


def merged(parts: Iterable[Loaded]) -> Loaded:
    whole = Loaded()
    for part in parts:
        whole.signals += part.signals
        whole.malformed += part.malformed
        whole.problems += part.problems[: 5 - len(whole.problems)]
        whole.filtered += part.filtered
    return whole
