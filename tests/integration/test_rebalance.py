"""Two workers in one consumer group: partitions split, a rebalance and a dead worker
neither lose a signal nor open a second remediation (DESIGN.md invariants 1-3)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable

from tests.builders import run_payload
from tests.integration.conftest import Kafka, Names, WorkerProcess
from tests.integration.test_crash import assert_consistent


def notable(log: str) -> str:
    """Errors, warnings and group changes of a worker log, for a failure message."""
    keys = ("ERROR", "WARNING", "CRITICAL", "Joined group", "assigned partitions", "Ready")
    return "\n".join(line[:300] for line in log.splitlines() if any(k in line for k in keys))


async def produce_runs(kafka: Kafka, names: Names, runs: list[dict[str, object]]) -> None:
    for run in runs:
        await kafka.produce(names.active, run, key=str(run["instance_id"]).encode())


async def test_worker_joining_then_dying_mid_stream_keeps_one_remediation_per_instance(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    def batch(prefix: str, count: int) -> list[dict[str, object]]:
        return [run_payload(cluster_id="cl-r", instance_id=f"{prefix}-{n}") for n in range(count)]

    first, second, third = batch("a", 40), batch("b", 40), batch("c", 20)
    worker_a = start_worker(REMEDIATOR_LOG_LEVEL=os.environ.get("REBALANCE_LOG_LEVEL", "info"))
    await produce_runs(kafka, names, first)

    worker_b = start_worker(
        wait=False, REMEDIATOR_LOG_LEVEL=os.environ.get("REBALANCE_LOG_LEVEL", "info")
    )  # joins while A is busy: a rebalance
    await produce_runs(kafka, names, second + first[:10])
    await asyncio.to_thread(worker_b.wait_ready)
    split = (worker_a.log().count("opened remediation"), worker_b.log().count("opened remediation"))

    worker_a.kill()  # B must take over A's partitions, state included
    await produce_runs(kafka, names, third + second[:10])

    everything = first + second + third
    try:
        transitions = await kafka.read(
            names.transitions, at_least=len(everything), timeout=90.0, settle=5.0
        )
    except AssertionError:
        seen = {t["_key"] for t in await kafka.read(names.transitions, at_least=0, settle=1.0)}
        missing = sorted({f"cl-r/{r['instance_id']}" for r in everything} - seen)
        raise AssertionError(
            f"{len(missing)} instances never got a remediation: {missing[:20]}\n"
            f"--- worker A ---\n{notable(worker_a.log())}\n"
            f"--- worker B ---\n{notable(worker_b.log())}"
        ) from None

    assert_consistent(transitions)
    unique = {t["transition_id"]: t for t in transitions}.values()
    assert Counter(t["_key"] for t in unique) == Counter(
        f"cl-r/{run['instance_id']}" for run in everything
    )
    assert {t["sequence"] for t in unique} == {1}
    assert sum(split) > 0
    assert "opened remediation" in worker_b.log(), "the second worker never did any work"
