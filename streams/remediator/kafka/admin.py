"""The broker checked before anything else: reachable, securely, with its topics created.

What the worker and the CLI do with the broker before anything else: prove it can be
reached with the configured security, and create missing topics.

:func:`check_connection` answers the question an operator paged at night asks first:
*why* does it not connect? aiokafka's clients log the cause of a failed bootstrap and then
raise a generic "Unable to bootstrap", and Faust retries that for ever. Here the cause is
read directly (one connection per bootstrap server, with the same TLS and SASL settings as
every client), and a cause that waiting cannot cure (credentials refused, an unknown
mechanism, an untrusted certificate, a TLS handshake failure) stops start-up at once with
one line. A broker that is merely not there yet is retried until the start-up timeout.

:func:`ensure_topics` runs with a plain admin client before Faust subscribes, so a
consumer's metadata request never auto-creates an input topic with the broker's default
partition count (and on brokers with auto-creation off, as most production clusters are,
the topics exist before anyone reads them).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    UnsupportedSaslMechanismError,
    for_code,
)

from .security import Connection

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached in time. The message is one line."""


class BrokerRefused(BrokerUnavailable):
    """The broker was reached but refuses this client: waiting will not help."""


async def check_connection(connection: Connection, timeout: float) -> None:
    """Return once one bootstrap server accepts a connection with ``connection``'s
    security; raise :class:`BrokerRefused` at once for a cause that waiting cannot cure,
    :class:`BrokerUnavailable` when ``timeout`` runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.1
    while True:
        causes = []
        for server in connection.servers:
            try:
                await _connect_once(connection, server, min(10.0, max(timeout, 1.0)))
                return
            except BrokerRefused:
                raise
            except (TimeoutError, OSError, KafkaError) as exc:
                causes.append(f"{server}: {_cause(exc)}")
        if loop.time() + delay > deadline:
            raise BrokerUnavailable(
                f"cannot reach the broker in {timeout:g}s: {'; '.join(causes)}"
                + _hint(connection, causes)
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def _connect_once(connection: Connection, server: str, timeout: float) -> None:
    host, _, port = server.rpartition(":")
    kwargs = connection.security.client_kwargs()
    security = connection.security
    try:
        conn = await create_conn(
            host,
            int(port),
            request_timeout_ms=int(timeout * 1000),
            security_protocol=kwargs.get("security_protocol", "PLAINTEXT"),
            ssl_context=kwargs.get("ssl_context"),
            sasl_mechanism=kwargs.get("sasl_mechanism"),
            sasl_plain_username=kwargs.get("sasl_plain_username"),
            sasl_plain_password=kwargs.get("sasl_plain_password"),
        )
    except ssl.SSLCertVerificationError as exc:
        raise BrokerRefused(
            f"{server}: the broker's certificate is not trusted ({exc.verify_message}); "
            "check REMEDIATOR_BROKER_SSL_CAFILE"
        ) from None
    except ssl.SSLError as exc:
        raise BrokerRefused(
            f"{server}: TLS handshake failed ({exc.reason or exc}); is this a TLS listener? "
            "check REMEDIATOR_BROKER_SECURITY_PROTOCOL"
        ) from None
    except UnsupportedSaslMechanismError as exc:
        raise BrokerRefused(
            f"{server}: the broker does not accept SASL mechanism {security.mechanism} "
            f"({_cause(exc)}); check REMEDIATOR_BROKER_SASL_MECHANISM"
        ) from None
    except KafkaError as exc:
        if _is_auth_failure(exc):
            raise BrokerRefused(
                f"{server}: the broker refused the SASL credentials of user "
                f"{security.username!r} ({security.mechanism}); check "
                "REMEDIATOR_BROKER_SASL_USERNAME and the password"
            ) from None
        raise
    conn.close()


def _hint(connection: Connection, causes: list[str]) -> str:
    """A connection the listener dropped at once usually means the protocols disagree."""
    dropped = any(word in c.lower() for c in causes for word in ("closed", "reset", "eof"))
    if not dropped:
        return ""
    if connection.security.uses_tls:
        return (
            " (the listener dropped the TLS handshake: does it speak TLS? check "
            "REMEDIATOR_BROKER_SECURITY_PROTOCOL)"
        )
    return (
        " (the listener dropped the connection: does it want TLS or SASL? check "
        "REMEDIATOR_BROKER_SECURITY_PROTOCOL)"
    )


def _is_auth_failure(exc: KafkaError) -> bool:
    # aiokafka raises the broker's SaslAuthenticationFailed (error 58) or its own
    # AuthenticationFailedError, depending on the mechanism and the version.
    return getattr(exc, "errno", None) == 58 or "Authentication" in type(exc).__name__


def _cause(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, KafkaConnectionError) and exc.args:
        return str(exc.args[0])
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def missing_topics(connection: Connection, names: Iterable[str]) -> list[str]:
    """Those of ``names`` the broker does not have."""
    admin = connection.admin(request_timeout_ms=10000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [name for name in dict.fromkeys(names) if name not in existing]


@dataclass(frozen=True)
class TopicSpec:
    """A topic the worker needs: its name, partition count and topic configs."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


async def ensure_topics(
    connection: Connection,
    topics: Iterable[TopicSpec],
    *,
    replication_factor: int,
    timeout: float = 30.0,
) -> list[str]:
    """Create those of ``topics`` that do not exist; return the names created. A topic the
    broker refuses to create (too few brokers for the replication factor, no CREATE
    right, a policy) raises :class:`BrokerRefused` naming it and the broker's reason."""
    await check_connection(connection, timeout)
    admin = connection.admin(request_timeout_ms=10000)
    try:
        await _start_with_retry(admin, connection, timeout)
        existing = set(await admin.list_topics())
        wanted = {spec.name: spec for spec in topics}
        missing = [spec for name, spec in wanted.items() if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions,
                    replication_factor=replication_factor,
                    topic_configs=dict(spec.config),
                )
                for spec in missing
            ]
        )
        created = _created(response, replication_factor)
        if created:
            await _wait_for_leaders(admin, created, timeout)
            log.info("created topics %s", ", ".join(created))
        return created
    finally:
        await admin.close()


async def _wait_for_leaders(admin: Any, topics: list[str], timeout: float) -> None:
    """Return once every partition of ``topics`` has a leader (or ``timeout`` passed).

    Apache Kafka answers CreateTopics before it has elected the new partitions' leaders;
    a consumer asking for their offsets meanwhile gets NotLeaderForPartition, which
    aiokafka logs as an ERROR before retrying (seen at every start of a new app id)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(timeout, 15.0)
    while loop.time() < deadline:
        described = await admin.describe_topics(topics)
        led = all(
            topic["error_code"] == 0
            and topic["partitions"]
            and all(p["leader"] >= 0 for p in topic["partitions"])
            for topic in described
        )
        if led and len(described) == len(topics):
            return
        await asyncio.sleep(0.1)


#: CreateTopics error codes: none, and "already exists" (another worker made it first).
_NONE, _EXISTS = 0, 36


def _created(response: Any, replication_factor: int) -> list[str]:
    created = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code == _NONE:
            created.append(name)
        elif code != _EXISTS:
            kind = for_code(code).__name__
            hint = {
                "InvalidReplicationFactorError": f" (REMEDIATOR_REPLICATION_FACTOR is "
                f"{replication_factor})",
                "TopicAuthorizationFailedError": " (grant CREATE, or create it and set "
                "REMEDIATOR_CREATE_TOPICS=false)",
                "ClusterAuthorizationFailedError": " (grant CREATE, or create it and set "
                "REMEDIATOR_CREATE_TOPICS=false)",
            }.get(kind, "")
            raise BrokerRefused(f"cannot create topic {name}: {kind}: {message or '-'}{hint}")
    return created


async def _start_with_retry(
    admin: AIOKafkaAdminClient, connection: Connection, timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.1
    while True:
        try:
            await admin.start()
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if loop.time() + delay > deadline:
                raise BrokerUnavailable(
                    f"cannot reach the broker at {','.join(connection.servers)} ({exc})"
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
