"""How should the dashboard learn of changes: short polling of the list, or the stream?

Not part of ``make test`` or ``make bench``; run by hand (about two minutes)::

    .venv/bin/python -m tests.bench.dashboard_live --instances 2000 --tabs 5

One embedded broker, one worker (real processes). The fleet is preloaded with
``--instances`` remediations in 10 clusters, half of them closed (so the archive holds
some). Then, in each phase, a new failing signal arrives every ``--every`` seconds on a new
instance, and ``--tabs`` simulated tabs watch for it:

- ``none``: no tab (the baseline the others are compared with);
- ``poll``: each tab asks for the fleet list (all states, 200 a page) and the cluster
  summaries every 2 s, as a polling dashboard would;
- ``poll-open``: the same, listing open states only (the state owner skips the archive);
- ``stream``: each tab holds ``GET /v1/compute/transitions/stream`` open.

For each phase: the worker's and the broker's CPU (seconds of CPU per second), and how long
after the signal was published a tab saw its remediation (median and worst).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from remediator.kafka.embedded import EmbeddedBroker
from tests.bench.procs import cpu_seconds
from tests.builders import event_payload
from tests.integration.conftest import launch_worker, unique_names

TOKEN = "bench-token"
OPEN = "PENDING_APPROVAL,PENDING,QUARANTINING,QUARANTINED,RUNNING"
POLL_EVERY = 2.0


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Phase:
    def __init__(self) -> None:
        self.published: dict[str, float] = {}  # instance -> when its signal was sent
        self.seen: dict[str, float] = {}  # instance -> first time any tab saw it

    def saw(self, instance: str) -> None:
        if instance in self.published and instance not in self.seen:
            self.seen[instance] = time.monotonic()

    def latencies(self) -> list[float]:
        return [self.seen[i] - t for i, t in self.published.items() if i in self.seen]


async def poller(client: httpx.AsyncClient, phase: Phase, state: str, stop: asyncio.Event) -> None:
    params = {"page_size": "200", **({"state": state} if state else {})}
    while not stop.is_set():
        started = time.monotonic()
        listed = await client.get("/v1/compute/clusters/-/instances/-/remediations", params=params)
        await client.get("/v1/compute/clusters")
        for record in listed.json()["remediations"]:
            phase.saw(record["instance_id"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, POLL_EVERY - (time.monotonic() - started)))


async def streamer(client: httpx.AsyncClient, phase: Phase, stop: asyncio.Event) -> None:
    async with client.stream("GET", "/v1/compute/transitions/stream", timeout=None) as response:
        buffer = b""
        async for chunk in response.aiter_bytes():
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                if frame.startswith(b"event: transition"):
                    data = frame.split(b"\ndata: ", 1)[1]
                    phase.saw(orjson.loads(data)["remediation"]["instance_id"])
            if stop.is_set():
                return


async def run_phase(
    name: str,
    tab: Callable[[Phase, asyncio.Event], Awaitable[None]] | None,
    args: argparse.Namespace,
    producer: AIOKafkaProducer,
    topic: str,
    pids: dict[str, int],
) -> dict[str, object]:
    phase = Phase()
    stop = asyncio.Event()
    tabs = [asyncio.create_task(tab(phase, stop)) for _ in range(args.tabs)] if tab else []
    await asyncio.sleep(3.0)  # tabs connected and settled before the clock starts
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        instance = f"new-{uuid.uuid4().hex[:8]}"
        event = event_payload(cluster_id="cl-0", instance_id=instance, observed_at=_now())
        phase.published[instance] = time.monotonic()
        await producer.send_and_wait(topic, orjson.dumps(event), key=instance.encode())
        await asyncio.sleep(args.every)
    await asyncio.sleep(POLL_EVERY + 1.0)  # the last ones get their chance to be seen
    elapsed = time.monotonic() - t0
    cpu = {k: (cpu_seconds(p) - cpu0[k]) / elapsed for k, p in pids.items()}
    stop.set()
    for task in tabs:
        task.cancel()
    await asyncio.gather(*tabs, return_exceptions=True)
    lat = sorted(phase.latencies())
    return {
        "phase": name,
        "worker_cpu": cpu["worker"],
        "broker_cpu": cpu["broker"],
        "seen": f"{len(lat)}/{len(phase.published)}",
        "p50": statistics.median(lat) if lat else float("nan"),
        "max": lat[-1] if lat else float("nan"),
    }


async def preload(
    client: httpx.AsyncClient, producer: AIOKafkaProducer, topic: str, count: int
) -> None:
    instances = [(f"cl-{n % 10}", f"pre-{n:05d}") for n in range(count)]
    for cluster, instance in instances:
        event = event_payload(cluster_id=cluster, instance_id=instance, observed_at=_now())
        await producer.send(topic, orjson.dumps(event), key=instance.encode())
    await producer.flush()
    while True:
        summaries = (await client.get("/v1/compute/clusters")).json()["clusters"]
        opened = sum(sum(c["open_remediations"].values()) for c in summaries)
        if opened >= count:
            break
        await asyncio.sleep(1.0)
    # Close half of them: the archive is what a list of every state reads.
    semaphore = asyncio.Semaphore(20)

    async def cancel(cluster: str, instance: str) -> None:
        async with semaphore:
            base = f"/v1/compute/clusters/{cluster}/instances/{instance}/remediations"
            listed = (await client.get(base)).json()["remediations"]
            await client.post(f"{base}/{listed[0]['id']}/reject", json={"comment": "bench"})

    await asyncio.gather(*(cancel(c, i) for c, i in instances[::2]))


async def main(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="dashboard-live-"))
    broker = EmbeddedBroker(port=0, log_dir=directory)
    broker.start()
    names = unique_names()
    worker = launch_worker(
        broker,
        names,
        directory,
        REMEDIATOR_API_TOKENS=f"bench={TOKEN}",
        REMEDIATOR_LOG_LEVEL="warning",
    )
    assert worker.process is not None
    assert broker._process is not None
    pids = {"worker": worker.process.pid, "broker": broker._process.pid}
    producer = AIOKafkaProducer(bootstrap_servers=broker.address, linger_ms=5)
    await producer.start()
    client = httpx.AsyncClient(
        base_url=worker.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    )
    try:
        started = time.monotonic()
        await preload(client, producer, names.passive, args.instances)
        print(f"preloaded {args.instances} remediations in {time.monotonic() - started:.0f}s")
        phases: list[tuple[str, Callable[[Phase, asyncio.Event], Awaitable[None]] | None]] = [
            ("none", None),
            ("poll", lambda phase, stop: poller(client, phase, "", stop)),
            ("poll-open", lambda phase, stop: poller(client, phase, OPEN, stop)),
            ("stream", lambda phase, stop: streamer(client, phase, stop)),
        ]
        rows = [
            await run_phase(name, tab, args, producer, names.passive, pids) for name, tab in phases
        ]
        print(f"{args.tabs} tab(s), {args.instances} remediations, a new one every {args.every}s")
        head = ("phase", "worker CPU", "broker CPU", "seen", "p50 s", "max s")
        print("{:<10} {:>10} {:>10} {:>7} {:>6} {:>6}".format(*head))
        for r in rows:
            print(
                f"{r['phase']:<10} {r['worker_cpu']:>10.3f} {r['broker_cpu']:>10.3f} "
                f"{r['seen']:>7} {r['p50']:>6.2f} {r['max']:>6.2f}"
            )
    finally:
        await client.aclose()
        await producer.stop()
        worker.stop()
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--tabs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--every", type=float, default=0.5)
    asyncio.run(main(parser.parse_args()))
