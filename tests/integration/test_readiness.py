"""/healthz is readiness (503 with a reason until the worker serves), /livez liveness."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.integration.conftest import OPERATOR_TOKEN, OPERATOR_TOKENS, WorkerProcess

# Broker-sensitive: run on Tansu and on Apache Kafka (conftest.py).
pytestmark = pytest.mark.brokers("tansu", "kafka")


def test_healthz_is_503_with_a_reason_until_the_worker_serves(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker(wait=False, REMEDIATOR_API_TOKENS=OPERATOR_TOKENS)
    answers: list[tuple[int, dict[str, object]]] = []
    live_at = ready_at = None
    deadline = time.monotonic() + 60
    while ready_at is None and time.monotonic() < deadline:
        try:
            live = httpx.get(f"{worker.base_url}/livez", timeout=1)
            health = httpx.get(f"{worker.base_url}/healthz", timeout=1)
        except httpx.HTTPError:  # the web server is not up yet
            time.sleep(0.05)
            continue
        assert live.status_code == 200
        assert live.json()["status"] == "ok"
        live_at = live_at or time.monotonic()
        answers.append((health.status_code, health.json()))
        if health.status_code == 200:
            ready_at = time.monotonic()
        time.sleep(0.05)
    assert ready_at is not None, worker.log()[-2000:]

    waiting = [body for code, body in answers if code != 200]
    assert waiting, "the web server answered only once the worker was ready"
    for code, body in answers[:-1]:
        assert code == 503
        assert body["ready"] is False
        assert body["status"] == "unavailable"
        assert isinstance(body["reason"], str)
        assert body["reason"]
    _, final = answers[-1]
    assert final["ready"] is True
    assert final["reason"] is None
    assert final["partitions"]

    # And an API call made once ready is answered at once, not after a 15 s timeout.
    started = time.monotonic()
    listed = httpx.get(
        f"{worker.base_url}/v1/compute/clusters/c/instances/-/remediations",
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        timeout=30,
    )
    assert listed.status_code == 200, listed.text
    assert time.monotonic() - started < 5
