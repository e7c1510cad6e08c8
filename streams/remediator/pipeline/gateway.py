"""The web views' way to the instance agents: send a command, await its reply.

A view never writes a table (only the owner of a cluster's partition may change it). It
sends the command to the inbox partition of the command's cluster (or of its id claim),
and waits for the reply that the owning agent publishes on ``{app_id}-replies``, wherever
that agent runs. Each worker reads the whole
replies topic from its end, without a consumer group, and keeps the replies it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service
from pydantic import ValidationError

from remediator.domain.commands import EVERYWHERE, Command, CommandKind
from remediator.domain.models import dump_json
from remediator.domain.replies import Reply
from remediator.kafka.metadata import partitions_of
from remediator.kafka.security import Connection
from remediator.pipeline.messages import InboxMessage, Route, command_key, command_partition

log = logging.getLogger(__name__)


class GatewayTimeout(Exception):
    """No reply in time: the owner of the partition is restarting or rebalancing."""


def new_command_id() -> str:
    return str(uuid.uuid4())


class Gateway(Service):
    """Sends commands into the inbox and resolves replies read from the replies topic."""

    def __init__(
        self,
        *,
        app: faust.App,
        inbox: faust.TopicT,
        replies: faust.TopicT,
        connection: Connection,
        partitions: int,
        timeout: float,
    ) -> None:
        super().__init__()
        self.app = app
        self.inbox = inbox
        self.replies = replies
        self.replies_topic = replies.get_topic_name()
        self.connection = connection
        self.partitions = partitions
        self.timeout = timeout
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._positioned = asyncio.Event()

    async def on_start(self) -> None:
        await self.replies.maybe_declare()  # nothing consumes it through Faust
        consumer = self.connection.consumer(
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        self._consumer = consumer
        self.add_future(self._read_replies(consumer))

    async def on_stop(self) -> None:
        for future in self._waiting.values():
            future.cancel()
        if self._consumer is not None:
            await self._consumer.stop()

    async def _read_replies(self, consumer: AIOKafkaConsumer) -> None:
        partitions: set[int] = set()
        while not self.should_stop and not partitions:
            partitions = await partitions_of(consumer, self.replies_topic)
            if not partitions:
                await asyncio.sleep(0.2)
        tps = [TopicPartition(self.replies_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the lazy "end" now, before any command is sent
            await consumer.position(tp)
        self._positioned.set()
        while not self.should_stop:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    self._resolve(record.value)

    def _resolve(self, raw: bytes | None) -> None:
        try:
            reply = Reply.model_validate_json(raw or b"")
        except ValidationError:
            log.warning("ignoring an unreadable reply")
            return
        future = self._waiting.get(reply.command_id)
        if future is not None and not future.done():
            future.set_result(reply)

    async def ask(self, command: Command, route: Route = Route.INSTANCE) -> Reply:
        """Send ``command`` to its owner and return the reply; :class:`GatewayTimeout`."""
        key = command_key(command, route).encode()
        partition = command_partition(command, route, self.partitions)
        (reply,) = await self._ask_all([(command, route, key, partition)])
        return reply

    async def tell(self, command: Command, route: Route = Route.INSTANCE) -> None:
        """Send ``command`` to its owner, waiting for the broker's acknowledgement only:
        its handler answers nothing (an AUDIT note)."""
        key = command_key(command, route).encode()
        partition = command_partition(command, route, self.partitions)
        value = dump_json(InboxMessage(command=command, route=route))
        await (await self.inbox.send(key=key, value=value, partition=partition))

    async def scan(self, command: Command) -> list[Reply]:
        """A cluster-wide LIST (the whole cluster lives in one partition: one reply), or
        CLUSTERS and a fleet-wide LIST (asked of every partition: one reply each)."""
        if command.kind is CommandKind.CLUSTERS or command.cluster_id == EVERYWHERE:
            return await self.ask_every_partition(command, Route.FLEET)
        return [await self.ask(command, Route.CLUSTER)]

    async def ask_every_partition(self, command: Command, route: Route) -> list[Reply]:
        """Send ``command`` to the owner of every partition; one reply per partition."""
        parts = [
            (
                command.model_copy(update={"command_id": f"{command.command_id}/{p}"}),
                route,
                command_key(command, route).encode(),
                p,
            )
            for p in range(self.partitions)
        ]
        return await self._ask_all(parts)

    async def _ask_all(self, parts: Sequence[tuple[Command, Route, bytes, int]]) -> list[Reply]:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._positioned.wait(), self.timeout)
        loop = asyncio.get_running_loop()
        futures = []
        for command, _, _, _ in parts:
            future: asyncio.Future[Reply] = loop.create_future()
            self._waiting[command.command_id] = future
            futures.append(future)
        try:
            for command, route, key, partition in parts:
                value = dump_json(InboxMessage(command=command, route=route))
                await self.inbox.send(key=key, value=value, partition=partition)
            return list(await asyncio.wait_for(asyncio.gather(*futures), self.timeout))
        except TimeoutError:
            raise GatewayTimeout(
                f"no answer from the owner of the instance in {self.timeout:.0f}s"
            ) from None
        finally:
            for command, _, _, _ in parts:
                self._waiting.pop(command.command_id, None)
