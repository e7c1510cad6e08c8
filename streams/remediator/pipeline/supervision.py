"""What happens when an agent raises: the worker stops, it does not run on without it.

Faust's default supervisor restarts a crashed agent in place, on a new stream iterator,
while the records the old one had taken but not finished are neither committed nor
delivered again: they would be skipped until the next rebalance. A bug that escapes the
per-record handling (bad input never gets this far: it is dead-lettered) is better met
by stopping the whole worker with one clear line; the orchestrator restarts it and it
resumes from its committed offsets, losing nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import AgentT

log = logging.getLogger("remediator.pipeline")


async def crash_worker(agent: AgentT[Any], exc: BaseException) -> None:
    """``on_error`` of every agent: log the crash and stop the worker (exit code 1)."""
    await stop_worker(agent.app, agent.name, exc)


async def stop_worker(app: Any, name: str, exc: BaseException) -> None:
    """Log that ``name`` (an agent, or a route of ``kafka/direct.py``) crashed, and stop
    the worker (exit code 1)."""
    log.critical(
        "agent %s crashed (%s: %s); stopping the worker: restart it and it resumes from "
        "its committed offsets",
        name,
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
    # Crashing the app crashes the services above it up to the worker, which stops
    # everything in order and exits with status 1.
    await app.crash(exc)
