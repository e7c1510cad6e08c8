"""The instance agent: the single writer of every instance's remediations (invariant 4).

For each message on the inbox (keyed by instance) it loads the instance's state from the
``instances`` table, applies the pure :func:`decide`, publishes the resulting transitions
and waits for the broker's ack, and only then writes the new state.

Why this order (DESIGN.md, the dedup trap): the state value holds both "this signal was
seen" and "this is what it did". If the worker dies after publishing but before the state
lands, the input is replayed and the same transitions are re-published with the same
``transition_id`` and ``sequence`` (ids are deterministic). If it dies after the state
lands, the transitions were already acknowledged. A signal can never be marked seen
without its effect published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import faust
from faust.types import StreamT
from pydantic import ValidationError

from remediator import failpoints
from remediator.domain.correlate import CorrelationConfig, InstanceState, Outcome, decide
from remediator.domain.models import dump_json

from .messages import InboxMessage
from .publish import publish

log = logging.getLogger(__name__)


def register_instances(
    app: faust.App,
    *,
    inbox: faust.TopicT,
    transitions: faust.TopicT,
    table: faust.types.TableT[bytes, bytes],
    config: CorrelationConfig,
    clock: Callable[[], datetime],
) -> faust.types.AgentT[bytes]:
    async def instances(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            key: bytes = event.message.key
            try:
                message = InboxMessage.model_validate_json(event.value)
            except ValidationError as exc:
                # Only this service writes the inbox: a bad message is a bug or a foreign
                # writer. Skip it loudly rather than wedge the partition.
                log.error(
                    "skipping unreadable inbox message at offset %d: %s", event.message.offset, exc
                )
                continue
            raw_state = table.get(key)
            state = None if raw_state is None else InstanceState.model_validate_json(raw_state)
            decision = decide(state, message.signal, clock(), config)
            if decision.transitions:
                await publish(transitions, [(key, dump_json(t)) for t in decision.transitions])
                await failpoints.hit("instances.after_publish")
            if decision.state is not state:
                table[key] = dump_json(decision.state)
                if decision.transitions:
                    await failpoints.hit("instances.after_state_write", app.producer.flush)
            if decision.outcome in (Outcome.OPENED, Outcome.ATTACHED):
                transition = decision.transitions[-1]
                log.info(
                    "%s remediation %s on %s (%s)",
                    decision.outcome.value.lower(),
                    transition.remediation_id,
                    key.decode(),
                    transition.reason,
                )

    return app.agent(inbox, name="instances")(instances)
