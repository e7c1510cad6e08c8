"""Notifications reach real HTTP receivers on loopback, at least once, whatever happens.

A worker with ``[[notify]]`` targets in its policy, on the embedded broker's kind
(Tansu): a Slack-format receiver, a CloudEvents receiver that checks every signature, and
one that refuses everything (its notifications are dead-lettered). Every notification
the transitions and policy-events topics call for (read back with a real consumer)
reaches its receivers, across a receiver's outage and across a kill -9 of the worker in
the middle of delivering; receivers count unique ids, as the docs tell them to.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from remediator.kafka.embedded import free_port
from tests.builders import run_payload
from tests.integration.conftest import Kafka, Names, WorkerProcess, permissive_policy_text

SECRET = b"notify-test-secret"
SIGNATURE_HEADER = "X-Remediator-Signature"


class Receiver:
    """An HTTP receiver on loopback: keeps what it got, answers ``status`` after
    ``delay`` seconds; not listening until :meth:`start` (connections refused)."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.port = free_port()
        self.status = status
        self.delay = delay
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/secret-path"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.received.append((dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(body) for _, body in self.received]

    def ids(self) -> set[str]:
        return {body["id"] for body in self.bodies()}


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    made = {"slack": Receiver(), "events": Receiver(), "refuser": Receiver(status=400)}
    yield made
    for receiver in made.values():
        receiver.stop()


def policy_file(directory: Path, receivers: dict[str, Receiver]) -> Path:
    (directory / "notify-secret").write_bytes(SECRET + b"\n")
    text = permissive_policy_text() + (
        f"""
[clusters.cl-shadow]
shadow = true

[[notify]]
name = "slack"
url = "{receivers["slack"].url}"
on = ["PENDING_APPROVAL", "SHADOW_OPEN"]
format = "slack"
backoff_initial_seconds = 0.1
backoff_max_seconds = 0.3

[[notify]]
name = "events"
url = "{receivers["events"].url}"
on = ["*"]
secret_file = "notify-secret"
max_attempts = 100
backoff_initial_seconds = 0.1
backoff_max_seconds = 0.3
timeout_seconds = 2

[[notify]]
name = "refuser"
url = "{receivers["refuser"].url}"
on = ["PENDING_APPROVAL"]
clusters = ["cl-a"]
"""
    )
    path = directory / "notify-policy.toml"
    path.write_text(text)
    return path


async def expected_ids(kafka: Kafka, names: Names, transitions: int, events: int) -> set[str]:
    """What the output topics call for: every change of state, every policy event."""
    records = await kafka.read(names.transitions, at_least=transitions, settle=0.5)
    changes = {r["transition_id"] for r in records if r["from_state"] != r["to_state"]}
    policy_events = await kafka.read(names.policy_events, at_least=events, settle=0.5)
    return changes | {e["event_id"] for e in policy_events}


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def verified(headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check of a signature, as docs/notifications.md shows it."""
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get(SIGNATURE_HEADER, ""))


async def send_failing_runs(kafka: Kafka, names: Names, cluster: str, count: int) -> None:
    for n in range(count):
        instance = f"{cluster}-node-{n}"
        payload = run_payload(cluster_id=cluster, instance_id=instance, instance_name=instance)
        await kafka.produce(names.active, payload, key=instance.encode())


async def test_every_notification_reaches_its_receivers_across_an_outage(
    start_worker: Callable[..., WorkerProcess],
    kafka: Kafka,
    names: Names,
    tmp_path: Path,
    receivers: dict[str, Receiver],
) -> None:
    receivers["slack"].start()
    receivers["refuser"].start()  # the CloudEvents receiver is down: refused connections
    # History from before notifications were turned on: a new group starts after it.
    history = {
        "transition_id": "history:1",
        "from_state": None,
        "to_state": "PENDING_APPROVAL",
        "reason": "old",
        "remediation": {"cluster_id": "cl-a", "instance_id": "old"},
    }
    await kafka.produce(names.transitions, history, key=b"cl-a/old")
    worker = start_worker(REMEDIATOR_POLICY_FILE=str(policy_file(tmp_path, receivers)))
    await send_failing_runs(kafka, names, "cl-a", 4)
    await send_failing_runs(kafka, names, "cl-shadow", 2)
    wanted = await expected_ids(kafka, names, transitions=5, events=2) - {"history:1"}
    assert len(wanted) == 6

    slack = receivers["slack"]
    await wait_for(lambda: len(slack.received) >= 6, "the Slack receiver")
    texts = [body["text"] for body in slack.bodies()]
    assert sum("PENDING_APPROVAL: cl-a/cl-a-node-" in t for t in texts) == 4
    assert sum("SHADOW_OPEN: cl-shadow/" in t for t in texts) == 2
    assert all("/dashboard/#/instance/" in t for t in texts)
    assert not any("cl-a/old" in t for t in texts)
    assert all(SIGNATURE_HEADER not in headers for headers, _ in slack.received)

    await asyncio.sleep(1.0)  # the CloudEvents receiver stays down a while longer
    events = receivers["events"]
    assert not events.received
    events.start()
    await wait_for(lambda: events.ids() >= wanted, "the CloudEvents receiver after its outage")
    assert events.ids() == wanted
    for headers, body in events.received:
        assert verified(headers, body)
        assert headers["Content-Type"] == "application/cloudevents+json"
    cloud = events.bodies()[0]
    assert cloud["specversion"] == "1.0"
    assert cloud["source"] == f"remediator/{names.app_id}"
    assert cloud["type"].startswith(("com.remediator.transition.", "com.remediator.policy."))

    # The refuser's 400s are final: each notification dead-lettered, with the reason.
    letters = await kafka.read(names.dead_letter, at_least=4, settle=0.5)
    assert len(letters) == 4
    assert all(
        "notify target 'refuser'" in d["error"] and "HTTP 400" in d["error"] for d in letters
    )
    assert {d["source_topic"] for d in letters} == {names.transitions}

    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{worker.base_url}/metrics")).text
    assert 'remediator_notifications_total{result="retried",target="events"}' in metrics
    assert 'remediator_notifications_total{result="given_up",target="refuser"} 4.0' in metrics
    assert 'remediator_notifications_total{result="delivered",target="slack"} 6.0' in metrics


@pytest.mark.brokers("tansu", "kafka")  # at least once is a published guarantee
async def test_a_worker_killed_mid_delivery_loses_no_notification(
    start_worker: Callable[..., WorkerProcess],
    kafka: Kafka,
    names: Names,
    tmp_path: Path,
    receivers: dict[str, Receiver],
) -> None:
    events, slack = receivers["events"], receivers["slack"]
    events.delay = slack.delay = 0.3  # slow receivers: the kill lands mid-delivery
    for receiver in receivers.values():
        receiver.start()
    path = policy_file(tmp_path, receivers)
    doomed = start_worker(REMEDIATOR_POLICY_FILE=str(path))
    await send_failing_runs(kafka, names, "cl-b", 12)
    await wait_for(lambda: len(events.received) >= 3, "the first notifications")
    doomed.kill()
    got_before_kill = len(events.ids())
    wanted = await expected_ids(kafka, names, transitions=12, events=0)
    assert got_before_kill < len(wanted)

    assert len(slack.received) < 12
    events.delay = slack.delay = 0.0
    start_worker(REMEDIATOR_POLICY_FILE=str(path))
    await wait_for(lambda: events.ids() >= wanted, "every notification after the restart")
    assert events.ids() == wanted
    assert all(verified(headers, body) for headers, body in events.received)
    # Slack messages carry no id: each of the 12 recommendations is named at least once.
    every = {f"PENDING_APPROVAL: cl-b/cl-b-node-{n}," for n in range(12)}

    def named() -> set[str]:
        return {m for m in every for body in slack.bodies() if m in body["text"]}

    await wait_for(lambda: named() == every, "every Slack message after the restart")
