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
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import IO

import httpx
import orjson

from remediator.kafka.admin import BrokerUnavailable, TopicSpec, ensure_topics
from remediator.kafka.embedded import _die_with_parent
from remediator.simulation.fleet.generator import FleetSimulator
from remediator.simulation.fleet.options import RunOptions, options_from

EXIT_OK, EXIT_START, EXIT_USAGE = 0, 1, 2
#: Messages in flight before the producer waits for their acknowledgements.
WINDOW = 500


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
    try:
        await ensure_topics(
            options.connection,
            [
                TopicSpec(options.active_topic, options.partitions),
                TopicSpec(options.passive_topic, options.partitions),
            ],
            replication_factor=1,
            timeout=options.connect_timeout,
        )
    except BrokerUnavailable as exc:
        out.write(f"remediator simulate: {exc}\n")
        return EXIT_START
    if options.wait_ready and not await _wait_ready(
        options.wait_ready, stop, verify=options.wait_ready_verify
    ):
        return EXIT_OK
    config = sim.config
    header = f"simulate {config.clusters}x{config.instances}"
    if options.progress != "none":
        out.write(
            f"{header}: {config.clusters} cluster(s) of {config.instances} instance(s) to "
            f"{options.broker} ({options.active_topic}, {options.passive_topic}), "
            + (f"{options.rate:g} signal(s)/s" if options.rate else "as fast as possible")
            + "\n"
        )
        out.flush()
    progress = Progress(out, options.progress, options.progress_every, header)
    start = loop.time()
    sent = await _produce(sim, options, stop, progress)
    progress.finish(sim, sent, loop.time() - start)
    return EXIT_OK


async def _produce(
    sim: FleetSimulator, options: RunOptions, stop: asyncio.Event, progress: Progress
) -> int:
    """Send the fleet's signals at the asked pace until told to stop, or the count or
    the duration is reached; how many were sent."""
    loop = asyncio.get_running_loop()
    producer = options.connection.producer(linger_ms=5, request_timeout_ms=15000, acks=1)
    await producer.start()
    start = loop.time()
    sent = 0
    in_flight: list[asyncio.Future[object]] = []
    try:
        while not stop.is_set():
            elapsed = loop.time() - start
            if (options.count is not None and sent >= options.count) or (
                options.duration is not None and elapsed >= options.duration
            ):
                break
            if options.rate and (wait := start + sent / options.rate - loop.time()) > 0:
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
    return sent


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _wait_ready(url: str, stop: asyncio.Event, *, verify: bool = True) -> bool:
    """Poll a worker's ``/healthz`` until it says ready; False if stopped first."""
    async with httpx.AsyncClient(timeout=2.0, verify=verify) as client:
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
