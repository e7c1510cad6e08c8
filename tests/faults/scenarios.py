"""The fault scenarios. Each starts real workers on a real broker, feeds a generated stream,
injects its faults, stops everything it started and returns the checked :class:`Outcome`.

``short`` runs a scenario small (the form inside ``make test``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from tests.brokers import Broker, kind_of, make_broker
from tests.integration.conftest import (
    OPERATOR_TOKEN,
    OPERATOR_TOKENS,
    Names,
    WorkerProcess,
    launch_worker,
    permissive_policy_text,
    unique_names,
)
from tests.integration.test_executor import ControlPlane, executor_env

from .checker import Outcome, check
from .generator import ACTIVE, Signal, fleet, stream, with_disorder
from .kafka import Producer, read_all
from .model import Expected
from .proxy import CuttableProxy


@dataclass
class Suite:
    """What every scenario gets: the shared broker, a directory, a seeded random source."""

    broker: Broker
    root: Path
    rng: random.Random
    short: bool = False


@dataclass
class Run:
    """One scenario's workers, topics, producer and expected outcome."""

    suite: Suite
    name: str
    bootstrap: str
    broker_url: str
    names: Names = field(default_factory=unique_names)
    expected: Expected = field(default_factory=Expected)
    workers: list[WorkerProcess] = field(default_factory=list)
    outcome: Outcome = field(init=False)
    producer: Producer = field(init=False)

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.name)
        self.producer = Producer(self.bootstrap)
        self.directory = self.suite.root / self.name
        self.directory.mkdir(parents=True, exist_ok=True)

    async def start_worker(self, slot: str = "w", wait: bool = True, **env: str) -> WorkerProcess:
        directory = self.directory / slot
        directory.mkdir(exist_ok=True)
        env.setdefault("REMEDIATOR_BROKER", self.broker_url)
        env.setdefault("REMEDIATOR_API_TOKENS", OPERATOR_TOKENS)
        worker = launch_worker(self.suite.broker, self.names, directory, False, (), **env)
        self.workers.append(worker)
        if wait:
            await asyncio.to_thread(worker.wait_ready, 120.0)
        return worker

    def topic(self, signal: Signal) -> str:
        return self.names.active if signal.kind == ACTIVE else self.names.passive

    async def flow(self, signals: list[Signal], per_second: float) -> None:
        """Produce ``signals`` in order at about ``per_second``; the model learns each."""
        chunk = max(1, int(per_second / 10))
        for n in range(0, len(signals), chunk):
            part = signals[n : n + chunk]
            await self.producer.send_many([(self.topic(s), s.value, s.key) for s in part])
            self.expected.add(part)
            self.outcome.signals += len(part)
            await asyncio.sleep(0.1)

    async def finish(self, timeout: float = 150.0) -> Outcome:
        await check(
            self.outcome,
            self.bootstrap,
            self.names,
            self.expected,
            self.producer.ends,
            timeout,
        )
        if self.outcome.losses:
            await asyncio.to_thread(self._explain_losses)
            await self._inbox_of_losses()
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is not None:
                code = worker.process.returncode
                if code != -9:  # not one we killed
                    self.outcome.notes.append(f"a worker exited on its own with {code}")
        return self.outcome

    async def _inbox_of_losses(self) -> None:
        """Whether the lost instances' signals reached the internal inbox topic."""
        inbox = await read_all(self.bootstrap, f"{self.names.app_id}-cluster-inbox", settle=1)
        missing = [key.split("/")[1].encode() for key in self.outcome.missing]
        found = sum(1 for m in missing if any(m in r.value for r in inbox))
        self.outcome.notes.append(
            f"inbox: {len(inbox)} records; the signals of {found} of {len(missing)} lost "
            "instances are there"
        )

    def _explain_losses(self, count: int = 3) -> None:
        """What a live worker says about a few lost instances (GET …/explain)."""
        live = [w for w in self.workers if w.process is not None and w.process.poll() is None]
        if not live:
            return
        missing = self.outcome.missing
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        for key in missing[:count]:
            cluster, instance = key.split("/")
            url = f"{live[-1].base_url}/v1/compute/clusters/{cluster}/instances/{instance}/explain"
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(url, headers=headers, timeout=10)
                self.outcome.notes.append(f"explain {key}: {answer.text[:600]}")


@contextlib.asynccontextmanager
async def running(
    suite: Suite, name: str, bootstrap: str | None = None, broker_url: str | None = None
) -> AsyncIterator[Run]:
    run = Run(suite, name, bootstrap or suite.broker.address, broker_url or suite.broker.url)
    started = time.monotonic()
    await run.producer.start()
    try:
        yield run
    except Exception as exc:  # noqa: BLE001 - a scenario that broke is a failed check
        run.outcome.failures.append(f"scenario error: {type(exc).__name__}: {exc}")
    finally:
        await run.producer.stop()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in run.workers))
        run.outcome.seconds = time.monotonic() - started


async def kill_9(suite: Suite) -> Outcome:
    """kill -9 at random points, several times in a row, while signals flow: each restarted
    worker is killed again 1-8 s after its start, serving or still joining and recovering."""
    kills = 2 if suite.short else 5
    sizes = (40, 40) if suite.short else (300, 300)
    shape = fleet(f"cl-kill-{suite.rng.randrange(10**6)}", *sizes)
    signals = stream(shape, suite.rng)
    async with running(suite, "kill-9") as run:
        worker = await run.start_worker()
        producing = asyncio.create_task(run.flow(signals, 15 if suite.short else 25))
        for _ in range(kills):
            await asyncio.sleep(suite.rng.uniform(1.0, 8.0))
            serving = await asyncio.to_thread(_ready, worker)
            worker.kill()
            run.outcome.faults.append("kill -9 " + ("serving" if serving else "starting"))
            worker = await run.start_worker(wait=False)
        await asyncio.to_thread(worker.wait_ready, 120.0)
        await producing
        await run.finish()
    return run.outcome


def _ready(worker: WorkerProcess) -> bool:
    try:
        return httpx.get(f"{worker.base_url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def scale(suite: Suite) -> Outcome:
    """Two, then three workers (session timeouts 3 s and 45 s); one killed, scaled back.

    Joining workers are not waited for: with 4 partitions Faust's sticky assignor leaves a
    third worker with none (it stays unready, a standby) until one of the others goes.
    """
    shape = fleet(f"cl-scale-{suite.rng.randrange(10**6)}", 200, 300)
    signals = stream(shape, suite.rng)
    third = len(signals) // 3
    async with running(suite, "scale-out-kill") as run:
        _, b = await asyncio.gather(
            run.start_worker("a", REMEDIATOR_BROKER_SESSION_TIMEOUT="3"),
            run.start_worker("b", REMEDIATOR_BROKER_SESSION_TIMEOUT="45"),
        )
        await run.flow(signals[:third], 50)
        producing = asyncio.create_task(run.flow(signals[third:], 50))
        await run.start_worker("c", False, REMEDIATOR_BROKER_SESSION_TIMEOUT="3")
        run.outcome.faults.append("3rd worker joins")
        await asyncio.sleep(suite.rng.uniform(4, 8))
        b.kill()
        run.outcome.faults.append("kill -9 (45 s session)")
        await asyncio.sleep(2)
        await run.start_worker("b2", False, REMEDIATOR_BROKER_SESSION_TIMEOUT="45")
        run.outcome.faults.append("scaled back")
        await producing
        await run.finish(timeout=180)
        owned = [await asyncio.to_thread(_partitions, w) for w in run.workers if w is not b]
        run.outcome.notes.append(f"partitions of the live workers at the end: {owned}")
    return run.outcome


def _partitions(worker: WorkerProcess) -> object:
    try:
        return httpx.get(f"{worker.base_url}/healthz", timeout=2).json().get("partitions")
    except (httpx.HTTPError, ValueError):
        return "no answer"


async def broker_cut(suite: Suite) -> Outcome:
    """The broker connection cut and restored through a TCP proxy on loopback.

    A broker of its own, advertising the proxy's port: Kafka clients connect to what the
    metadata advertises, so every connection (the workers', and the suite's own) goes
    through the proxy. Production pauses while cut (the suite's producer is cut too).
    """
    cuts = [5.0] if suite.short else [15.0, 5.0, 15.0]
    cut_broker = make_broker(kind_of(suite.broker), suite.root / "broker-cut")
    proxy = CuttableProxy("127.0.0.1", cut_broker.port)
    cut_broker.advertised_port = proxy.port
    cut_broker.start()
    proxy.start()
    shape = fleet(
        f"cl-cut-{suite.rng.randrange(10**6)}", *((30, 30) if suite.short else (200, 300))
    )
    signals = stream(shape, suite.rng)
    parts = [signals[n :: len(cuts) + 1] for n in range(len(cuts) + 1)]
    try:
        async with running(suite, "broker-cut", proxy.address, f"kafka://{proxy.address}") as run:
            workers = [await run.start_worker("a"), await run.start_worker("b")]
            for part, seconds in zip(parts, cuts, strict=False):
                await run.flow(part, 100)
                await asyncio.sleep(suite.rng.uniform(0.2, 1.5))  # cut mid-processing
                proxy.cut()
                run.outcome.faults.append(f"cut {seconds:.0f} s")
                await asyncio.sleep(seconds)
                proxy.restore()
            await run.flow(parts[-1], 100)
            await _restart_dead(run, workers)
            await run.finish(timeout=180)
    finally:
        proxy.stop()
        cut_broker.stop()
    return run.outcome


async def _restart_dead(run: Run, workers: list[WorkerProcess]) -> None:
    """What an orchestrator does: a worker that exited is started again (and noted)."""
    for n, worker in enumerate(workers):
        if worker.process is not None and worker.process.poll() is not None:
            run.outcome.notes.append(f"worker exited with {worker.process.returncode}; restarted")
            await run.start_worker(f"restart-{n}")


async def disorder(suite: Suite) -> Outcome:
    """Duplicates, late and out-of-order signals."""
    shape = fleet(
        f"cl-dis-{suite.rng.randrange(10**6)}", *((30, 30) if suite.short else (200, 300))
    )
    signals = with_disorder(shape, stream(shape, suite.rng), suite.rng)
    async with running(suite, "duplicates-late-disorder") as run:
        run.outcome.faults += ["duplicates", "late (up to 1 day)", "out of order"]
        await run.start_worker()
        await run.flow(signals, 200)
        await run.finish()
    return run.outcome


ScenarioFn = Callable[[Suite], Awaitable[Outcome]]


async def control_plane(suite: Suite) -> Outcome:
    """The control plane slow, failing with 5xx and refusing connections, while remediations
    run (auto-approved). Each step must be performed once (``/_sim/log`` without replays) and
    every remediation must succeed: a passing outage fails none."""
    shape = fleet(f"cl-cp-{suite.rng.randrange(10**6)}", *((8, 8) if suite.short else (40, 40)))
    signals = stream(shape, suite.rng)
    cp = ControlPlane(suite.root / "control-plane.log")
    cp.start(*(a for action in _STEPS for a in ("--latency", f"{action}=0.3")))
    gate = CuttableProxy("127.0.0.1", cp.port)  # "refusing connections": it stops listening
    gate.start()
    policy = suite.root / "control-plane-policy.toml"
    policy.write_text(
        permissive_policy_text() + f'\n[clusters.{shape.cluster}]\nauto_approve = ["*"]\n'
    )
    env = executor_env(cp, limit=10, REMEDIATOR_POLICY_FILE=str(policy))
    env["REMEDIATOR_CONTROL_PLANE_URL"] = f"http://{gate.address}"
    try:
        async with running(suite, "control-plane") as run:
            worker = await run.start_worker("w", True, **env)
            producing = asyncio.create_task(run.flow(signals, 5))
            progress = []  # steps performed as each fault begins: work must be in flight
            for fault, change in _CP_FAULTS:
                await asyncio.sleep(2)
                progress.append(len(await asyncio.to_thread(cp.performed)))
                if change is None:
                    gate.cut()
                    await asyncio.sleep(6)
                    gate.restore()
                else:
                    await asyncio.to_thread(cp.configure, **change)
                    await asyncio.sleep(6)
                    await asyncio.to_thread(cp.configure, fault="none", latency=_FAST)
                run.outcome.faults.append(fault)
            await producing
            await run.finish()
            await _check_steps(run, cp, shape.sick)
            retries = worker.log().count("control plane: ")
            run.outcome.notes.append(
                f"steps performed as each fault began: {progress} of {3 * len(shape.sick)}; "
                f"{retries} retry warnings logged by the executor"
            )
            if not retries:
                run.outcome.failures.append("the executor never met a fault: nothing was tested")
    finally:
        gate.stop()
        cp.stop()
    return run.outcome


_STEPS = (
    "CORDON_HOST",
    "DELETE_VM",
    "PROVISION_VM",
    "REBOOT_VM",
    "POWER_CYCLE_HOST",
    "UNCORDON_HOST",
)
_FAST = dict.fromkeys(_STEPS, 0.3)
_CP_FAULTS: list[tuple[str, dict[str, object] | None]] = [
    (
        "slow (steps 4 s, calls hang 3 s)",
        {"latency": dict.fromkeys(_STEPS, 4.0), "fault": "hang", "fault_seconds": 3},
    ),
    ("5xx for 6 s", {"fault": "5xx", "fault_seconds": 6}),
    ("connections refused 6 s", None),
]
HOST_AWARE = ["CORDON_HOST", "DELETE_VM", "PROVISION_VM"]


async def _check_steps(
    run: Run, cp: ControlPlane, sick: tuple[str, ...], timeout: float = 120
) -> None:
    """Every remediation ends SUCCEEDED, its three steps performed once each, in order."""
    deadline = time.monotonic() + timeout
    final: dict[str, str] = {}
    while time.monotonic() < deadline:
        final = {}
        for record in await read_all(run.bootstrap, run.names.transitions, settle=1.0):
            value = orjson.loads(record.value)
            key = f"{value['remediation']['cluster_id']}/{value['remediation']['instance_id']}"
            final[key] = max(final.get(key, ""), f"{value['sequence']:04d} {value['to_state']}")
        if len(final) >= len(sick) and all(s.endswith(_TERMINAL) for s in final.values()):
            break
        await asyncio.sleep(1)
    not_done = {k: v for k, v in final.items() if not v.endswith("SUCCEEDED")}
    if not_done:
        run.outcome.failures.append(
            f"{len(not_done)} remediations not SUCCEEDED: {list(not_done.items())[:3]}"
        )
    performed = await asyncio.to_thread(cp.performed)
    replays = len(await asyncio.to_thread(cp.requests)) - len(performed)
    run.outcome.notes.append(f"{len(performed)} steps performed, {replays} replayed posts")
    for instance in sick:
        actions = [r["action"] for r in performed if r["instance_id"] == instance]
        if actions != HOST_AWARE:
            run.outcome.failures.append(f"{instance}: steps {actions}, not {HOST_AWARE} once each")
            run.outcome.duplicates += max(len(actions) - len(HOST_AWARE), 0)


_TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "AUTO_RESOLVED")
