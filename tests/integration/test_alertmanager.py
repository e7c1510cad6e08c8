"""Alerts from a real Prometheus Alertmanager, through its webhook, into remediations.

Each test starts a real worker and a real Alertmanager (Debian's
``prometheus-alertmanager``, installed by ``make system-deps``) on loopback, routing every
alert to the worker's ``POST /v1/alertmanager`` with a bearer token, and posts alerts to
Alertmanager's own v2 API as Prometheus would. What the tests check is what landed on
the topics. Alertmanager is stopped at the end of each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from remediator.api.alertmanager import SOURCE
from remediator.kafka.embedded import EmbeddedBroker, free_port
from tests.integration.conftest import Kafka, Names, WorkerProcess, launch_worker

pytestmark = pytest.mark.integration

TOKEN = "am-token"
TOKENS = f"alertmanager={TOKEN}"
BINARIES = ("prometheus-alertmanager", "alertmanager")


def alertmanager_binary() -> str:
    for name in BINARIES:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin")
        if found:
            return found
    pytest.skip(
        "Prometheus Alertmanager is not installed (no prometheus-alertmanager on PATH): "
        "`make system-deps` installs it as root (Debian package prometheus-alertmanager)"
    )


@dataclass
class Alertmanager:
    """One Alertmanager process with a config routing everything to one webhook."""

    binary: str
    directory: Path
    webhook_url: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "route": {
                "receiver": "remediator",
                "group_by": ["..."],  # every alert its own group
                "group_wait": "1s",
                "group_interval": "1s",
                # Short, so that the same firing alert is notified again during a test.
                "repeat_interval": "2s",
            },
            "receivers": [
                {
                    "name": "remediator",
                    "webhook_configs": [
                        {
                            "url": self.webhook_url,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials": TOKEN}
                            },
                        }
                    ],
                }
            ],
        }

    def start(self) -> None:
        self.port = free_port()
        config = self.directory / "alertmanager.yml"
        config.write_text(yaml.safe_dump(self.config()))
        (self.directory / "data").mkdir(exist_ok=True)
        log = (self.directory / "alertmanager.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",  # no gossip: a single instance
                    "--log.level=debug",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"alertmanager exited:\n{self.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"alertmanager not ready in {timeout}s:\n{self.log()[-3000:]}")

    async def post(self, *alerts: dict[str, Any]) -> None:
        """Post alerts as Prometheus does (Alertmanager's v2 API)."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(f"{self.url}/api/v2/alerts", json=list(alerts))
        assert response.status_code == 200, response.text

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        path = self.directory / "alertmanager.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def start_alertmanager(tmp_path: Path) -> Iterator[Callable[[WorkerProcess], Alertmanager]]:
    """``start_alertmanager(worker)``: a running Alertmanager notifying ``worker``."""
    binary = alertmanager_binary()
    started: list[Alertmanager] = []

    def start(worker: WorkerProcess) -> Alertmanager:
        directory = tmp_path / f"alertmanager-{len(started)}"
        directory.mkdir()
        manager = Alertmanager(binary, directory, f"{worker.base_url}/v1/alertmanager")
        started.append(manager)
        manager.start()
        return manager

    yield start
    for manager in started:
        manager.stop()


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def prometheus_alert(
    labels: dict[str, str], starts_at: datetime, ends_at: datetime | None = None
) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": "from the Alertmanager integration test"},
        "startsAt": rfc3339(starts_at),
        "generatorURL": "http://prometheus.test:9090/graph",
    }
    if ends_at is not None:
        alert["endsAt"] = rfc3339(ends_at)
    return alert


async def until(
    kafka: Kafka,
    topic: str,
    check: Callable[[list[dict[str, Any]]], bool],
    what: str,
    timeout: float = 45.0,
    on_timeout: Callable[[], str] = str,
) -> list[dict[str, Any]]:
    """Every record on ``topic`` once ``check`` holds for them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        records = await kafka.read(topic, at_least=0, settle=0.5)
        if check(records):
            return records
        assert loop.time() < deadline, f"timed out waiting for {what}: {records}\n{on_timeout()}"
        await asyncio.sleep(0.3)


def diagnostics(worker: WorkerProcess, manager: Alertmanager) -> Callable[[], str]:
    return lambda: (
        f"worker log:\n{worker.log()[-2000:]}\nalertmanager log:\n{manager.log()[-2000:]}"
    )


async def test_a_critical_alert_opens_one_remediation_and_its_resolution_auto_resolves_it(
    start_worker: Callable[..., WorkerProcess],
    start_alertmanager: Callable[[WorkerProcess], Alertmanager],
    kafka: Kafka,
    names: Names,
) -> None:
    worker = start_worker(REMEDIATOR_API_TOKENS=TOKENS)
    manager = start_alertmanager(worker)
    explain = diagnostics(worker, manager)
    cluster, instance = f"cl-{uuid.uuid4().hex[:8]}", "inst-7f3a"
    labels = {
        "alertname": "DmesgXidError",
        "cluster_id": cluster,
        "instance_id": instance,
        "instance_name": "gpu-node-017",
        "severity": "critical",
        "xid": "79",  # a label, not an annotation: the policy's xid-79 rule still sees it
    }
    started = datetime.now(UTC) - timedelta(seconds=5)
    await manager.post(prometheus_alert(labels, started))

    def opened(records: list[dict[str, Any]]) -> bool:
        return any(t["to_state"] == "PENDING_APPROVAL" for t in records)

    transitions = await until(kafka, names.transitions, opened, "PENDING_APPROVAL", 45, explain)
    [creation] = transitions
    remediation = creation["remediation"]
    assert (creation["_key"], creation["event"]) == (f"{cluster}/{instance}", "CREATE_AUTOMATED")
    assert remediation["mode"] == "REMEDIATION_MODE_HOST_AWARE"
    assert remediation["instance_name"] == "gpu-node-017"

    # Alertmanager notifies the firing alert again every repeat_interval (2 s): the same
    # event id every time, so nothing new opens or attaches.
    def repeated(records: list[dict[str, Any]]) -> bool:
        return len(records) >= 3

    events = await until(kafka, names.passive, repeated, "3 notifications", 30, explain)
    assert {e["event_id"] for e in events} == {remediation["passive_health_check_event_id"]}
    assert {e["_key"] for e in events} == {instance}
    assert await kafka.read(names.transitions, at_least=1, settle=1.0) == transitions

    # Resolved as Prometheus resolves it: the same alert again, with an end in the past.
    ended = datetime.now(UTC) - timedelta(seconds=1)
    await manager.post(prometheus_alert(labels, started, ends_at=ended))

    def auto_resolved(records: list[dict[str, Any]]) -> bool:
        return any(t["to_state"] == "AUTO_RESOLVED" for t in records)

    transitions = await until(kafka, names.transitions, auto_resolved, "AUTO_RESOLVED", 45, explain)
    assert [(t["event"], t["to_state"]) for t in transitions] == [
        ("CREATE_AUTOMATED", "PENDING_APPROVAL"),
        ("AUTO_RESOLVE", "AUTO_RESOLVED"),
    ]
    resolutions = [
        e for e in await kafka.read(names.passive, at_least=4) if e["status"] == "RESOLVED"
    ]
    assert len({e["event_id"] for e in resolutions}) == 1  # however often it is notified
    assert datetime.fromisoformat(resolutions[0]["observed_at"]) == ended  # endsAt
    assert datetime.fromisoformat(events[0]["observed_at"]) == started  # startsAt


async def test_an_alert_without_the_instance_label_is_dead_lettered_with_the_reason(
    start_worker: Callable[..., WorkerProcess],
    start_alertmanager: Callable[[WorkerProcess], Alertmanager],
    kafka: Kafka,
    names: Names,
) -> None:
    # Label names are settings: here the instance is the alert's "node" label.
    worker = start_worker(
        REMEDIATOR_API_TOKENS=TOKENS, REMEDIATOR_ALERTMANAGER_INSTANCE_LABEL="node"
    )
    manager = start_alertmanager(worker)
    explain = diagnostics(worker, manager)
    cluster = f"cl-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    base = {"alertname": "NpdKernelDeadlock", "cluster_id": cluster, "severity": "warning"}
    await manager.post(
        prometheus_alert({**base, "node": "n-1"}, now),
        prometheus_alert({**base, "instance_id": "n-2"}, now),  # no "node" label
    )

    def one(records: list[dict[str, Any]]) -> bool:
        return len(records) >= 1

    [letter] = await until(kafka, names.dead_letter, one, "the dead letter", 45, explain)
    assert letter["source_topic"] == SOURCE
    assert "missing label(s) node" in letter["error"]
    assert '"instance_id":"n-2"' in letter["payload"]
    events = await until(kafka, names.passive, one, "the mapped alert", 15, explain)
    assert {(e["instance_id"], e["severity"], e["status"]) for e in events} == {
        ("n-1", "WARNING", "FIRING")
    }


def test_the_docs_alertmanager_config_is_valid(tmp_path: Path) -> None:
    amtool = shutil.which("amtool") or shutil.which("amtool", path="/usr/bin")
    if amtool is None:
        pytest.skip("amtool (package prometheus-alertmanager) is not installed")
    readme = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    start = readme.index("```yaml\n# alertmanager.yml\n") + len("```yaml\n")
    config = tmp_path / "alertmanager.yml"
    config.write_text(readme[start : readme.index("```", start)])
    result = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_broker_that_is_gone_gets_a_503_so_that_alertmanager_retries(
    names: Names, tmp_path: Path
) -> None:
    # A broker of its own, stopped under the running worker.
    broker = EmbeddedBroker(port=0, log_dir=tmp_path / "own-broker")
    (tmp_path / "own-broker").mkdir()
    broker.start()
    try:
        worker = launch_worker(
            broker,
            names,
            tmp_path,
            REMEDIATOR_API_TOKENS=TOKENS,
            REMEDIATOR_API_TIMEOUT_SECONDS="3",
        )
    except BaseException:
        broker.stop()
        raise
    try:
        broker.stop()
        labels = {"alertname": "X", "cluster_id": "c1", "instance_id": "i1"}
        notification = {
            "version": "4",
            "receiver": "remediator",
            "alerts": [
                {"status": "firing", "labels": labels, "startsAt": rfc3339(datetime.now(UTC))}
            ],
        }
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{worker.base_url}/v1/alertmanager",
                json=notification,
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        assert response.status_code == 503, response.text
        assert response.json()["error"]["status"] == "UNAVAILABLE"
    finally:
        worker.kill()  # its broker is gone: no clean shutdown to wait for
