"""Failpoints: named places where a test makes the worker die as if killed with -9.

The crash-safety tests (``tests/integration/test_crash.py``) need the worker to die at
exact points of its write path, which a kill from outside can only hit by luck. Arm them
with ``REMEDIATOR_TEST_FAILPOINTS=name[,name...]``; unset (always, in production) each
check is one set lookup.

Points (a batch is the inputs the state owner applies together):
- ``instances.after_publish``: a batch's transitions acknowledged, its state not written.
- ``batch.partial_write``: the first half of a batch's state writes acknowledged, the rest
  not sent.
- ``instances.after_state_write``: a batch's state written and flushed to the changelogs,
  its input offsets not yet committed.
- ``instances.after_start``: a batch that started a remediation (RUNNING, steps planned)
  is durable; the executor may not have begun.
- ``instances.after_step_started`` / ``instances.after_step_done`` /
  ``instances.after_step_failed``: a batch with a step report applied is durable; the
  report's input offset not committed.
- ``executor.after_post``: the control plane accepted a step; nothing reported yet.

``ingest.raise`` is not a kill: the ingest agent raises after reading a batch, as a bug
would, to show that the worker then stops (exit status 1) rather than running on without
its agent (``pipeline/supervision.py``).

``consumer.reseek_storm`` is not a kill either: after each rebalance the worker re-seeks
its source partitions every 5 ms for 8 s, so that any race between a seek and the
consumer's fetcher shows at once (it did: a KeyError in aiokafka's Fetcher crashed the
worker, issue 12).

Not a crash, ``consumer.drop_fetched`` reproduces the stall the stall check exists for:
for 5 s after each rebalance the records fetched from the agents' source topics are
dropped undelivered (as Faust's stream queues drop what they hold at a rebalance), with
lag left behind and nothing committed over them (``kafka/offsets.py``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable

ENV_VAR = "REMEDIATOR_TEST_FAILPOINTS"

log = logging.getLogger(__name__)

_armed: frozenset[str] = frozenset(
    name.strip() for name in os.environ.get(ENV_VAR, "").split(",") if name.strip()
)


async def hit(name: str, before: Callable[[], Awaitable[None]] | None = None) -> None:
    """If ``name`` is armed: run ``before`` (e.g. a producer flush), then SIGKILL ourselves."""
    if name not in _armed:
        return
    if before is not None:
        await before()
    log.critical("failpoint %s: killing the worker with SIGKILL", name)
    os.kill(os.getpid(), signal.SIGKILL)


def armed(name: str) -> bool:
    """Whether the failpoint ``name`` is armed (for failpoints that do not kill)."""
    return name in _armed
