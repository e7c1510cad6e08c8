"""The notifier: a service of the worker that tells the policy's ``[[notify]]`` targets.

It reads the transitions and policy-events topics with a consumer group of its own
(``<app id>-notify``): every worker of an app id runs one, they share the partitions the
Kafka way, and a worker that was down catches up from the group's committed offsets. A
group's very first start begins at the topics' ends (found as the worker starts, before
its pipeline has joined its own group): turning notifications on does not replay the
history to the receivers.

Per record, every target that wants it gets a job on its own queue, and one task per
target delivers its queue in order (:mod:`remediator.notify.delivery`): a receiver that
is down delays only its own notifications. A record is done when each of its jobs was
delivered or given up (then its dead letter is acknowledged first); offsets are
committed by the rule of :mod:`remediator.notify.progress`, never past a record not
done. When :data:`MAX_PENDING` records are fetched and not done (a receiver down for
long), fetching pauses until some are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from mode import Service

from remediator import __version__
from remediator.domain.models import dump_json
from remediator.domain.notify_policy import NotifyTarget
from remediator.kafka.metadata import partitions_of
from remediator.kafka.security import Connection
from remediator.notify.delivery import HideTargetPaths, Outcome, Request, deliver
from remediator.notify.formats import (
    CLOUDEVENTS_TYPE,
    JSON_TYPE,
    POLICY_EVENT,
    TRANSITION,
    Notice,
    cloudevent,
    notice_of,
    signature,
    slack_message,
)
from remediator.notify.progress import PartitionProgress, Progress
from remediator.pipeline.decode import dead_letter

log = logging.getLogger(__name__)

#: Records fetched and not done before fetching pauses.
MAX_PENDING = 1000
#: How often finished records' offsets are committed.
COMMIT_INTERVAL = 0.5
#: Longest wait between attempts to write a dead letter (the broker is down).
DEAD_LETTER_RETRY_MAX = 30.0


@dataclass(frozen=True)
class Target:
    """A ``[[notify]]`` entry with its secret, read at start (never logged)."""

    spec: NotifyTarget
    secret: bytes | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class NotifierConfig:
    """Where the notifier reads and writes, and what it says it is."""

    connection: Connection
    group_id: str
    transitions_topic: str
    policy_events_topic: str
    dead_letter_topic: str
    #: The CloudEvents ``source``, e.g. ``remediator/<app id>``.
    source: str
    #: The dashboard's base URL, for Slack messages' links.
    public_url: str
    session_timeout: float = 6.0
    fetch_max_wait_ms: int = 100


class NotifyCounts(Protocol):
    """What the notifier counts (the worker's :class:`~remediator.metrics.Metrics`)."""

    def notified(self, target: str, result: str, seconds: float | None = None) -> None:
        """``result``: delivered, retried or given_up; ``seconds`` when delivered."""


class _Uncounted:
    def notified(self, target: str, result: str, seconds: float | None = None) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Job:
    """One notification: a record, for one target."""

    progress: PartitionProgress
    record: ConsumerRecord[bytes, bytes]
    notice: Notice


def request_for(target: Target, notice: Notice, config: NotifierConfig) -> Request:
    """The body and headers ``target`` gets for ``notice``."""
    if target.spec.format == "slack":
        body, content_type = slack_message(notice, config.public_url), JSON_TYPE
    else:
        body, content_type = cloudevent(notice, config.source), CLOUDEVENTS_TYPE
    headers = {"Content-Type": content_type, "User-Agent": f"remediator/{__version__}"}
    if target.secret is not None:
        headers[target.spec.header] = signature(target.secret, body)
    return Request(body, headers)


class Notifier(Service):
    """Reads the output topics with its own group and tells the targets (see above)."""

    def __init__(
        self,
        config: NotifierConfig,
        targets: Sequence[Target],
        *,
        counts: NotifyCounts | None = None,
        clock: Callable[[], datetime],
        on_crash: Callable[[BaseException], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.targets = list(targets)
        self.counts: NotifyCounts = counts or _Uncounted()
        self.clock = clock
        self.on_crash = on_crash
        self.progress: Progress[TopicPartition] = Progress()
        self._queues: dict[str, asyncio.Queue[Job]] = {t.name: asyncio.Queue() for t in targets}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._client: httpx.AsyncClient | None = None
        self._running: list[asyncio.Task[None]] = []
        #: Where a new group starts, per partition: the ends found at the first start.
        self._starts: dict[TopicPartition, int] = {}
        self._hide_paths = HideTargetPaths(t.spec.url for t in targets)

    async def on_start(self) -> None:
        # Nothing here waits on the broker: the worker's start (and its web server's
        # readiness answers) does not wait for the notifier's group.
        self._client = httpx.AsyncClient(follow_redirects=False)
        logging.getLogger("httpx").addFilter(self._hide_paths)
        self._spawn(self._run(), "notify-read")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._running.append(asyncio.create_task(self._supervised(work, name), name=name))

    async def _supervised(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work``; if it fails, the worker stops (``on_crash``): notifications must
        not stop quietly while the worker runs on."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any bug: say it and stop the worker
            log.critical("notifier task %s failed (%s: %s)", name, type(exc).__name__, exc)
            if self.on_crash is not None:
                await self.on_crash(exc)

    async def _run(self) -> None:
        """Start the clients, subscribe (the group is joined by the first fetch), start
        the delivery and commit tasks, then read until stopped."""
        config = self.config
        self._producer = config.connection.producer(acks="all", enable_idempotence=False)
        await self._producer.start()
        heartbeat = min(max(config.session_timeout / 3, 0.5), 1.0)
        self._consumer = consumer = config.connection.consumer(
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=int(config.session_timeout * 1000),
            heartbeat_interval_ms=int(heartbeat * 1000),
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            max_poll_records=500,
        )
        await consumer.start()
        self._starts = await self._new_group_starts(consumer)
        consumer.subscribe(
            [config.transitions_topic, config.policy_events_topic], listener=_Listener(self)
        )
        self._spawn(self._commit_every(COMMIT_INTERVAL), "notify-commit")
        for target in self.targets:
            self._spawn(self._deliver_queue(target), f"notify-{target.name}")
        names = ", ".join(t.name for t in self.targets)
        log.info("notifications: group %s, targets %s", config.group_id, names)
        await self._read(consumer)

    async def on_stop(self) -> None:
        logging.getLogger("httpx").removeFilter(self._hide_paths)
        for task in self._running:
            task.cancel()
        for task in self._running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._consumer is not None:
            await self.commit()
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._client is not None:
            await self._client.aclose()

    async def _new_group_starts(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """The topics' ends when the group has committed nothing yet (its first start:
        begin there, not at the history); empty otherwise."""
        tps = [
            TopicPartition(topic, partition)
            for topic in (self.config.transitions_topic, self.config.policy_events_topic)
            for partition in sorted(await partitions_of(consumer, topic))
        ]
        for tp in tps:
            if await consumer.committed(tp) is not None:
                return {}
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps) if tps else {}
        return ends

    # -- reading -----------------------------------------------------------------------

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            if self.progress.pending() >= MAX_PENDING:
                consumer.pause(*consumer.assignment())
            elif consumer.paused():
                consumer.resume(*consumer.paused())
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                if tp not in consumer.assignment():
                    continue
                for record in records:
                    self._dispatch(tp, record)

    def _dispatch(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        """Queue the record's notifications, one per target that wants it."""
        source = TRANSITION if record.topic == self.config.transitions_topic else POLICY_EVENT
        notice = notice_of(source, record.value)
        progress = self.progress.get(tp) or self.progress.assign(tp, record.offset, None)
        wanted = []
        if notice is not None:
            wanted = [t for t in self.targets if t.spec.wants(notice.trigger, notice.cluster_id)]
        progress.fetched(record.offset, len(wanted))
        for target in wanted:
            assert notice is not None  # noqa: S101 - wanted is empty without one
            self._queues[target.name].put_nowait(Job(progress, record, notice))

    # -- delivering --------------------------------------------------------------------

    async def _deliver_queue(self, target: Target) -> None:
        queue = self._queues[target.name]
        while True:
            job = await queue.get()
            outcome = await self._deliver(target, job)
            if outcome.delivered:
                self.counts.notified(target.name, "delivered", outcome.seconds)
            else:
                await self._give_up(target, job, outcome)
                self.counts.notified(target.name, "given_up")
            job.progress.done(job.record.offset)

    async def _deliver(self, target: Target, job: Job) -> Outcome:
        assert self._client is not None  # noqa: S101 - started in on_start

        def retried(cause: str) -> None:
            self.counts.notified(target.name, "retried")
            log.info("notify %s: %s for %s; retrying", target.name, cause, job.notice.id)

        request = request_for(target, job.notice, self.config)
        return await deliver(self._client, target.spec, request, on_retry=retried)

    async def _give_up(self, target: Target, job: Job, outcome: Outcome) -> None:
        """Dead-letter the notification (retried until the broker acknowledges it)."""
        record = job.record
        error = f"notify target {target.name!r} gave up on {job.notice.id}: {outcome.error}"
        log.warning("%s; dead-lettered", error)
        letter = dead_letter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            payload=record.value,
            error=error,
            received_at=self.clock(),
        )
        await self._send_until_acknowledged(record.key, dump_json(letter))

    async def _send_until_acknowledged(self, key: bytes | None, value: bytes) -> None:
        assert self._producer is not None  # noqa: S101 - started in on_start
        wait = 0.5
        while True:
            try:
                await self._producer.send_and_wait(self.config.dead_letter_topic, value, key=key)
                return
            except KafkaError as exc:
                log.warning("notify: writing a dead letter failed (%s); retrying", exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, DEAD_LETTER_RETRY_MAX)

    # -- committing --------------------------------------------------------------------

    async def _commit_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.commit()

    async def commit(self, only: Mapping[TopicPartition, Any] | None = None) -> None:
        """Commit the done prefix of every assigned partition (of ``only``'s)."""
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self.progress.to_commit().items()
            if tp in assigned and (only is None or tp in only)
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance under way: the next owner goes on
            log.info("notify: commit of %d partition(s) failed: %s", len(offsets), exc)
            return
        self.progress.committed(offsets)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """A new group's partitions start at the ends found at start (committed at once,
        so that a restart does not go back to the history)."""
        consumer = self._consumer
        if consumer is None or not self._starts:
            return
        for tp in assigned:
            start = self._starts.get(tp)
            if start is not None and await consumer.committed(tp) is None:
                consumer.seek(tp, start)
                self.progress.assign(tp, start, None)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.commit(only=dict.fromkeys(revoked))
        for tp in revoked:
            self.progress.revoke(tp)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.notifier.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.notifier.on_assigned(assigned)
