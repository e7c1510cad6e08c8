"""CPU per signal: what a subject spends on each input, measured in CPU time, not wall time.

    python -m tests.bench.cpu worker steady 60000            # on Tansu
    python -m tests.bench.cpu faust steady 60000 --broker kafka
    python -m tests.bench.cpu worker worst 20000 --root /path/to/another/checkout

``make bench`` gives the published figures (signals/s on an idle machine, ratios to the
raw loop and to the bare Faust agent of the same run). This is the tool for the work in
between: the CPU seconds (all threads) the subject uses from ready to "lag drained", per
message, which holds its value when other work shares the machine. Used to measure each
step of the 0.4 tuning (README PERFORMANCE); ``--root`` runs another checkout's worker
(its own ``.venv``) against the same input, for a before/after in one session.

Subjects: ``worker`` (``remediator worker``, the default policy, 8 partitions) or
``faust`` (``tests/bench/faust_loop.py``, the bare agent). Kinds: ``steady`` (a 10 k
instance fleet warmed up first, untimed, then the steady mix) or ``worst`` (every signal
a new failing instance, clusters of 50-500).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from remediator.kafka.embedded import free_port
from tests.brokers import KINDS, start_broker
from tests.faults.kafka import Producer, wait_drained

from . import kafka as bench_kafka
from .workload import ACTIVE, Fleet, FleetSpec, Message, SteadyMix, steady, storm, warm_up

HERE = Path(__file__).resolve().parents[2]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        fields = Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def workload(kind: str, count: int) -> tuple[list[Message], list[Message]]:
    """(untimed warm-up, timed messages)."""
    if kind == "steady":
        fleet = Fleet.build(FleetSpec(instances=10_000))
        return warm_up(fleet), list(steady(fleet, count, SteadyMix()))
    return [], storm(FleetSpec(instances=count))


async def measure(args: argparse.Namespace, work: Path) -> dict[str, object]:
    broker = start_broker(args.broker, work / "broker")
    try:
        tag = uuid.uuid4().hex[:6]
        active, passive, sink = f"active-{tag}", f"passive-{tag}", f"sink-{tag}"
        await bench_kafka.create_topics(broker.address, [active, passive, sink], 8)
        warm, timed = workload(args.kind, args.count)
        group, port = f"cpu-{tag}", free_port()
        python = str(Path(args.root) / ".venv/bin/python")
        if args.subject == "worker":
            env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
            env |= {
                "REMEDIATOR_BROKER": broker.url,
                "REMEDIATOR_APP_ID": group,
                "REMEDIATOR_TOPIC_ACTIVE_RUNS": active,
                "REMEDIATOR_TOPIC_PASSIVE_EVENTS": passive,
                "REMEDIATOR_WEB_PORT": str(port),
                "REMEDIATOR_DATA_DIR": str(work / "data"),
                "REMEDIATOR_PARTITIONS": "8",
                "REMEDIATOR_COMMIT_INTERVAL_SECONDS": "0.2",
                "REMEDIATOR_LOG_LEVEL": "warning",
            }
            argv = [python, "-m", "remediator.cli", "worker"]
        else:  # the bare agent reads one topic: everything goes there, warm-up included
            env = dict(os.environ)
            argv = [python, str(HERE / "tests/bench/faust_loop.py"), broker.address, active]
            argv += [sink, group, "0.2", str(port)]
            warm, timed = [], warm + timed
        log = work / "subject.log"
        with log.open("w") as out:
            subject = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=args.root
            )
        try:
            inputs = (active, passive)
            return await _drain(
                args, subject, log, port, broker.address, group, inputs, warm, timed
            )
        finally:
            subject.terminate()
            subject.wait()
    finally:
        broker.stop()


async def _drain(
    args: argparse.Namespace,
    subject: subprocess.Popen[bytes],
    log: Path,
    port: int,
    bootstrap: str,
    group: str,
    inputs: tuple[str, str],
    warm: list[Message],
    timed: list[Message],
) -> dict[str, object]:
    producer = Producer(bootstrap)
    await producer.start()

    def topic(message: Message) -> str:
        if args.subject != "worker":
            return inputs[0]
        return inputs[0] if message.kind == ACTIVE else inputs[1]

    await asyncio.to_thread(_wait_ready, args.subject, port, log)
    if warm:
        await producer.send_many([(topic(m), m.value, m.key) for m in warm])
        await wait_drained(bootstrap, group, dict(producer.ends), 300)
    cpu_before, started = cpu_seconds(subject.pid), time.monotonic()
    for start in range(0, len(timed), 4000):
        chunk = timed[start : start + 4000]
        await producer.send_many([(topic(m), m.value, m.key) for m in chunk])
    lag = await wait_drained(bootstrap, group, dict(producer.ends), 600)
    cpu = cpu_seconds(subject.pid) - cpu_before
    wall = time.monotonic() - started
    await producer.stop()
    return {
        "subject": args.subject,
        "kind": args.kind,
        "messages": len(timed),
        "lag_left": lag,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_message": round(1e6 * cpu / len(timed), 1),
        "wall_s": round(wall, 1),
    }


def _wait_ready(subject: str, port: int, log: Path) -> None:
    for _ in range(1200):
        if subject != "worker" and "ready" in log.read_text():
            return
        if subject == "worker":
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"the subject never got ready:\n{log.read_text()[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.cpu", description=__doc__)
    parser.add_argument("subject", choices=("worker", "faust"))
    parser.add_argument("kind", choices=("steady", "worst"))
    parser.add_argument("count", type=int)
    parser.add_argument("--broker", choices=KINDS, default="tansu")
    parser.add_argument("--root", default=str(HERE), help="checkout whose .venv runs it")
    args = parser.parse_args(argv)
    work = Path(f"/tmp/remediator-cpu-{uuid.uuid4().hex[:6]}")
    work.mkdir()
    result = asyncio.run(measure(args, work))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
