"""Messages on the internal topic ``{app_id}-cluster-inbox``, and where they go.

Everything about a cluster is applied by the one owner of the cluster's partition
(invariant 4, and the cluster-wide safety rules need the whole cluster in one place), so
the inbox is partitioned by ``cluster_id`` (:func:`cluster_partition`), whatever the key:

- health signals forwarded by the ingest agent when this worker does not own their
  cluster (when it does, they are applied at once, without the hop), keyed
  ``cluster/instance``;
- API commands from the web views: on one instance (``instance``), on the whole cluster
  (``cluster``: list, safety view, pause);
- the executor's step reports, keyed ``cluster/instance``;
- ``kick``: look at a cluster again (a worker that takes a cluster over asks for its
  queue to be re-applied, e.g. after the RUNNING limit was raised);
- ``unreadable``: an input that cannot be used, with its dead letter. It has no cluster:
  it goes to the partition of ``dead-letters:{topic}:{partition}`` (its input partition),
  whose owner remembers which offsets it dead-lettered, so that a record read again is
  not dead-lettered again (``handlers.on_unreadable``).

Two routes are partitioned otherwise: a CREATE with a client-specified id goes first to
the partition of ``claim:{remediation_id}``, whose owner reserves the id across all
clusters, then is forwarded to the cluster's partition; a ``fleet`` command (which
clusters exist) is sent to every partition, and each owner answers for its own.
"""

from __future__ import annotations

import base64
import enum
import functools

from pydantic import BaseModel, ConfigDict, model_validator

from remediator.domain import ids
from remediator.domain.commands import Command
from remediator.domain.execution import StepReport
from remediator.domain.models import (
    ActiveHealthCheckRun,
    DeadLetter,
    HealthSignal,
    PassiveHealthCheckEvent,
    StoredIdentifier,
    assemble,
)

from .outbox import key_partition


class Route(enum.StrEnum):
    INSTANCE = "instance"
    CLAIM = "claim"
    CLUSTER = "cluster"
    FLEET = "fleet"  # sent to every partition; each owner answers for its own clusters


class Kick(BaseModel):
    """Re-apply a cluster's queue and limits (no change of its own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster_id: StoredIdentifier


class Unreadable(BaseModel):
    """An input that cannot be used: its dead letter, and its key as it came (base64)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    letter: DeadLetter
    key: str | None = None

    @property
    def raw_key(self) -> bytes | None:
        return None if self.key is None else base64.b64decode(self.key)

    @classmethod
    def of(cls, letter: DeadLetter, key: bytes | None) -> Unreadable:
        return cls(letter=letter, key=None if key is None else base64.b64encode(key).decode())


class InboxMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    active_run: ActiveHealthCheckRun | None = None
    passive_event: PassiveHealthCheckEvent | None = None
    command: Command | None = None
    report: StepReport | None = None
    kick: Kick | None = None
    unreadable: Unreadable | None = None
    route: Route = Route.INSTANCE

    @model_validator(mode="after")
    def _exactly_one(self) -> InboxMessage:
        items = (
            self.active_run,
            self.passive_event,
            self.command,
            self.report,
            self.kick,
            self.unreadable,
        )
        if sum(item is not None for item in items) != 1:
            raise ValueError("an inbox message carries exactly one item")
        return self

    @classmethod
    def of_signal(cls, signal: HealthSignal) -> InboxMessage:
        # The signal was just validated and the message has exactly one item by
        # construction: no second validation (one per input signal, on the hot path).
        field = "active_run" if isinstance(signal, ActiveHealthCheckRun) else "passive_event"
        return assemble(cls, {**_EMPTY, field: signal}, {field})

    @property
    def signal(self) -> HealthSignal | None:
        return self.active_run or self.passive_event

    @property
    def cluster_id(self) -> str:
        """The cluster this message is about (every message but an unreadable input's
        is about one; that one says ``""``)."""
        if self.unreadable is not None:
            return ""
        item = self.active_run or self.passive_event or self.command or self.report or self.kick
        assert item is not None  # noqa: S101 - guaranteed by _exactly_one
        return item.cluster_id


#: Every field of an InboxMessage at its default (see of_signal).
_EMPTY: dict[str, object] = dict(InboxMessage.model_construct().__dict__)


@functools.lru_cache(maxsize=65536)
def cluster_partition(cluster_id: str, partitions: int) -> int:
    """The inbox (and table) partition of everything about ``cluster_id``."""
    # Cached: murmur2 is pure Python, and a fleet has few clusters and many signals.
    return key_partition(cluster_id.encode(), partitions)


def claim_key(remediation_id: str) -> str:
    return f"claim:{remediation_id}"


def dead_letter_key(topic: str, partition: int) -> str:
    """Where the offsets dead-lettered from one input partition are remembered (the
    claims table, partitioned by key like the inbox message that carries them)."""
    return f"dead-letters:{topic}:{partition}"


def command_key(command: Command, route: Route) -> str:
    if route is Route.CLAIM:
        return claim_key(command.remediation_id or command.command_id)
    if route is Route.CLUSTER:
        return command.cluster_id
    if route is Route.FLEET:
        return "fleet"
    return ids.instance_key(command.cluster_id, command.instance_id)


def command_partition(command: Command, route: Route, partitions: int) -> int:
    if route is Route.CLAIM:
        return key_partition(command_key(command, route).encode(), partitions)
    return cluster_partition(command.cluster_id, partitions)
