"""The pipeline bench (issue 9): figures, not asserts, all from ONE run on ONE broker.

    make bench                 # the full bench (about 16 minutes on an idle 2-core machine)
    make bench ARGS=--quick    # a smoke run of everything, small sizes (about 1.5 minutes)
    make bench BROKER=kafka    # the same on Apache Kafka (--broker kafka)
    python -m tests.bench.bench_pipeline --only steady,worst --reps 1

One broker serves everything: the embedded Tansu (memory storage) by default, or Apache
Kafka (``--broker kafka``, ``remediator.kafka.local``), its name and version recorded as
``broker`` in ``.bench/latest.json``. Every subject is a real
process, started fresh for each run with new topics and a new consumer group: the raw
loop (``tests/bench/raw_loop.py``) or ``remediator worker`` (``python -m remediator.cli
worker``) at its normal log level, with ``REMEDIATOR_COMMIT_INTERVAL_SECONDS=0.2`` so the
commit that ends a run lags the work by little, the default policy and the default batch
sizes. A throughput run produces its input concurrently (the time the producer needed is
printed beside each run) and is timed from the first produced message to "lag drained":
the subject's consumer group has committed offsets equal to the end offsets of every
topic it reads (both input topics and ``{app_id}-cluster-inbox`` for the worker). Each
throughput figure is the median of ``--reps`` runs (3), and a ratio to the baseline of
the same bench run.

The figures (keys of ``.bench/latest.json``):

1. ``baseline_msgs``: the raw aiokafka consume -> produce loop (one output per input, the
   acks of each fetched batch awaited together, offsets committed every 0.2 s), msg/s, on
   the steady-state payloads. ``faust_floor_msgs`` (1b): a bare Faust agent doing the same
   (``tests/bench/faust_loop.py``: the worker's transport, ``take_events`` batches, one
   output per input): what the framework alone allows; ``*_vs_faust_floor`` divide the
   worker's figures by it.
2. ``steady_msgs``, ``steady_ratio``: a realistic fleet (clusters of 50-500 instances, all
   known first by one passing run each, untimed), then >= 95 % passing runs, resolved
   alerts and repeats (the same bytes again), the rest FAILED runs and CRITICAL FIRING
   alerts, each instance's signals minutes apart in event time. Signals/s.
3. ``worst_msgs``, ``worst_ratio``: every signal a failing one for a new instance, every
   instance of clusters of 50-500 failing (most proposals refused by the blast radius and
   the budget: still work per signal). ``worst_50_msgs`` / ``worst_500_msgs``: the same
   with all clusters of 50 / of 500; ``worst_50_vs_500`` is their ratio (goal: within
   20 % of 1, cost per signal independent of cluster size).
4. ``p50_ms``, ``p90_ms``, ``p99_ms``: from handing a failing signal to the producer to its
   CREATE_AUTOMATED transition being read from ``remediation-transitions`` (matched by
   run id / event id), while a paced producer sends a steady background at half the
   steady median rate; probes are failing signals of fresh instances in clusters with
   room for them.
5. ``rss_100k_mb``, ``rss_1m_mb``, ``rss_growth``: the worker's VmRSS once drained after
   100 k and after 1 M steady-state signals on a 10 k-instance fleet (produced in drained
   steps of 100 k; ``rss_curve_mb`` has every step);
   rss_growth = (RSS@1M - RSS@100k) / RSS@100k (goal <= 0.10).
6. ``two_workers_msgs``, ``two_workers_ratio``: the steady state with two workers in one
   group (same app id, own web ports and data dirs) against one.
7. ``recovery_memory_s``, ``recovery_rocksdict_s``: 100 k instances known (one signal
   each), the worker stopped cleanly and started again with the same app id and data dir:
   seconds from process start to ``/healthz`` ready, per table store; with the worker's
   own "state loaded: N instance(s) ... in X s" line. On Tansu the rocksdict restart
   crashes (Faust's recovery trusts ListOffsets, which Tansu understates): the bench
   reports why, pads the changelogs (``scenarios.pad_changelogs``) and times that restart.

Beside the figures: the CPU seconds of subject, broker and bench per run, the worker
logs' line, warning and error counts, and the records the worker wrote per signal to
each of its topics (``writes_per_signal``).

``--quick`` runs every scenario small, once: a smoke test of the bench, not figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

from tests.brokers import KINDS, start_broker

from . import scenarios
from .procs import ProcessDied, Processes
from .scenarios import (
    BaselineParams,
    Bench,
    Figure,
    LatencyParams,
    MemoryParams,
    RecoveryParams,
    SteadyInput,
    SteadyParams,
    WorstParams,
)
from .workload import FleetSpec, SteadyMix

RESULTS = Path(".bench/latest.json")
SCENARIOS = ("baseline", "steady", "worst", "latency", "scaleout", "memory", "recovery")


@dataclass(frozen=True)
class Config:
    """Every parameter of a bench run (printed, and saved with the figures)."""

    reps: int
    partitions: int
    commit_interval: float
    baseline: BaselineParams
    steady: SteadyParams
    worst: WorstParams
    worst_50: WorstParams
    worst_500: WorstParams
    latency: LatencyParams
    memory: MemoryParams
    recovery: RecoveryParams
    scale_out_workers: int = 2
    recovery_stores: tuple[str, ...] = ("memory", "rocksdict")


def full_config(reps: int) -> Config:
    fleet = FleetSpec(instances=10_000)
    return Config(
        reps=reps,
        partitions=8,
        commit_interval=0.2,
        baseline=BaselineParams(reps),
        steady=SteadyParams(fleet, signals=30_000, mix=SteadyMix(), reps=reps),
        worst=WorstParams(FleetSpec(instances=5_000, seed=2), reps),
        worst_50=WorstParams(FleetSpec(5_000, 50, 50, seed=3), reps),
        worst_500=WorstParams(FleetSpec(5_000, 500, 500, seed=4), reps),
        latency=LatencyParams(
            background=FleetSpec(instances=10_000, seed=5),
            probes=400,
            probe_cluster_size=100,
            probes_per_cluster=8,
            seconds=45,
        ),
        memory=MemoryParams(FleetSpec(instances=10_000, seed=6), 100_000, 1_000_000, 100_000),
        recovery=RecoveryParams(FleetSpec(instances=100_000, seed=8)),
    )


def quick_config() -> Config:
    fleet = FleetSpec(instances=1_000)
    return Config(
        reps=1,
        partitions=8,
        commit_interval=0.2,
        baseline=BaselineParams(1, copies=2),
        steady=SteadyParams(fleet, signals=4_000, mix=SteadyMix(), reps=1),
        worst=WorstParams(FleetSpec(instances=1_000, seed=2), 1),
        worst_50=WorstParams(FleetSpec(1_000, 50, 50, seed=3), 1),
        worst_500=WorstParams(FleetSpec(1_000, 500, 500, seed=4), 1),
        latency=LatencyParams(
            background=FleetSpec(instances=1_000, seed=5),
            probes=40,
            probe_cluster_size=100,
            probes_per_cluster=8,
            seconds=5,
        ),
        memory=MemoryParams(FleetSpec(instances=1_000, seed=6), 1_000, 5_000, 2_000),
        recovery=RecoveryParams(FleetSpec(instances=1_000, seed=8)),
        recovery_stores=("rocksdict",),
    )


# -- running -----------------------------------------------------------------------------


@dataclass
class Results:
    figures: dict[str, Any]

    def put(self, key: str, value: Any, digits: int = 3) -> None:
        self.figures[key] = round(value, digits) if isinstance(value, float) else value


@dataclass
class Session:
    """One bench run: the figures so far, and what later scenarios need of earlier ones."""

    bench: Bench
    config: Config
    results: Results
    steady_input: SteadyInput
    baseline: Figure | None = None
    faust_floor: Figure | None = None
    steady: Figure | None = None

    def ratio(self, figure: Figure) -> float | None:
        return figure.rate / self.baseline.rate if self.baseline else None

    def put_figure(self, key: str, figure: Figure) -> None:
        self.results.put(f"{key}_msgs", figure.rate, 1)
        if key != "baseline":
            self.results.put(f"{key}_ratio", self.ratio(figure))
        if key not in ("baseline", "faust_floor") and self.faust_floor is not None:
            # How close to what the framework alone allows.
            self.results.put(f"{key}_vs_faust_floor", figure.rate / self.faust_floor.rate)
        self.results.put(f"{key}_runs", figure.as_json())


async def run_all(bench: Bench, config: Config, only: set[str]) -> Results:
    session = Session(bench, config, Results({}), SteadyInput.build(config.steady))
    steps = [
        ("baseline", run_baseline),
        ("steady", run_steady),
        ("worst", run_worst),
        ("latency", run_latency),
        ("scaleout", run_scale_out),
        ("memory", run_memory),
        ("recovery", run_recovery),
    ]
    if only & {"latency", "scaleout"}:
        only = only | {"steady"}  # they need its figure
    durations = {}
    for name, step in steps:
        if name in only:
            started = time.perf_counter()
            await step(session)
            durations[name] = round(time.perf_counter() - started, 1)
            bench.log(f"  ({name}: {durations[name]:.0f}s)")
    session.results.put("scenario_seconds", durations)
    session.results.put("worker_logs", bench.log_stats)
    session.results.put("writes_per_signal", bench.writes)
    return session.results


async def run_baseline(session: Session) -> None:
    bench, config = session.bench, session.config
    bench.log(
        "\n[1] raw baseline: bare aiokafka consume -> produce, the steady payloads "
        f"{config.baseline.copies} times over"
    )
    messages = session.steady_input.signals * config.baseline.copies
    session.baseline = await scenarios.repeat(
        bench, "baseline", config.reps, lambda: scenarios.baseline_once(bench, messages)
    )
    session.put_figure("baseline", session.baseline)
    bench.log(
        "\n[1b] the framework's floor: a bare Faust agent consume -> produce (the worker's "
        "transport, take_events batches, acks per batch), the same payloads"
    )
    session.faust_floor = await scenarios.repeat(
        bench, "faust_floor", config.reps, lambda: scenarios.faust_floor_once(bench, messages)
    )
    session.put_figure("faust_floor", session.faust_floor)


async def run_steady(session: Session) -> None:
    bench, config = session.bench, session.config
    bench.log(f"\n[2] steady state: {config.steady.describe()}")
    session.steady = await scenarios.repeat(
        bench, "steady", config.reps, lambda: scenarios.steady_once(bench, session.steady_input)
    )
    session.put_figure("steady", session.steady)


async def run_worst(session: Session) -> None:
    bench, config = session.bench, session.config
    cases = {"worst": config.worst, "worst_50": config.worst_50, "worst_500": config.worst_500}
    figures = {}
    for key, params in cases.items():
        bench.log(f"\n[3] {key.replace('_', ' ')}: {params.describe()}")
        messages = scenarios.worst_input(params)
        figures[key] = await scenarios.repeat(
            bench,
            key,
            config.reps,
            lambda m=messages, k=key: scenarios.worst_once(bench, m, k),  # type: ignore[misc]
        )
        session.put_figure(key, figures[key])
    session.results.put("worst_50_vs_500", figures["worst_50"].rate / figures["worst_500"].rate)


async def run_latency(session: Session) -> None:
    bench, params = session.bench, session.config.latency
    assert session.steady is not None
    rate = session.steady.rate * params.rate_fraction
    bench.log(f"\n[4] latency: {params.describe(rate)}")
    latency = await scenarios.latency(bench, params, rate)
    paced = latency.produced
    bench.log(
        f"  {len(latency.samples)} of {latency.sent} probes matched "
        f"({latency.unmatched} without a CREATE_AUTOMATED transition); paced "
        f"{paced.count} signals at {paced.count / max(paced.produce_seconds, 1e-9):,.0f}/s"
    )
    results = session.results
    results.put("latency_rate", rate, 1)
    results.put("latency_probes", len(latency.samples))
    results.put("latency_unmatched", latency.unmatched)
    results.put("p50_ms", latency.percentile(0.50), 1)
    results.put("p90_ms", latency.percentile(0.90), 1)
    results.put("p99_ms", latency.percentile(0.99), 1)
    results.put("max_ms", max(latency.samples, default=float("nan")), 1)
    results.put("latency_slowest", latency.slowest())
    bench.log(f"  slowest probes (s into the run, ms): {latency.slowest()}")


async def run_scale_out(session: Session) -> None:
    bench, config = session.bench, session.config
    assert session.steady is not None
    n = config.scale_out_workers
    bench.log(f"\n[6] scale-out: the steady state with {n} workers in one group")
    figure = await scenarios.repeat(
        bench,
        f"{n} workers",
        config.reps,
        lambda: scenarios.steady_once(bench, session.steady_input, n),
    )
    session.results.put("two_workers_msgs", figure.rate, 1)
    session.results.put("two_workers_ratio", figure.rate / session.steady.rate)
    session.results.put("two_workers_runs", figure.as_json())


async def run_memory(session: Session) -> None:
    bench, params = session.bench, session.config.memory
    bench.log(f"\n[5] memory: {params.describe()}")
    memory = await scenarios.memory(bench, params)
    results = session.results
    results.put("rss_100k_mb", memory.rss_first_mb, 1)
    results.put("rss_1m_mb", memory.rss_total_mb, 1)
    results.put("rss_growth", memory.growth)
    results.put("rss_curve_mb", [[n, round(mb, 1)] for n, mb in memory.curve])
    results.put("memory_msgs", memory.rate, 1)


async def run_recovery(session: Session) -> None:
    bench, params = session.bench, session.config.recovery
    bench.log(f"\n[7] recovery: {params.describe()}")
    for store in session.config.recovery_stores:
        outcome = await scenarios.recovery(bench, params, store)
        bench.log(
            f"  {store}: stopped in {outcome.stop_seconds:.1f}s; restart ready in "
            f"{outcome.ready_seconds:.2f}s; log: {outcome.loaded or '(no state loaded line)'}"
        )
        session.results.put(f"recovery_{store}_s", outcome.ready_seconds, 2)
        session.results.put(f"recovery_{store}", outcome.as_json())


# -- output ------------------------------------------------------------------------------


def parameters(config: Config) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value

    return {
        **{k: plain(v) for k, v in config.__dict__.items()},
        "worker_settings": {
            "REMEDIATOR_COMMIT_INTERVAL_SECONDS": config.commit_interval,
            "REMEDIATOR_PARTITIONS": config.partitions,
            "REMEDIATOR_LOG_LEVEL": "info",
            "REMEDIATOR_BROKER_SESSION_TIMEOUT": 3,
            "REMEDIATOR_POLICY_FILE": "unset (the default policy)",
            "REMEDIATOR_TABLE_STORE": "memory (rocksdict in the recovery scenario)",
            "others": "defaults (batch max 1000, fetch max wait 100 ms, RocksDB memory 8 MiB)",
        },
        "machine": f"{platform.machine()}, {_cpus()} CPU(s), Python {platform.python_version()}",
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: anything else on the machine shows here."""
    return [round(x, 2) for x in os.getloadavg()]


#: Read once, before the bench loads the machine itself.
LOAD_AT_START = load_average()


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def summary_lines(config: Config) -> list[tuple[str, str]]:
    memory = config.memory
    return [
        ("baseline_msgs", "raw baseline, msg/s"),
        ("faust_floor_msgs", "bare Faust agent, msg/s"),
        ("faust_floor_ratio", "  ratio to baseline"),
        ("steady_msgs", "steady state, signals/s"),
        ("steady_ratio", "  ratio to baseline (goal >= 0.5)"),
        ("steady_vs_faust_floor", "  ratio to the bare Faust agent"),
        ("worst_msgs", "worst case (clusters of 50-500), signals/s"),
        ("worst_ratio", "  ratio to baseline (goal >= 0.25)"),
        ("worst_vs_faust_floor", "  ratio to the bare Faust agent"),
        ("worst_50_msgs", "worst case, clusters of 50, signals/s"),
        ("worst_500_msgs", "worst case, clusters of 500, signals/s"),
        ("worst_50_vs_500", "  ratio 50/500 (goal: 0.8-1.2)"),
        ("latency_rate", "latency: paced load, signals/s"),
        ("p50_ms", "  p50, ms"),
        ("p90_ms", "  p90, ms"),
        ("p99_ms", "  p99, ms"),
        ("rss_100k_mb", f"RSS after {memory.first:,} signals, MiB"),
        ("rss_1m_mb", f"RSS after {memory.total:,} signals, MiB"),
        ("rss_growth", "  growth (goal <= 0.10)"),
        ("two_workers_msgs", f"{config.scale_out_workers} workers, signals/s"),
        ("two_workers_ratio", f"  ratio {config.scale_out_workers} workers / one"),
        ("recovery_memory_s", f"restart, {config.recovery.fleet.instances:,} known, memory, s"),
        (
            "recovery_rocksdict_s",
            f"restart, {config.recovery.fleet.instances:,} known, rocksdict, s",
        ),
    ]


def print_summary(results: Results, config: Config, seconds: float) -> None:
    print(f"\n== summary ({seconds / 60:.1f} min, {results.figures.get('broker')}) ==")
    for key, label in summary_lines(config):
        value = results.figures.get(key)
        if value is None:
            continue
        text = f"{value:,.3f}" if isinstance(value, float) and value < 10 else f"{value:,}"
        print(f"{label:<46} {text}")
    for scenario, counts in results.figures.get("worker_logs", {}).items():
        print(
            f"worker log, {scenario}: {counts['lines']} lines, {counts['warnings']} warnings, "
            f"{counts['errors']} errors; remediations opened {counts['opened']}, "
            f"proposals refused {counts['not_opened']}"
        )
    for scenario, writes in results.figures.get("writes_per_signal", {}).items():
        text = ", ".join(f"{name} {per:.2f}" for name, per in writes.items())
        print(f"records written per signal, {scenario}: {text}")


def write_results(results: Results, config: Config, quick: bool, seconds: float) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    document = {
        **results.figures,
        "quick": quick,
        "bench_seconds": round(seconds, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average_at_start": LOAD_AT_START,
        "load_average_at_end": load_average(),
        "parameters": parameters(config),
    }
    RESULTS.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"results written to {RESULTS}")


# -- entry point -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput, latency, memory and recovery of the remediator pipeline.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--reps", type=int, default=None, help="runs per throughput figure (3)")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (worker logs)")
    parser.add_argument(
        "--broker", choices=KINDS, default="tansu", help="the broker to run on (%(default)s)"
    )
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    config = quick_config() if args.quick else full_config(args.reps or 3)
    if args.reps and args.quick:
        config = replace(config, reps=args.reps)
    return config


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the bench the way Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, piped
    config = make_config(args)
    only = set(args.only.split(","))
    unknown = only - set(SCENARIOS)
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    print("parameters:", json.dumps(parameters(config), indent=1, default=str))
    print(f"load average at start: {LOAD_AT_START}")
    work = Path(tempfile.mkdtemp(prefix="remediator-bench-"))
    processes = Processes()
    started = time.perf_counter()
    try:
        broker = start_broker(args.broker, work / "broker")
        try:
            bench = Bench(broker, work, processes, config.partitions, config.commit_interval)
            print(f"broker: {broker.name} at {broker.address}; work dir {work}")
            try:
                results = asyncio.run(run_all(bench, config, only))
            finally:
                processes.stop_all()
        finally:
            broker.stop()
        results.figures["broker"] = broker.name
        seconds = time.perf_counter() - started
        print_summary(results, config, seconds)
        write_results(results, config, args.quick, seconds)
        return 0
    except ProcessDied as exc:
        print(f"\nbench stopped: {exc}", file=sys.stderr)
        if not args.keep:
            print("(the work dir is removed; --keep keeps every log)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
