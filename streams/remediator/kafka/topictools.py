"""``remediator publish`` and ``remediator tail``: feed and read topics by hand.

For demos, smoke tests and operators without Kafka's own tools at hand. ``publish``
sends one message per JSON document (a file holding one object, or JSON Lines), or with
``--raw`` the input's bytes as they are, as one message;
``tail`` prints each message of a topic as one JSON line.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable, Mapping
from typing import IO

import orjson
from aiokafka import TopicPartition

from remediator.kafka.admin import BrokerUnavailable, check_connection
from remediator.kafka.metadata import partitions_of
from remediator.kafka.security import Connection
from remediator.settings import ConfigError, load_broker_settings, parse_server

DEFAULT_BROKER = "kafka://127.0.0.1:9092"
#: How long publish and tail try to reach the broker before giving up.
CONNECT_TIMEOUT = 15.0


class ToolError(Exception):
    """A one-line problem with the arguments or the input."""


def connect_timeout(environ: Mapping[str, str] | None = None) -> float:
    """``REMEDIATOR_BROKER_CONNECT_TIMEOUT`` when set, else :data:`CONNECT_TIMEOUT`: a
    command at a terminal should not wait the worker's minute by default."""
    env = os.environ if environ is None else environ
    try:
        return float(env["REMEDIATOR_BROKER_CONNECT_TIMEOUT"])
    except (KeyError, ValueError):
        return CONNECT_TIMEOUT


def connection(broker: str | None, environ: Mapping[str, str] | None = None) -> Connection:
    """``--broker`` (else ``$REMEDIATOR_BROKER``, else the local default) with the
    ``REMEDIATOR_BROKER_*`` security settings of the environment, checked."""
    env = dict(os.environ if environ is None else environ)
    if broker is not None:
        try:
            for entry in broker.split(","):
                parse_server(entry.strip())
        except ValueError as exc:
            raise ToolError(f"--broker: {exc}") from None
        env["REMEDIATOR_BROKER"] = broker
    env.setdefault("REMEDIATOR_BROKER", DEFAULT_BROKER)
    try:
        return load_broker_settings(env).connection
    except ConfigError as exc:
        raise ToolError(str(exc).removeprefix("invalid configuration: ")) from None


def read_documents(stream: IO[bytes]) -> list[bytes]:
    """One JSON object, or JSON Lines; returns each document re-encoded compactly."""
    data = stream.read().strip()
    if not data:
        return []
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        return [orjson.dumps(whole)]
    documents = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            documents.append(orjson.dumps(orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            raise ToolError(f"line {number} is not JSON ({exc})") from None
    return documents


async def publish(
    broker: Connection,
    topic: str,
    documents: Iterable[bytes],
    key: str | None,
    key_field: str | None,
) -> int:
    await _reach(broker)
    producer = broker.producer(request_timeout_ms=10000)
    await producer.start()
    sent = 0
    try:
        for document in documents:
            message_key = key
            if key_field is not None:
                try:
                    value = orjson.loads(document)
                except orjson.JSONDecodeError:  # --raw bytes need not be JSON
                    value = None
                found = value.get(key_field) if isinstance(value, dict) else None
                message_key = None if found is None else str(found)
            await producer.send_and_wait(
                topic, document, key=None if message_key is None else message_key.encode()
            )
            sent += 1
    finally:
        await producer.stop()
    return sent


async def tail(
    broker: Connection,
    topic: str,
    *,
    from_beginning: bool,
    max_messages: int | None,
    idle_timeout: float | None,
    out: IO[str],
) -> int:
    await _reach(broker)
    consumer = broker.consumer(enable_auto_commit=False)
    await consumer.start()
    printed = 0
    try:
        partitions = await partitions_of(consumer, topic)
        if not partitions:
            raise ToolError(f"topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        loop = asyncio.get_running_loop()
        last = loop.time()
        while max_messages is None or printed < max_messages:
            if idle_timeout is not None and loop.time() - last > idle_timeout:
                break
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    out.write(_render(record.key, record.value) + "\n")
                    out.flush()
                    printed += 1
                    last = loop.time()
                    if max_messages is not None and printed >= max_messages:
                        return printed
    finally:
        await consumer.stop()
    return printed


async def _reach(broker: Connection) -> None:
    """One line, not aiokafka's retries, when the broker is away or refuses us."""
    try:
        await check_connection(broker, connect_timeout())
    except BrokerUnavailable as exc:
        raise ToolError(f"--broker: {exc}") from None


def _render(key: bytes | None, value: bytes | None) -> str:
    try:
        parsed = orjson.loads(value) if value is not None else None
        return orjson.dumps(parsed).decode()
    except orjson.JSONDecodeError:
        return orjson.dumps(
            {
                "key": key and key.decode(errors="replace"),
                "raw": (value or b"").decode(errors="replace"),
            }
        ).decode()


def read_raw(path: str) -> bytes:
    """The whole input, byte for byte: ``publish --raw`` sends it as one message."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ToolError(f"{path}: {exc.strerror}") from None


def read_input(path: str) -> list[bytes]:
    if path == "-":
        return read_documents(sys.stdin.buffer)
    try:
        with open(path, "rb") as handle:
            return read_documents(handle)
    except OSError as exc:
        raise ToolError(f"{path}: {exc.strerror}") from None
