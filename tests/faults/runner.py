"""Runs the fault scenarios, prints the table, writes ``.faults/latest.json``.

    python -m tests.faults.runner            # everything (make test-faults)
    python -m tests.faults.runner --short    # the small form
    python -m tests.faults.runner --only kill-9,bad-input --seed 7
    python -m tests.faults.runner --broker kafka   # make test-faults BROKER=kafka

Exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from tests.brokers import KINDS, start_broker

from .api_abuse import api_abuse
from .bad_input import bad_input
from .checker import Outcome
from .scenarios import ScenarioFn, Suite, broker_cut, control_plane, disorder, kill_9, scale

SCENARIOS: dict[str, ScenarioFn] = {
    "kill-9": kill_9,
    "scale-out-kill": scale,
    "broker-cut": broker_cut,
    "control-plane": control_plane,
    "duplicates-late-disorder": disorder,
    "bad-input": bad_input,
    "api-abuse": api_abuse,
}
# kill-9 is left out of the short form until the loss it found is fixed (README,
# RELIABILITY: workers killed while starting lose signals); make test-faults runs it.
SHORT = ("kill-9", "duplicates-late-disorder", "bad-input", "api-abuse")
COLUMNS = (
    "scenario",
    "signals",
    "faults injected",
    "remediations expected / found",
    "duplicates",
    "losses",
    "dead letters",
    "result",
)


async def run_suite(
    names: list[str], short: bool, seed: int, root: Path, kind: str = "tansu"
) -> tuple[str, list[Outcome]]:
    """The scenarios' outcomes, and the broker they ran on (``kafka 4.1.1``)."""
    broker = start_broker(kind, root / "broker")
    print(f"faults: on {broker.name} at {broker.address}", file=sys.stderr, flush=True)
    try:
        suite = Suite(broker, root, random.Random(seed), short)
        outcomes = []
        for name in names:
            print(f"faults: {name} ...", file=sys.stderr, flush=True)
            outcome = await SCENARIOS[name](suite)
            print(
                f"faults: {name}: {'ok' if outcome.ok else 'FAILED'} in {outcome.seconds:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            outcomes.append(outcome)
        return broker.name, outcomes
    finally:
        broker.stop()


def row(o: Outcome) -> list[str]:
    faults = _summarize(o.faults)
    found = f"{o.expected} / {o.found}" if o.signals else "-"
    dead = (
        f"{o.dead_letters} / {o.dead_letters_expected} expected"
        if o.dead_letters_expected
        else str(o.dead_letters)
    )
    return [
        o.scenario,
        str(o.signals),
        faults,
        found,
        str(o.duplicates),
        str(o.losses),
        dead,
        "ok" if o.ok else "FAILED",
    ]


def _summarize(faults: list[str]) -> str:
    counts: dict[str, int] = {}
    for fault in faults:
        counts[fault] = counts.get(fault, 0) + 1
    return ", ".join(f"{f} x{n}" if n > 1 else f for f, n in counts.items())


def table(outcomes: list[Outcome]) -> str:
    """A Markdown table (also readable in a terminal)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(o)) + " |" for o in outcomes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    # The suite's own Kafka clients are cut with the workers' (broker-cut): their
    # reconnect errors are expected, and the checks say what matters.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(prog="python -m tests.faults.runner")
    parser.add_argument("--short", action="store_true", help="the small form (make test)")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--out", type=Path, default=Path(".faults/latest.json"))
    parser.add_argument("--keep", type=Path, help="keep worker logs and data here")
    parser.add_argument("--broker", choices=KINDS, default="tansu", help="%(default)s")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SHORT if args.short else SCENARIOS)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    started = time.monotonic()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        broker, outcomes = asyncio.run(
            run_suite(names, args.short, args.seed, args.keep, args.broker)
        )
    else:
        with tempfile.TemporaryDirectory(prefix="faults-") as root:
            broker, outcomes = asyncio.run(
                run_suite(names, args.short, args.seed, Path(root), args.broker)
            )
    print(table(outcomes))
    for o in outcomes:
        for line in o.failures:
            print(f"FAILED {o.scenario}: {line}")
        for line in o.notes:
            print(f"note {o.scenario}: {line}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "broker": broker,
        "seed": args.seed,
        "short": args.short,
        "seconds": round(time.monotonic() - started, 1),
        "ok": all(o.ok for o in outcomes),
        "scenarios": [o.as_dict() for o in outcomes],
    }
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(
        f"faults: {len(outcomes)} scenarios on {broker} in {report['seconds']} s, "
        f"seed {args.seed}, "
        f"written to {args.out}"
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
