"""Ten kinds of bad input, interleaved with a stream of good signals: every bad one must be
dead-lettered with a reason (at its own offset), every good one must have its effect."""

from __future__ import annotations

import asyncio
import itertools

import orjson
from aiokafka.errors import KafkaError

from tests.builders import run_payload

from .checker import Outcome
from .generator import fleet, stream
from .scenarios import Run, Suite, running

MB = 1024 * 1024


def bad_inputs(short: bool) -> list[tuple[str, bytes, int]]:
    """(kind, bytes, times). The poison message: JSON nested 100 000 deep, which a
    recursive parser cannot take; repeated 100 times."""
    huge = run_payload(message="x" * MB)  # schema-valid, just too large
    kinds = [
        ("not JSON", b"{this is not json", 1),
        ("non-UTF-8 bytes", b'{"run_id": "\xff\xfe\xfa"}', 1),
        ("JSON not an object", b"[1, 2, 3]", 1),
        ("missing required field", orjson.dumps({"cluster_id": "c", "instance_id": "i"}), 1),
        ("unknown enum value", orjson.dumps(run_payload(result="BROKEN")), 1),
        ("bad timestamp", orjson.dumps(run_payload(completed_at="yesterday")), 1),
        ("empty payload", b"", 1),
        ("1 MB schema-valid payload", orjson.dumps(huge), 1),
        ("10 MB payload", orjson.dumps(run_payload(message="y" * 10 * MB)), 1),
        ("poison: JSON nested 100 000 deep", b"[" * 100_000 + b"]" * 100_000, 10 if short else 100),
    ]
    if short:
        kinds = [k for k in kinds if not k[0].startswith("10 MB")]
    return kinds


async def bad_input(suite: Suite) -> Outcome:
    shape = fleet(
        f"cl-bad-{suite.rng.randrange(10**6)}", *((20, 20) if suite.short else (100, 100))
    )
    signals = stream(shape, suite.rng)
    async with running(suite, "bad-input") as run:
        await run.start_worker()
        good = iter(signals)
        for kind, value, times in bad_inputs(suite.short):
            for _ in range(times):
                topic = run.names.active if suite.rng.random() < 0.5 else run.names.passive
                await _send_bad(run, kind, topic, value)
                await run.flow(list(itertools.islice(good, 3)), 1000)
            run.outcome.notes.append(kind + (f" x{times}" if times > 1 else ""))
        await run.flow(list(good), 200)
        sent = len(run.expected.dead_letters)
        run.outcome.faults.append(
            f"{len(bad_inputs(suite.short))} kinds, {sent} messages (1 MB, 10 MB, non-UTF-8, "
            "poison x100, ...)"
            if not suite.short
            else f"{len(bad_inputs(True))} kinds, {sent} messages"
        )
        await run.finish()
    return run.outcome


async def _send_bad(run: Run, kind: str, topic: str, value: bytes) -> None:
    try:
        where = await run.producer.send(topic, value, key=b"bad")
    except KafkaError as exc:  # the broker's own limit: it never reaches the worker
        run.outcome.notes.append(f"{kind}: refused by the broker ({type(exc).__name__})")
        return
    run.expected.add_bad([where])
    await asyncio.sleep(0)
