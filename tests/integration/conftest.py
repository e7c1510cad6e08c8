"""Real parts for integration tests: real brokers, worker processes, Kafka clients.

- ``broker``: a real broker, started once per session and kind: Tansu (the binary the
  worker embeds) for every test, and Apache Kafka (``remediator.kafka.local``, the broker
  production runs) for the modules and tests marked ``@pytest.mark.brokers("tansu",
  "kafka")``, which then run once on each (ids ``[tansu]``, ``[kafka]``; ``-m kafka``
  selects the Kafka tier). Without Java the Kafka tier skips with one line saying why,
  except under ``CI=true``, where it fails.
- ``names``: a unique app id and unique topic names per test, so tests never see each
  other's messages or consumer groups.
- ``start_worker``: starts ``remediator worker`` as a real process against the broker
  and waits until it serves its partitions; every worker a test started is stopped at the
  end of that test (SIGTERM, then SIGKILL).
- ``kafka``: a plain aiokafka producer, and a reader that returns what really landed on
  a topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from remediator.domain.policy import default_policy_text
from remediator.kafka.embedded import free_port
from remediator.kafka.local import LocalKafkaError, unavailable_reason
from remediator.kafka.metadata import partitions_of
from tests.brokers import Broker, start_broker
from tests.builders import run_payload

pytestmark = pytest.mark.integration

PARTITIONS = 4


def permissive_policy_text() -> str:
    """The default policy without the cluster-wide limits (blast radius, hourly budget).

    Most integration tests are about delivery (crashes, rebalances, the API) and feed many
    failing instances of one cluster at once, which the default policy rightly treats as a
    storm. They run with this policy; the policy's own tests set theirs explicitly.
    """
    text = default_policy_text()
    for old, new in [
        ("max_open = 10\n", "max_open = 100000\n"),
        ("max_percent = 20\n", "max_percent = 100\n"),
        ("rate_budget_per_hour = 20\n", "rate_budget_per_hour = 0\n"),
    ]:
        assert old in text, f"default-policy.toml changed: update permissive_policy_text ({old!r})"
        text = text.replace(old, new)
    return text


class Brokers:
    """The session's brokers, started on first use and stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._started: dict[str, Broker] = {}
        self._refused: str | None = None

    def get(self, kind: str) -> Broker:
        if kind not in self._started:
            self._started[kind] = self._start(kind)
        return self._started[kind]

    def _start(self, kind: str) -> Broker:
        if kind == "kafka":
            if self._refused is None:
                self._refused = unavailable_reason() or ""
            if self._refused:
                kafka_unavailable(self._refused)
        try:
            return start_broker(kind, self.root / kind)
        except LocalKafkaError as exc:
            self._refused = str(exc)
            kafka_unavailable(self._refused)
            raise  # not reached: kafka_unavailable skips or fails

    def stop(self) -> None:
        for started in self._started.values():
            started.stop()


def kafka_unavailable(reason: str) -> None:
    """Skip the Kafka tier with one line, or fail it on CI, where it must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Apache Kafka tier cannot run on CI: {reason}", pytrace=False)
    pytest.skip(f"Apache Kafka tier skipped: {reason}")


@pytest.fixture(scope="session")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Brokers]:
    started = Brokers(tmp_path_factory.mktemp("brokers"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def broker_kind() -> str:
    """Tansu unless the test is marked for both brokers (see pytest_generate_tests)."""
    return "tansu"


@pytest.fixture(scope="module")
def broker(brokers: Brokers, broker_kind: str) -> Broker:
    return brokers.get(broker_kind)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("brokers")
    if marker is not None and "broker_kind" in metafunc.fixturenames:
        metafunc.parametrize("broker_kind", marker.args, scope="module")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("broker_kind") == "kafka":
            item.add_marker(pytest.mark.kafka)


@dataclass(frozen=True)
class Names:
    app_id: str
    active: str
    passive: str
    transitions: str
    dead_letter: str
    policy_events: str
    audit: str = "remediator-audit"

    def env(self) -> dict[str, str]:
        return {
            "REMEDIATOR_APP_ID": self.app_id,
            "REMEDIATOR_TOPIC_ACTIVE_RUNS": self.active,
            "REMEDIATOR_TOPIC_PASSIVE_EVENTS": self.passive,
            "REMEDIATOR_TOPIC_TRANSITIONS": self.transitions,
            "REMEDIATOR_TOPIC_DEAD_LETTER": self.dead_letter,
            "REMEDIATOR_TOPIC_POLICY_EVENTS": self.policy_events,
            "REMEDIATOR_TOPIC_AUDIT": self.audit,
        }


def unique_names() -> Names:
    tag = uuid.uuid4().hex[:10]
    return Names(
        app_id=f"t-{tag}",
        active=f"active-{tag}",
        passive=f"passive-{tag}",
        transitions=f"transitions-{tag}",
        dead_letter=f"dead-letter-{tag}",
        policy_events=f"policy-events-{tag}",
        audit=f"audit-{tag}",
    )


@pytest.fixture
def names() -> Names:
    return unique_names()


@dataclass
class WorkerProcess:
    env: dict[str, str]
    log_path: Path
    web_port: int
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # after `remediator worker`
    _log_file: Any = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        """Serving HTTPS (REMEDIATOR_WEB_TLS_* set)."""
        return bool(self.env.get("REMEDIATOR_WEB_TLS_CERTFILE"))

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "remediator.cli", "worker", *self.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                # Readiness only: a TLS test checks the certificate's verification itself.
                response = httpx.get(f"{self.base_url}/healthz", timeout=1.0, verify=not self.tls)
                if response.status_code == 200 and response.json().get("ready"):
                    return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()
        return process.returncode

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, no commit."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _permissive_policy_file(directory: Path) -> Path:
    path = directory / "permissive-policy.toml"
    if not path.exists():
        path.write_text(permissive_policy_text())
    return path


def launch_worker(
    broker: Broker,
    names: Names,
    directory: Path,
    wait: bool = True,
    args: tuple[str, ...] = (),
    **extra_env: str,
) -> WorkerProcess:
    """Start ``remediator worker`` on the test broker; the caller stops it."""
    web_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")},
        **names.env(),
        "REMEDIATOR_BROKER": broker.url,
        "REMEDIATOR_WEB_PORT": str(web_port),
        "REMEDIATOR_DATA_DIR": str(directory / "data"),
        "REMEDIATOR_PARTITIONS": str(PARTITIONS),
        "REMEDIATOR_BROKER_SESSION_TIMEOUT": "3",
        "REMEDIATOR_LOG_LEVEL": "info",
        # Execution off unless a test turns it on: tests of signals and of the API want
        # PENDING remediations to stay PENDING (the executor's tests set their own limit).
        "REMEDIATOR_MAX_RUNNING_PER_CLUSTER": "0",
        "REMEDIATOR_POLICY_FILE": str(_permissive_policy_file(directory)),
        **extra_env,
    }
    log_path = directory / f"worker-{uuid.uuid4().hex[:6]}.log"
    worker = WorkerProcess(env, log_path, web_port, args=args)
    worker.start()
    if wait:
        try:
            worker.wait_ready()
        except BaseException:
            worker.stop()
            raise
    return worker


@pytest.fixture
def start_worker(
    broker: Broker, names: Names, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(wait: bool = True, args: tuple[str, ...] = (), **extra_env: str) -> WorkerProcess:
        worker = launch_worker(broker, names, tmp_path, wait=False, args=args, **extra_env)
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


class Kafka:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._known: set[str] = set()
        self._creating = asyncio.Lock()  # many produce() at once: one admin client

    async def create_topics(self, *topics: str, partitions: int = PARTITIONS) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics]
            )
        finally:
            await admin.close()

    async def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` unless it exists: Apache Kafka, as the tests run it and as most
        production clusters run, does not create topics on first use (monitoring's
        topics exist before it writes; a test that writes before a worker started makes
        them, as an operator would)."""
        if topic in self._known:
            return
        async with self._creating:
            if topic in self._known:
                return
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                if topic not in set(await admin.list_topics()):
                    with contextlib.suppress(TopicAlreadyExistsError):
                        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
            finally:
                await admin.close()
            self._known.add(topic)

    async def produce(
        self, topic: str, value: bytes | dict[str, Any], key: bytes | None = None
    ) -> None:
        await self.ensure_topic(topic)
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
            await self._producer.start()
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        await self._producer.send_and_wait(topic, raw, key=key)

    async def read(
        self,
        topic: str,
        *,
        at_least: int,
        timeout: float = 30.0,
        settle: float = 1.5,
    ) -> list[dict[str, Any]]:
        """Every message on ``topic`` from the start, once ``at_least`` have arrived and
        nothing more came for ``settle`` seconds (so that extra, unwanted messages are
        seen too). Values are parsed JSON with ``_key`` added."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            partitions = await _partitions_for(consumer, topic, timeout)
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            records: list[dict[str, Any]] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            last_arrival = loop.time()
            while True:
                now = loop.time()
                if len(records) >= at_least and now - last_arrival >= settle:
                    return records
                if now > deadline:
                    raise AssertionError(
                        f"only {len(records)} of {at_least} messages on {topic} in {timeout}s: "
                        f"{records}"
                    )
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    for message in messages:
                        value = orjson.loads(message.value)
                        value["_key"] = message.key.decode() if message.key else None
                        records.append(value)
                        last_arrival = loop.time()
        finally:
            await consumer.stop()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


async def _partitions_for(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> set[int]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        partitions = await partitions_of(consumer, topic)
        if partitions:
            return partitions
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"topic {topic} does not exist")
        await asyncio.sleep(0.2)


@pytest.fixture
async def kafka(broker: Broker) -> AsyncIterator[Kafka]:
    client = Kafka(broker.address)
    try:
        yield client
    finally:
        await client.close()


#: The credential the executor's and the policy's tests give their workers.
OPERATOR_TOKEN = "op-token"
OPERATOR_TOKENS = f"operator={OPERATOR_TOKEN}"


@pytest.fixture
async def api() -> AsyncIterator[Callable[[WorkerProcess], httpx.AsyncClient]]:
    """``api(worker)``: an httpx client on the worker's REST API as ``operator``; closed
    at the end of the test."""
    clients: list[httpx.AsyncClient] = []

    def connect(worker: WorkerProcess) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=worker.base_url,
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
            timeout=30,
        )
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.aclose()


async def open_automated(
    kafka: Kafka, names: Names, client: httpx.AsyncClient, cluster: str, instance: str
) -> dict[str, Any]:
    """A failing health signal, and the PENDING_APPROVAL remediation it opens (listed
    with ``client``'s credentials)."""
    await kafka.produce(names.active, run_payload(cluster_id=cluster, instance_id=instance))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    path = f"/v1/compute/clusters/{cluster}/instances/{instance}/remediations"
    while True:
        listed: list[dict[str, Any]] = (await client.get(path)).json()["remediations"]
        if listed:
            return listed[0]
        assert loop.time() < deadline, "the health signal opened no remediation"
        await asyncio.sleep(0.2)
