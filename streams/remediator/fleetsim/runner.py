"""``remediator simulate``: the fleet's signals onto a broker, at a pace, with a progress line.

Signals are produced with aiokafka to the worker's input topics (the same
``REMEDIATOR_TOPIC_*`` settings), keyed by instance id, each stamped with the wall clock
when it is sent. Missing topics are created the way the worker creates them. The run ends
after ``--count`` signals, after ``--duration`` seconds, or at Ctrl-C / SIGTERM, whichever
comes first, with every message sent acknowledged by the broker before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, NoReturn

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from remediator.admin import BrokerUnavailable, ensure_topics
from remediator.embedded import _die_with_parent
from remediator.fleetsim.generator import FleetConfig, FleetSimulator
from remediator.settings import parse_server

DEFAULT_BROKER = "kafka://127.0.0.1:9092"
EXIT_OK, EXIT_START, EXIT_USAGE = 0, 1, 2
#: Messages in flight before the producer waits for their acknowledgements.
WINDOW = 500


@dataclass(frozen=True)
class RunOptions:
    broker: str
    active_topic: str
    passive_topic: str
    rate: float  # signals per second; 0: as fast as the broker takes them
    count: int | None
    duration: float | None
    partitions: int
    progress: str  # "tty" (one line, updated in place), "lines", "none"
    progress_every: float
    wait_ready: str | None  # a worker's /healthz to wait for before sending
    connect_timeout: float = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    fleet = parser.add_argument_group("the fleet")
    fleet.add_argument("--clusters", type=int, default=3, help="clusters (%(default)s)")
    fleet.add_argument(
        "--instances", type=int, default=20, help="instances per cluster (%(default)s)"
    )
    fleet.add_argument(
        "--failure-rate",
        type=float,
        default=0.01,
        help="share of signals that start a problem on a healthy instance (%(default)s)",
    )
    fleet.add_argument(
        "--burst-rate",
        type=float,
        default=0.0005,
        help="share of signals that start a burst: a critical alert on a third to a half "
        "of one cluster (%(default)s)",
    )
    fleet.add_argument(
        "--seed", type=int, default=None, help="fixes the mix and timing (ids stay fresh)"
    )
    run = parser.add_argument_group("the run")
    run.add_argument(
        "--rate", type=float, default=2.0, help="signals per second; 0: flat out (%(default)s)"
    )
    run.add_argument("--count", type=int, default=None, help="stop after this many signals")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.add_argument(
        "--broker",
        "--bootstrap",
        default=None,
        help=f"bootstrap servers (default: $REMEDIATOR_BROKER, else {DEFAULT_BROKER})",
    )
    run.add_argument(
        "--active-topic",
        default=env("REMEDIATOR_TOPIC_ACTIVE_RUNS", "active-health-check-runs"),
        help="(default: $REMEDIATOR_TOPIC_ACTIVE_RUNS, else %(default)s)",
    )
    run.add_argument(
        "--passive-topic",
        default=env("REMEDIATOR_TOPIC_PASSIVE_EVENTS", "passive-health-check-events"),
        help="(default: $REMEDIATOR_TOPIC_PASSIVE_EVENTS, else %(default)s)",
    )
    run.add_argument(
        "--progress",
        choices=["auto", "tty", "lines", "none"],
        default="auto",
        help="one line updated in place (tty), a line every --progress-every seconds "
        "(lines), or none; auto: tty on a terminal, else lines",
    )
    run.add_argument(
        "--progress-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how often --progress lines prints a line (%(default)s)",
    )
    run.add_argument(
        "--wait-ready",
        metavar="URL",
        default=None,
        help="wait until this worker /healthz answers ready before sending",
    )


def options_from(args: argparse.Namespace, out: IO[str]) -> tuple[FleetConfig, RunOptions]:
    """The fleet and the run, or ``ValueError`` naming the option that is wrong."""
    if args.rate < 0:
        raise ValueError("--rate must not be negative")
    if args.count is not None and args.count < 0:
        raise ValueError("--count must not be negative")
    if args.duration is not None and args.duration <= 0:
        raise ValueError("--duration must be positive")
    broker = args.broker or os.environ.get("REMEDIATOR_BROKER") or DEFAULT_BROKER
    try:
        [parse_server(entry.strip()) for entry in broker.split(",")]
    except ValueError as exc:
        raise ValueError(f"--broker: {exc}") from None
    config = FleetConfig(
        clusters=args.clusters,
        instances=args.instances,
        failure_rate=args.failure_rate,
        burst_rate=args.burst_rate,
        seed=args.seed,
    )
    progress = args.progress
    if progress == "auto":
        progress = "tty" if out.isatty() else "lines"
    try:
        partitions = int(os.environ.get("REMEDIATOR_PARTITIONS", "8"))
    except ValueError:
        partitions = 8
    return config, RunOptions(
        broker=broker,
        active_topic=args.active_topic,
        passive_topic=args.passive_topic,
        rate=args.rate,
        count=args.count,
        duration=args.duration,
        partitions=partitions,
        progress=progress,
        progress_every=args.progress_every,
        wait_ready=args.wait_ready,
    )


def run(args: argparse.Namespace) -> int:
    """``remediator simulate``: 0 when done or stopped, 1 when the broker is unreachable,
    2 for bad options."""
    out = sys.stderr
    try:
        config, options = options_from(args, out)
    except ValueError as exc:
        out.write(f"remediator simulate: {exc}\n")
        return EXIT_USAGE
    try:
        return asyncio.run(simulate(FleetSimulator(config), options, out))
    except KeyboardInterrupt:  # a second Ctrl-C while finishing
        return EXIT_OK


class Progress:
    """One line updated in place on a terminal, or a line every ``every`` seconds."""

    def __init__(self, out: IO[str], mode: str, every: float, header: str) -> None:
        self.out, self.mode, self.every, self.header = out, mode, every, header
        self._last = time.monotonic()

    def update(self, sim: FleetSimulator, sent: int, elapsed: float, force: bool = False) -> None:
        now = time.monotonic()
        interval = 0.25 if self.mode == "tty" else self.every
        if self.mode == "none" or (not force and now - self._last < interval):
            return
        self._last = now
        line = f"{self.header}: {summary(sim, sent, elapsed)}"
        if self.mode == "tty":
            self.out.write("\r\x1b[2K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def finish(self, sim: FleetSimulator, sent: int, elapsed: float) -> None:
        if self.mode == "none":
            return
        if self.mode == "tty":
            self.out.write("\r\x1b[2K")
        self.out.write(f"{self.header}: done, {summary(sim, sent, elapsed)}\n")
        self.out.flush()


def summary(sim: FleetSimulator, sent: int, elapsed: float) -> str:
    """``1,204 sent (2.0/s): runs 1,150 passed, 21 failed, 30 skipped; alerts 40 firing,
    28 resolved; 25 problems, 1 burst``."""
    s = sim.stats
    problems = sum(n for k, n in s.items() if k.startswith("problem "))
    rate = sent / elapsed if elapsed > 0 else 0.0
    return (
        f"{sent:,} sent ({rate:.1f}/s): runs {s['run PASSED']:,} passed, "
        f"{s['run FAILED']:,} failed, {s['run SKIPPED']:,} skipped; alerts "
        f"{s['event FIRING']:,} firing, {s['event RESOLVED']:,} resolved; "
        f"{problems:,} problem(s), {s['burst']:,} burst(s)"
    )


async def simulate(sim: FleetSimulator, options: RunOptions, out: IO[str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    servers = [parse_server(entry.strip()) for entry in options.broker.split(",")]
    try:
        await ensure_topics(
            servers,
            [options.active_topic, options.passive_topic],
            partitions=options.partitions,
            replication_factor=1,
            timeout=options.connect_timeout,
        )
    except BrokerUnavailable as exc:
        out.write(f"remediator simulate: {exc}\n")
        return EXIT_START
    if options.wait_ready:
        if not await _wait_ready(options.wait_ready, stop):
            return EXIT_OK
        root = options.wait_ready.removesuffix("/healthz")
        out.write(f"remediator simulate: the worker is ready; dashboard at {root}/\n")
    config = sim.config
    header = f"simulate {config.clusters}x{config.instances}"
    out.write(
        f"{header}: {config.clusters} cluster(s) of {config.instances} instance(s) to "
        f"{options.broker} ({options.active_topic}, {options.passive_topic}), "
        + (f"{options.rate:g} signal(s)/s" if options.rate else "as fast as possible")
        + "\n"
    )
    out.flush()
    producer = AIOKafkaProducer(
        bootstrap_servers=servers, linger_ms=5, request_timeout_ms=15000, acks=1
    )
    await producer.start()
    progress = Progress(out, options.progress, options.progress_every, header)
    start = loop.time()
    sent = 0
    in_flight: list[asyncio.Future[object]] = []
    try:
        while not stop.is_set():
            if options.count is not None and sent >= options.count:
                break
            elapsed = loop.time() - start
            if options.duration is not None and elapsed >= options.duration:
                break
            if options.rate:
                wait = start + sent / options.rate - loop.time()
                if wait > 0:
                    await _sleep_unless(stop, wait)
                    continue
            signal_ = sim.next(datetime.now(UTC))
            topic = options.active_topic if signal_.kind == "run" else options.passive_topic
            in_flight.append(
                await producer.send(topic, orjson.dumps(signal_.payload), key=signal_.key.encode())
            )
            sent += 1
            if len(in_flight) >= WINDOW:
                await asyncio.gather(*in_flight)
                in_flight.clear()
            progress.update(sim, sent, loop.time() - start)
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    progress.finish(sim, sent, loop.time() - start)
    return EXIT_OK


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _wait_ready(url: str, stop: asyncio.Event) -> bool:
    """Poll a worker's ``/healthz`` until it says ready; False if stopped first."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        while not stop.is_set():
            try:
                answer = await client.get(url)
                if answer.status_code == 200 and answer.json().get("ready"):
                    return True
            except (httpx.HTTPError, ValueError):
                pass  # not up yet
            await _sleep_unless(stop, 0.5)
    return False


# --- started by `remediator worker --simulate` ------------------------------------------


class _Checker(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def check_extra(extra: str) -> list[str]:
    """The operator's options for a worker's simulator, split; ``ValueError`` if bad."""
    try:
        argv = shlex.split(extra)
    except ValueError as exc:
        raise ValueError(f"--simulate-args: {exc}") from None
    checker = _Checker(prog="simulate", add_help=False)
    add_arguments(checker)
    try:
        args = checker.parse_args(argv)
        options_from(args, sys.stderr)
    except ValueError as exc:
        raise ValueError(f"--simulate-args: {exc}") from None
    return argv


def child_argv(broker: str, health_url: str, extra: list[str]) -> list[str]:
    """The command line of a simulator feeding a worker; ``extra`` are the operator's own
    options, checked by :func:`check_extra` (they win over these defaults)."""
    # A line every 30 s: the worker's log shares the terminal, an in-place line would not.
    defaults = ["--progress", "lines", "--progress-every", "30"]
    return [
        sys.executable,
        "-m",
        "remediator.cli",
        "simulate",
        "--broker",
        broker,
        "--wait-ready",
        health_url,
        *defaults,
        *extra,
    ]


def start_child(argv: list[str]) -> subprocess.Popen[bytes]:
    """Start the simulator; the kernel stops it if the worker dies (Linux), and a Ctrl-C
    in the terminal reaches it as it reaches the worker."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )


def stop_child(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
