"""`remediator simulate` against a real worker: a simulated fleet opens real remediations."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from remediator.simulation.fleet.generator import cluster_name
from tests.integration.conftest import (
    OPERATOR_TOKENS,
    Broker,
    Kafka,
    Names,
    WorkerProcess,
)


async def remediations_of(
    api: httpx.AsyncClient, clusters: list[str], at_least: int = 1, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Every remediation of ``clusters``, once there are ``at_least``."""
    found: list[dict[str, Any]] = []
    for _ in range(int(timeout / 0.2)):
        found = []
        for cluster in clusters:
            answer = await api.get(
                f"/v1/compute/clusters/{cluster}/instances/-/remediations",
                params={"page_size": "500"},
            )
            assert answer.status_code == 200, answer.text
            found += answer.json()["remediations"]
        if len(found) >= at_least:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(found)} remediation(s) in {timeout}s, expected {at_least}")


async def test_a_worker_opens_remediations_from_a_short_simulated_burst(
    broker: Broker,
    names: Names,
    kafka: Kafka,
    start_worker: Callable[..., WorkerProcess],
    api: Callable[[WorkerProcess], httpx.AsyncClient],
) -> None:
    worker = start_worker(REMEDIATOR_API_TOKENS=OPERATOR_TOKENS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env.update(names.env())  # the worker's topics, as an operator's shell would have them
    argv = ["--clusters", "2", "--instances", "6", "--failure-rate", "0.3", "--seed", "11",
            "--rate", "50", "--count", "150", "--bootstrap", broker.url]  # fmt: skip
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "remediator.cli", "simulate", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1].startswith("simulate 2x6: done, 150 sent (")

    # Exactly what was announced landed on the worker's topics, every id once.
    runs = await kafka.read(names.active, at_least=1)
    events = await kafka.read(names.passive, at_least=0, settle=0.5)
    assert len(runs) + len(events) == 150
    ids = [r["run_id"] for r in runs] + [e["event_id"] for e in events]
    assert len(set(ids)) == 150
    assert {r["_key"] for r in runs + events} == {r["instance_id"] for r in runs + events}

    clusters = [cluster_name(0), cluster_name(1)]
    opened = await remediations_of(api(worker), clusters)
    assert {r["trigger"] for r in opened} == {"REMEDIATION_TRIGGER_AUTOMATED"}
    assert {r["cluster_id"] for r in opened} <= set(clusters)
    for remediation in opened:  # each one from signals the simulator sent
        assert {s["id"] for s in remediation["signals"]} <= set(ids)
    assert any(r["state"] == "PENDING_APPROVAL" for r in opened)


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def gone(pid: int) -> bool:
    """Exited (reaped, or a zombie waiting for its parent)."""
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split()[2] == "Z"


async def test_worker_simulate_feeds_itself_and_stops_its_simulator(
    start_worker: Callable[..., WorkerProcess],
    api: Callable[[WorkerProcess], httpx.AsyncClient],
) -> None:
    """The `make run` path: `worker --simulate` starts a simulator once ready, and takes
    it down when it stops."""
    worker = start_worker(
        args=("--simulate", "--simulate-args", "--clusters 2 --instances 5 --rate 20"),
        REMEDIATOR_API_TOKENS=OPERATOR_TOKENS,
    )
    assert worker.process is not None
    (simulator_pid,) = children_of(worker.process.pid)
    opened = await remediations_of(api(worker), [cluster_name(0), cluster_name(1)])
    assert opened
    assert "simulate 2x5: 2 cluster(s) of 5 instance(s) to kafka://" in worker.log()

    worker.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(worker.process.wait, 30) == 0, worker.log()[-2000:]
    assert gone(simulator_pid), "the simulator outlived its worker"
    assert "simulate 2x5: done, " in worker.log()


def test_bad_simulator_options_stop_the_worker_at_start(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker(wait=False, args=("--simulate", "--simulate-args", "--rate fast"))
    assert worker.process is not None
    assert worker.process.wait(timeout=60) == 2
    assert worker.log().strip().splitlines() == [
        "remediator: --simulate-args: argument --rate: invalid float value: 'fast'"
    ]
