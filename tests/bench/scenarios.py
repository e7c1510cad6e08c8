"""The scenarios of the bench, each a function of its parameters (one dataclass each).

A throughput run starts fresh subjects (new topics, new consumer group / app id), waits
until they are ready, then produces its input concurrently and is timed from the first
produced message to "lag drained" (``kafka.wait_drained``). The time the producer needed
is kept alongside, so a reader can see it was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from remediator.kafka.embedded import free_port
from tests.brokers import Broker

from . import kafka
from .kafka import InputTopics, LagProbe, Produced
from .procs import (
    TABLES,
    Process,
    ProcessDied,
    Processes,
    Worker,
    WorkerConfig,
    cpu_seconds,
    faust_loop_process,
    grep,
    raw_loop_process,
    wait_ready,
    worker_process,
)
from .workload import (
    Fleet,
    FleetSpec,
    Message,
    SteadyMix,
    failing_signal,
    steady,
    storm,
    warm_up,
)

DRAIN_TIMEOUT = 1800.0
STATE_LOADED = (
    r"state loaded: (?P<n>\d+) instance\(s\) in (?P<c>\d+) cluster\(s\) .* in (?P<s>[\d.]+)s"
)


# -- the run's context -------------------------------------------------------------------


@dataclass
class Bench:
    """What every scenario shares: the broker, a work dir, the processes started."""

    broker: Broker
    work: Path
    processes: Processes
    partitions: int = 8
    commit_interval: float = 0.2
    log: Callable[[str], None] = print
    #: Worker log lines, warnings and errors seen, per scenario.
    log_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The exact end offsets of every partition the bench produced to.
    ends: kafka.Ends = field(default_factory=dict)
    #: Records the worker wrote per input signal, per output topic, per scenario.
    writes: dict[str, dict[str, float]] = field(default_factory=dict)

    def tag(self, name: str) -> str:
        return f"{name}-{uuid.uuid4().hex[:6]}"

    def worker_config(
        self, app_id: str, *, table_store: str = "memory", data_dir: Path | None = None
    ) -> WorkerConfig:
        return WorkerConfig(
            broker_url=self.broker.url,
            app_id=app_id,
            active=f"{app_id}-active",
            passive=f"{app_id}-passive",
            transitions=f"{app_id}-transitions",
            partitions=self.partitions,
            data_dir=data_dir or self.work / app_id,
            table_store=table_store,
            commit_interval=self.commit_interval,
        )

    def inputs(self, config: WorkerConfig) -> InputTopics:
        return InputTopics(config.active, config.passive, self.partitions)

    async def create_inputs(self, config: WorkerConfig) -> InputTopics:
        topics = self.inputs(config)
        await kafka.create_topics(
            self.broker.address, [topics.active, topics.passive], self.partitions
        )
        return topics

    async def start_workers(self, config: WorkerConfig, count: int = 1) -> list[Worker]:
        workers = []
        for n in range(count):
            if n:
                # Same app id (one group), its own data dir and (worker_process) web port.
                config = replace(config, data_dir=config.data_dir.with_name(f"{config.app_id}-{n}"))
            workers.append(worker_process(config, self.work / "logs", name=f"w{n}"))
            self.processes.start(workers[-1])
        await wait_ready(workers, self.processes, self.partitions if count > 1 else None)
        return workers

    async def finish(self, workers: Sequence[Process], topics: Sequence[str]) -> None:
        """Kill ``workers`` (what they did is measured; a clean stop costs seconds), and
        delete the run's topics to free the memory broker."""
        for worker in workers:
            self.processes.stop(worker, clean=False)
        await kafka.delete_topics(self.broker.address, topics)

    async def drain(
        self, config: WorkerConfig, messages: Iterable[Message], subjects: Sequence[Process]
    ) -> Run:
        """Produce ``messages`` to the worker's inputs now; time until the group's lag on
        its inputs and inbox is zero."""
        return await self.timed(
            config.app_id, self.inputs(config), [config.inbox], messages, subjects
        )

    async def timed(
        self,
        group: str,
        topics: InputTopics,
        others: Sequence[str],
        messages: Iterable[Message],
        subjects: Sequence[Process],
    ) -> Run:
        """Produce ``messages`` now; time until ``group`` has committed everything on
        the input topics and on ``others``."""
        produced = Produced()
        inputs = sorted({topics.active, topics.passive})
        async with LagProbe(
            self.broker.address, group, inputs, others, self.partitions, self.ends
        ) as probe:
            cpu = CpuMeter(subjects, self.broker.pid)
            start = time.perf_counter()
            production = asyncio.create_task(
                kafka.produce(self.broker.address, topics, messages, produced, self.ends)
            )
            try:
                end = await kafka.wait_drained(
                    probe, production, check=self.processes.check, timeout=DRAIN_TIMEOUT
                )
            finally:
                if not production.done():
                    production.cancel()
        return Run(produced.count, end - start, produced.seconds, cpu.used())


class CpuMeter:
    """CPU seconds used by the subjects, the broker and the bench itself from now on."""

    def __init__(self, subjects: Sequence[Process], broker_pid: int | None):
        self.pids = {"subject": [p.pid for p in subjects], "broker": [broker_pid or 0]}
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        times = os.times()
        return {
            **{k: sum(cpu_seconds(pid) for pid in pids) for k, pids in self.pids.items()},
            "bench": times.user + times.system,
        }

    def used(self) -> dict[str, float]:
        now = self._now()
        return {k: round(now[k] - self.start[k], 2) for k in now}


@dataclass(frozen=True)
class Run:
    """One timed run: ``count`` signals, first produced to lag drained in ``seconds``."""

    count: int
    seconds: float
    produce_seconds: float
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def describe(self) -> str:
        cpu = ", ".join(f"{k} {v:.1f}s" for k, v in self.cpu.items())
        return (
            f"{self.count} in {self.seconds:.2f}s = {self.rate:,.0f}/s "
            f"(producer done after {self.produce_seconds:.2f}s; CPU {cpu})"
        )


@dataclass(frozen=True)
class Figure:
    """The median of repeated runs."""

    runs: tuple[Run, ...]

    @property
    def rate(self) -> float:
        return statistics.median(run.rate for run in self.runs)

    def as_json(self) -> dict[str, Any]:
        return {
            "median_per_s": round(self.rate, 1),
            "runs": [
                {
                    "count": r.count,
                    "seconds": round(r.seconds, 3),
                    "produce_seconds": round(r.produce_seconds, 3),
                    "cpu_seconds": r.cpu,
                }
                for r in self.runs
            ],
        }


async def repeat(bench: Bench, label: str, reps: int, once: Callable[[], Awaitable[Run]]) -> Figure:
    """Run ``once`` ``reps`` times (each with fresh subjects); their median is the figure."""
    runs = []
    for n in range(reps):
        run = await once()
        bench.log(f"  {label} run {n + 1}/{reps}: {run.describe()}")
        runs.append(run)
    return Figure(tuple(runs))


async def written(bench: Bench, config: WorkerConfig) -> dict[str, int]:
    """Records in each topic the worker writes (outputs, inbox, changelogs)."""
    topics = {
        "transitions": config.transitions,
        "policy events": f"{config.app_id}-policy-events",
        "inbox": config.inbox,
        **{f"{table} changelog": f"{config.app_id}-{table}-changelog" for table in TABLES},
    }
    counts = await kafka.records_per_topic(
        bench.broker.address, list(topics.values()), bench.partitions
    )
    return {name: counts[topic] for name, topic in topics.items()}


def per_signal(before: dict[str, int], after: dict[str, int], signals: int) -> dict[str, float]:
    return {
        name: round((after[name] - before.get(name, 0)) / signals, 3)
        for name in after
        if after[name] > before.get(name, 0)
    }


#: The level of a worker's log line (remediator/logs.py's text format); tracebacks have none.
_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ([A-Z]+) ")
_ERRORS = frozenset({"ERROR", "CRITICAL"})


def _level(line: str) -> str:
    match = _LINE.match(line)
    return match.group(1) if match else ""


def log_health(bench: Bench, scenario: str, workers: Sequence[Worker]) -> None:
    """Count the worker logs' lines, warnings and errors (a flooded log costs throughput);
    show the errors."""
    counts = bench.log_stats.setdefault(
        scenario, {"lines": 0, "warnings": 0, "errors": 0, "opened": 0, "not_opened": 0}
    )
    for worker in workers:
        lines = worker.log_lines()
        levels = [_level(line) for line in lines]
        counts["lines"] += len(lines)
        counts["opened"] += sum(": opened remediation " in line for line in lines)
        counts["not_opened"] += sum(": not opened, " in line for line in lines)
        counts["warnings"] += levels.count("WARNING")
        errors = [line for line, level in zip(lines, levels, strict=True) if level in _ERRORS]
        counts["errors"] += len(errors)
        for line in errors[:5]:
            bench.log(f"    ! {worker.name}: {line[:240]}")


# -- 1. raw baseline ---------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineParams:
    """The steady-state payloads, ``copies`` times over (the loop is fast: a longer run
    keeps the ~0.3 s it takes to see the last commit small against it), through a bare
    consume -> produce process."""

    reps: int
    copies: int = 5


async def baseline_once(bench: Bench, messages: Sequence[Message]) -> Run:
    group = bench.tag("raw")
    source, sink = f"{group}-in", f"{group}-out"
    await kafka.create_topics(bench.broker.address, [source, sink], bench.partitions)
    loop = raw_loop_process(
        bench.broker.address, source, sink, group, bench.work / "logs", bench.commit_interval
    )
    bench.processes.start(loop)
    try:
        await _wait_for_line(loop, bench.processes, "ready")
        # Both input kinds go to the one source topic: the loop does not look at them.
        topics = InputTopics(source, source, bench.partitions)
        return await bench.timed(group, topics, [], messages, [loop])
    finally:
        await bench.finish([loop], [source, sink])


async def faust_floor_once(bench: Bench, messages: Sequence[Message]) -> Run:
    """The bare Faust agent (``tests/bench/faust_loop.py``) on the same payloads."""
    group = bench.tag("faust")
    source, sink = f"{group}-in", f"{group}-out"
    await kafka.create_topics(bench.broker.address, [source, sink], bench.partitions)
    loop = faust_loop_process(
        bench.broker.address,
        source,
        sink,
        group,
        bench.work / "logs",
        bench.commit_interval,
        free_port(),
    )
    bench.processes.start(loop)
    try:
        await _wait_for_line(loop, bench.processes, "ready")
        topics = InputTopics(source, source, bench.partitions)
        return await bench.timed(group, topics, [], messages, [loop])
    finally:
        await bench.finish([loop], [source, sink])


async def _wait_for_line(process: Process, processes: Processes, text: str) -> None:
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        processes.check()
        if process.log_path.exists() and text in process.log_path.read_text(errors="replace"):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{process.name} did not print {text!r} in 60s")


# -- 2. steady state (and 6. scale-out) --------------------------------------------------


@dataclass(frozen=True)
class SteadyParams:
    fleet: FleetSpec
    signals: int
    mix: SteadyMix
    reps: int

    def describe(self) -> str:
        return (
            f"{self.fleet.describe()} (all known first: one passing run each, untimed), "
            f"then {self.signals} signals: {self.mix.describe()}"
        )


@dataclass
class SteadyInput:
    warm_up: list[Message]
    signals: list[Message]

    @classmethod
    def build(cls, params: SteadyParams) -> SteadyInput:
        fleet = Fleet.build(params.fleet)
        first = warm_up(fleet)
        return cls(first, list(steady(fleet, params.signals, params.mix)))


async def steady_once(bench: Bench, data: SteadyInput, workers: int = 1) -> Run:
    label = f"steady{workers}w"
    config = bench.worker_config(bench.tag(label))
    await bench.create_inputs(config)
    started = await bench.start_workers(config, workers)
    try:
        await bench.drain(config, data.warm_up, started)
        before = await written(bench, config)
        run = await bench.drain(config, data.signals, started)
        log_health(bench, label, started)
        bench.writes[label] = per_signal(before, await written(bench, config), run.count)
        return run
    finally:
        await bench.finish(started, [config.active, config.passive, *config.owned_topics])


# -- 3. worst case -----------------------------------------------------------------------


@dataclass(frozen=True)
class WorstParams:
    """Every signal a failing one for a new instance; every instance of every cluster."""

    fleet: FleetSpec
    reps: int

    def describe(self) -> str:
        return f"{self.fleet.describe()}, one failing signal each (half runs, half alerts)"


async def worst_once(bench: Bench, messages: Sequence[Message], label: str = "worst") -> Run:
    config = bench.worker_config(bench.tag(label.replace("_", "")))
    await bench.create_inputs(config)
    started = await bench.start_workers(config)
    try:
        run = await bench.drain(config, messages, started)
        log_health(bench, label, started)
        bench.writes[label] = per_signal({}, await written(bench, config), run.count)
        return run
    finally:
        await bench.finish(started, [config.active, config.passive, *config.owned_topics])


def worst_input(params: WorstParams) -> list[Message]:
    return storm(params.fleet)


# -- 4. latency --------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyParams:
    """A paced steady background with failing probes for fresh instances of clusters that
    have room (probe clusters get no other failing signal, and fewer probes each than the
    blast-radius limit and the hourly budget)."""

    background: FleetSpec
    probes: int
    probe_cluster_size: int
    probes_per_cluster: int
    seconds: float
    rate_fraction: float = 0.5
    mix: SteadyMix = field(default_factory=SteadyMix)

    @property
    def probe_clusters(self) -> int:
        return -(-self.probes // self.probes_per_cluster)

    def describe(self, rate: float) -> str:
        return (
            f"{self.rate_fraction:.0%} of the steady median = {rate:,.0f} signals/s for "
            f"{self.seconds:g}s; background {self.background.describe()} plus "
            f"{self.probe_clusters} probe clusters of {self.probe_cluster_size} (all known "
            f"first); {self.probes} probes (failing signal of a fresh instance, "
            f"{self.probes_per_cluster} per probe cluster) spread evenly"
        )


@dataclass(frozen=True)
class Latency:
    samples: tuple[float, ...]
    sent: int
    unmatched: int
    produced: Run
    #: (seconds into the paced run the probe was sent, its latency in ms), by send time:
    #: where in the run the slow ones fall (a start-up tail, a periodic pause...).
    timeline: tuple[tuple[float, float], ...] = ()

    def slowest(self, count: int = 10) -> list[list[float]]:
        ordered = sorted(self.timeline, key=lambda point: -point[1])[:count]
        return [[round(at, 2), round(ms, 1)] for at, ms in sorted(ordered)]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.samples)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        return ordered[index]


@dataclass
class LatencyInput:
    warm_up: list[Message]
    stream: list[Message]
    probe_ids: set[str]


def latency_input(params: LatencyParams, rate: float) -> LatencyInput:
    """The warm-up, and the paced stream with the probes spread evenly in it."""
    background = Fleet.build(params.background)
    probe_spec = FleetSpec(
        params.probe_clusters * params.probe_cluster_size,
        params.probe_cluster_size,
        params.probe_cluster_size,
        seed=params.background.seed + 1,
        prefix="p",
    )
    probes_fleet = Fleet.build(probe_spec)
    for instance in probes_fleet.instances:
        instance.quiet = True
    fleet = Fleet(background.instances + probes_fleet.instances)
    first = warm_up(fleet)
    total = int(rate * params.seconds)
    stream = list(steady(fleet, max(total - params.probes, 0), params.mix, seed=17))
    probes = list(_probes(probes_fleet, params))
    every = max(len(stream) // max(len(probes), 1), 1)
    for n, probe in enumerate(probes):
        stream.insert(min(n * (every + 1) + every // 2, len(stream)), probe)
    return LatencyInput(first, stream, {probe.signal_id for probe in probes})


def _probes(fleet: Fleet, params: LatencyParams) -> Iterator[Message]:
    import random

    rng = random.Random(5)
    chosen = [members[: params.probes_per_cluster] for members in fleet.clusters.values()]
    for instance in itertools.islice(
        (i for group in itertools.zip_longest(*chosen) for i in group if i is not None),
        params.probes,
    ):
        instance.clock += timedelta(minutes=3)
        yield failing_signal(rng, instance)


async def latency(bench: Bench, params: LatencyParams, rate: float) -> Latency:
    data = latency_input(params, rate)
    config = bench.worker_config(bench.tag("latency"))
    await bench.create_inputs(config)
    started = await bench.start_workers(config)
    try:
        await bench.drain(config, data.warm_up, started)
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}

        def on_sent(chunk: Sequence[Message], moment: float) -> None:
            for message in chunk:
                if message.signal_id in data.probe_ids:
                    sent[message.signal_id] = moment

        positioned = asyncio.Event()
        reader = asyncio.create_task(_read_transitions(bench, config.transitions, seen, positioned))
        await asyncio.wait_for(positioned.wait(), 30)
        produced = await kafka.paced(
            bench.broker.address,
            bench.inputs(config),
            data.stream,
            rate,
            on_sent,
            bench.ends,
            bench.processes.check,
        )
        run = await bench.drain(config, [], started)
        await asyncio.sleep(0.5)  # the last transitions reach the reader
        reader.cancel()
        first = min(sent.values(), default=0.0)
        timeline = tuple(
            sorted(
                (moment - first, (seen[signal] - moment) * 1000)
                for signal, moment in sent.items()
                if signal in seen
            )
        )
        log_health(bench, "latency", started)
        return Latency(
            tuple(ms for _, ms in timeline),
            len(sent),
            len(sent) - len(timeline),
            Run(produced.count, produced.seconds + run.seconds, produced.seconds),
            timeline,
        )
    finally:
        await bench.finish(started, [config.active, config.passive, *config.owned_topics])


async def _read_transitions(
    bench: Bench, topic: str, seen: dict[str, float], positioned: asyncio.Event
) -> None:
    """Note when each CREATE_AUTOMATED transition becomes readable, by its signal's id;
    ``positioned`` is set once the reader is at the topic's end and fetching (until then,
    the first probes' times would include the reader's own start)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bench.broker.address, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(bench.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            positioned.set()
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    transition = orjson.loads(record.value)
                    if transition.get("event") != "CREATE_AUTOMATED":
                        continue
                    remediation = transition.get("remediation") or {}
                    for key in ("active_health_check_run_id", "passive_health_check_event_id"):
                        signal = remediation.get(key)
                        if signal:
                            seen.setdefault(signal, now)
    finally:
        await consumer.stop()


# -- 5. memory ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryParams:
    """Steady-state signals in drained steps of ``step``; RSS after each."""

    fleet: FleetSpec
    first: int
    total: int
    step: int
    mix: SteadyMix = field(default_factory=SteadyMix)

    def describe(self) -> str:
        return (
            f"{self.fleet.describe()}, steady mix, produced in steps of {self.step:,} "
            f"each drained before the next; RSS after each (the figures: after "
            f"{self.first:,} and after {self.total:,})"
        )


@dataclass(frozen=True)
class Memory:
    #: (signals processed, RSS MiB) from the worker ready (0) to the end.
    curve: tuple[tuple[int, float], ...]
    first: int
    runs: tuple[Run, ...]

    @property
    def rss_first_mb(self) -> float:
        return dict(self.curve)[self.first]

    @property
    def rss_total_mb(self) -> float:
        return self.curve[-1][1]

    @property
    def growth(self) -> float:
        return (self.rss_total_mb - self.rss_first_mb) / self.rss_first_mb

    @property
    def rate(self) -> float:
        return sum(r.count for r in self.runs) / sum(r.seconds for r in self.runs)


async def memory(bench: Bench, params: MemoryParams) -> Memory:
    fleet = Fleet.build(params.fleet)
    stream = steady(fleet, params.total, params.mix, seed=19)
    config = bench.worker_config(bench.tag("memory"))
    await bench.create_inputs(config)
    (worker,) = await bench.start_workers(config)
    try:
        curve = [(0, worker.rss_mb())]
        bench.log(f"  {0:>9,}: RSS {curve[0][1]:6.1f} MiB when ready")
        runs = []
        done = 0
        while done < params.total:
            size = min(params.first if not done else params.step, params.total - done)
            runs.append(await bench.drain(config, itertools.islice(stream, size), [worker]))
            done += size
            curve.append((done, worker.rss_mb()))
            bench.log(f"  {done:>9,}: RSS {curve[-1][1]:6.1f} MiB after {runs[-1].describe()}")
        log_health(bench, "memory", [worker])
        return Memory(tuple(curve), params.first, tuple(runs))
    finally:
        await bench.finish([worker], [config.active, config.passive, *config.owned_topics])


# -- 7. recovery -------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryParams:
    fleet: FleetSpec

    def describe(self) -> str:
        return (
            f"{self.fleet.describe()}, one passing run each; clean stop, restart with the "
            "same app id and data dir, timed from process start to /healthz ready"
        )


@dataclass(frozen=True)
class Recovery:
    store: str
    populate: Run
    stop_seconds: float
    ready_seconds: float
    loaded: str | None
    loaded_seconds: float | None
    #: Why the plain restart failed, when it did (then the figures are from a restart
    #: after the bench's workaround, see :func:`pad_changelogs`).
    failure: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "populate_per_s": round(self.populate.rate, 1),
            "stop_s": round(self.stop_seconds, 2),
            "ready_s": round(self.ready_seconds, 2),
            "state_loaded_line": self.loaded,
            "state_loaded_s": self.loaded_seconds,
            "plain_restart_failure": self.failure,
        }


async def recovery(bench: Bench, params: RecoveryParams, store: str) -> Recovery:
    messages = warm_up(Fleet.build(params.fleet))
    config = bench.worker_config(bench.tag(f"recovery-{store}"), table_store=store)
    await bench.create_inputs(config)
    (worker,) = await bench.start_workers(config)
    last = worker
    try:
        populate = await bench.drain(config, messages, [worker])
        bench.log(f"  {store}: populated {populate.describe()}")
        stopping = time.perf_counter()
        code = bench.processes.stop(worker)
        stop_seconds = time.perf_counter() - stopping
        if code != 0:
            bench.log(f"  ! {store}: worker exited with status {code} on SIGTERM")
        failure = None
        try:
            last, ready = await restart(bench, config, "restart")
        except ProcessDied as exc:
            failure = str(exc)
            bench.log(f"  ! {store}: the restarted worker died: {failure}")
            await pad_changelogs(bench, config)
            bench.log(f"  {store}: changelogs padded (see pad_changelogs); restarting again")
            last, ready = await restart(bench, config, "restart-padded")
        loaded = await _state_loaded(last, bench.processes)
        if loaded is not None and int(loaded.group("n")) != len(messages):
            bench.log(
                f"  ! {store}: the restarted worker loaded {loaded.group('n')} of the "
                f"{len(messages)} instances it had"
            )
        log_health(bench, f"recovery-{store}", [last])
        return Recovery(
            store,
            populate,
            stop_seconds,
            ready,
            loaded.group(0) if loaded else None,
            float(loaded.group("s")) if loaded else None,
            failure,
        )
    finally:
        await bench.finish([last], [config.active, config.passive, *config.owned_topics])


async def restart(bench: Bench, config: WorkerConfig, name: str) -> tuple[Worker, float]:
    """Start a worker on ``config`` again; seconds from process start to ready. When it
    dies instead, :class:`ProcessDied` says why (its log's first error line)."""
    again = worker_process(config, bench.work / "logs", name=name)
    bench.processes.start(again)
    try:
        return again, await wait_ready([again], bench.processes) - again.started_at
    except ProcessDied as exc:
        bench.processes.stop(again)
        errors = [line for line in again.log_lines() if "] [ERROR] " in line]
        raise ProcessDied(errors[0].split("] ", 3)[-1][:300] if errors else str(exc)) from exc


async def pad_changelogs(bench: Bench, config: WorkerConfig) -> None:
    """Work around Tansu for a RocksDB restart: end every changelog partition with a
    one-record batch (a tombstone of a key no table uses).

    Faust's recovery takes a changelog's high watermark from ListOffsets, which Tansu
    answers with the base offset of the partition's last record batch + 1. The worker
    writes its changelogs in multi-record batches and RocksDB keeps the true last offset,
    so on restart Faust finds the persisted offset past the "highwater" and crashes
    (ConsistencyError). After a one-record batch the two agree again.
    """
    tps = [
        TopicPartition(f"{config.app_id}-{table}-changelog", p)
        for table in TABLES
        for p in range(bench.partitions)
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bench.broker.address)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    async with kafka.producer(bench.broker.address) as producer:
        for tp in tps:
            if ends.get(tp, 0) > 0:
                await (await producer.send(tp.topic, None, key=PAD_KEY, partition=tp.partition))


PAD_KEY = b"\x00bench-pad"


async def _state_loaded(worker: Worker, processes: Processes, wait: float = 30.0) -> Any:
    """The worker's first "state loaded" line (logged just after it is ready)."""
    deadline = time.perf_counter() + wait
    while time.perf_counter() < deadline:
        processes.check()
        match = next(grep(worker.log_lines(), STATE_LOADED), None)
        if match is not None:
            return match
        await asyncio.sleep(0.1)
    return None
