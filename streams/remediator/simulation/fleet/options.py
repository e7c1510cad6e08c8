"""``remediator simulate``'s options: the fleet, the run, and a worker's own simulator.

Kept apart from :mod:`.runner` (aiokafka, httpx) so that building the command line stays cheap.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, NoReturn

if TYPE_CHECKING:  # imported when used: every command builds this parser
    from remediator.kafka.security import Connection
    from remediator.simulation.fleet.generator import FleetConfig

DEFAULT_BROKER = "kafka://127.0.0.1:9092"


@dataclass(frozen=True)
class RunOptions:
    broker: str  # as given, for the progress line
    connection: Connection  # the servers with the REMEDIATOR_BROKER_* security settings
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
    wait_ready_verify: bool = True  # verify an https /healthz's certificate


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
    run.add_argument(
        "--wait-ready-no-verify",
        action="store_true",
        help="with an https --wait-ready URL: accept the worker's certificate unverified "
        "(`remediator worker --simulate` does, for its own worker on loopback; the wait "
        "sends no credentials and only times the first signal)",
    )


def options_from(args: argparse.Namespace, out: IO[str]) -> tuple[FleetConfig, RunOptions]:
    """The fleet and the run, or ``ValueError`` naming the option that is wrong."""
    from remediator.kafka.topictools import ToolError, connection
    from remediator.simulation.fleet.generator import FleetConfig

    if args.rate < 0:
        raise ValueError("--rate must not be negative")
    if args.count is not None and args.count < 0:
        raise ValueError("--count must not be negative")
    if args.duration is not None and args.duration <= 0:
        raise ValueError("--duration must be positive")
    broker = args.broker or os.environ.get("REMEDIATOR_BROKER") or DEFAULT_BROKER
    try:
        reach = connection(broker)  # with the REMEDIATOR_BROKER_* security settings
    except ToolError as exc:
        raise ValueError(str(exc)) from None
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
        connection=reach,
        active_topic=args.active_topic,
        passive_topic=args.passive_topic,
        rate=args.rate,
        count=args.count,
        duration=args.duration,
        partitions=partitions,
        progress=progress,
        progress_every=args.progress_every,
        wait_ready=args.wait_ready,
        wait_ready_verify=not args.wait_ready_no_verify,
    )


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


def child_argv(
    broker: str,
    health_url: str,
    extra: list[str],
    *,
    json_logs: bool = False,
    verify_health: bool = True,
) -> list[str]:
    """The command line of a simulator feeding a worker; ``extra`` are the operator's own
    options, checked by :func:`check_extra` (they win over these defaults)."""
    # A line every 30 s: the worker's log shares the terminal, an in-place line would not;
    # none at all among JSON log lines, which must stay one object per line.
    defaults = ["--progress", "none" if json_logs else "lines", "--progress-every", "30"]
    return [
        sys.executable,
        "-m",
        "remediator.cli",
        "simulate",
        "--broker",
        broker,
        "--wait-ready",
        health_url,
        *([] if verify_health else ["--wait-ready-no-verify"]),
        *defaults,
        *extra,
    ]
