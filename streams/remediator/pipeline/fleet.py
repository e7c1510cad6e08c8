"""The owned part of the fleet, decoded in memory: clusters, their instances, their counts.

The tables are the source of truth (memory is rebuilt from them); this is their decoded image
for the partitions this worker owns, so that a decision costs neither a parse nor a
scan. Each :class:`ClusterModel` keeps the cluster's :class:`ClusterRecord` and its
instances' hot records, and *derives* the counts that admission and the execution slots
need (unhealthy instances, RUNNING and queued remediations, recent admissions, the
known and unhealthy instances of each failure domain), updated on every
:meth:`ClusterModel.put` in O(1) or O(log n): the cost of a signal does not grow with the
size of its cluster.

Only the state owner (``pipeline/processor.py``) changes it, and always ahead of what is
persisted: a model is rebuilt from the tables whenever partitions move.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel

from remediator.domain import expiry, slots, topology, verification
from remediator.domain.models import Remediation, RemediationTrigger
from remediator.domain.safety import BlockReason, ClusterRecord, ClusterView, budget_used
from remediator.domain.state import InstanceState

_V = TypeVar("_V")


class _Stale:
    """A cache to compute again."""


_STALE = _Stale()


def _unhealthy(state: InstanceState | None) -> bool:
    """An open automated remediation: counts against the blast radius."""
    return (
        state is not None
        and state.open is not None
        and state.open.remediation.trigger is RemediationTrigger.AUTOMATED
    )


def _open_record(state: InstanceState | None) -> Remediation | None:
    return None if state is None or state.open is None else state.open.remediation


@dataclass
class ClusterModel:
    cluster_id: str
    record: ClusterRecord
    instances: dict[str, InstanceState] = field(default_factory=dict)
    unhealthy: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    #: Instances whose automated remediation waits for approval (it may expire) -> its id.
    awaiting: dict[str, str] = field(default_factory=dict)
    #: Instances whose last SUCCEEDED remediation waits to be verified -> the deadline.
    verifying: dict[str, datetime] = field(default_factory=dict)
    #: Instance -> its PENDING remediation's place in the queue (see domain.slots).
    queued: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    #: Instance -> its place in the admission queue (see domain.queueing).
    waiting: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    #: Those of them waiting for room in the cluster, not only in their failure domain:
    #: a new proposal waits behind these.
    waiting_for_cluster: set[str] = field(default_factory=set)
    #: Event times of automated admissions, sorted (the hourly budget).
    admissions: list[datetime] = field(default_factory=list)
    #: Newest event time seen in the cluster (the clock of its safety view).
    latest: datetime | None = None
    #: Failure domain ("rack=r12") -> instances in it / unhealthy ones (zeros dropped).
    domain_known: dict[str, int] = field(default_factory=dict)
    domain_unhealthy: dict[str, int] = field(default_factory=dict)
    #: Caches of what settling asks after every change, cleared when their source
    #: changes: a settle costs O(1) however many recommendations wait (profiled: scanning
    #: every waiting one per signal was a tenth of the steady state's CPU).
    _expiry_due: datetime | _Stale | None = field(default=_STALE, repr=False)
    _verify_due: datetime | _Stale | None = field(default=_STALE, repr=False)
    _waiting_order: list[str] | None = field(default=None, repr=False)

    def get(self, instance_id: str) -> InstanceState | None:
        return self.instances.get(instance_id)

    def put(self, state: InstanceState) -> None:
        """Replace an instance's hot record and update the derived counts."""
        share_fields_sets(state)
        instance = state.instance_id
        old = self.instances.get(instance)
        self.instances[instance] = state
        was_unhealthy = instance in self.unhealthy
        _toggle(self.unhealthy, instance, _unhealthy(state))
        old_domain = old.domain if old is not None else {}
        is_unhealthy = instance in self.unhealthy
        if (state.domain or old_domain) and (
            state.domain != old_domain or is_unhealthy != was_unhealthy
        ):
            self._count_domains(old_domain, was_unhealthy, -1)
            self._count_domains(state.domain, is_unhealthy, +1)
        current = _open_record(state)
        _toggle(self.running, instance, slots.holds_slot(current))
        awaiting = current.id if current and expiry.awaiting_approval(state) else None
        if _set(self.awaiting, instance, awaiting):
            self._expiry_due = _STALE
        note = state.verification
        deadline = note.deadline if note is not None and verification.pending(state) else None
        if _set(self.verifying, instance, deadline):
            self._verify_due = _STALE
        if current is not None and slots.waiting(current):
            self.queued[instance] = slots.queue_key(current)
        else:
            self.queued.pop(instance, None)
        place = (state.waiting.since, instance) if state.waiting is not None else None
        if _set(self.waiting, instance, place):
            self._waiting_order = None
        _toggle(
            self.waiting_for_cluster,
            instance,
            state.waiting is not None and state.waiting.blocked != BlockReason.DOMAIN.value,
        )
        if old is None or old.admitted != state.admitted:
            for at in old.admitted if old is not None else ():
                index = bisect.bisect_left(self.admissions, at)
                if index < len(self.admissions) and self.admissions[index] == at:
                    del self.admissions[index]
            for at in state.admitted:
                bisect.insort(self.admissions, at)
        if state.watermark is not None and (self.latest is None or state.watermark > self.latest):
            self.latest = state.watermark

    def _count_domains(self, domain: dict[str, str], unhealthy: bool, step: int) -> None:
        for name in topology.names(domain):
            _add(self.domain_known, name, step)
            if unhealthy:
                _add(self.domain_unhealthy, name, step)

    def view(self, asking: str | None = None) -> ClusterView:
        """The cluster as admission sees it; ``asking`` (an instance maybe seen for the
        first time right now) counts as known."""
        known = len(self.instances) + (asking is not None and asking not in self.instances)
        current = self.instances.get(asking) if asking is not None else None
        asking_domains = topology.names(current.domain) if current and current.domain else ()
        return ClusterView(
            record=self.record,
            known=known,
            unhealthy=len(self.unhealthy),
            admissions=self.admissions,
            latest=self.latest,
            waiting=len(self.waiting_for_cluster)
            - (asking is not None and asking in self.waiting_for_cluster),
            domain_known=self.domain_known,
            domain_unhealthy=self.domain_unhealthy,
            asking_domains=asking_domains,
        )

    def budget_used(self) -> int:
        return 0 if self.latest is None else budget_used(self.admissions, self.latest)

    def next_waiting(self) -> list[str]:
        """Instances whose refused proposal waits for room, first in line first."""
        if self._waiting_order is None:
            self._waiting_order = sorted(self.waiting, key=self.waiting.__getitem__)
        return self._waiting_order

    def expiry_due(self, deadline: Callable[[str], datetime | None]) -> datetime | None:
        """The earliest approval deadline of the waiting recommendations (``deadline``
        of an instance id), or None; computed again only after one of them changed."""
        if isinstance(self._expiry_due, _Stale):
            deadlines = [d for d in map(deadline, self.awaiting) if d is not None]
            self._expiry_due = min(deadlines, default=None)
        return self._expiry_due

    def verify_due(self) -> datetime | None:
        """The earliest deadline of the pending verifications, or None."""
        if isinstance(self._verify_due, _Stale):
            self._verify_due = min(self.verifying.values(), default=None)
        return self._verify_due

    def place(self, instance_id: str) -> tuple[int, int] | None:
        """The instance's place in the admission queue (1 = next) and the queue's length."""
        if instance_id not in self.waiting:
            return None
        mine = self.waiting[instance_id]
        ahead = sum(1 for key in self.waiting.values() if key < mine)
        return ahead + 1, len(self.waiting)

    def next_queued(self) -> list[str]:
        """Instances whose PENDING remediation waits for a slot, first in line first."""
        return sorted(self.queued, key=self.queued.__getitem__)


#: One set per distinct combination of field names (a few dozen at most), by content.
_SHARED_SETS: dict[frozenset[str], set[str]] = {}
_SHARED_IDS: set[int] = set()


def share_fields_sets(model: BaseModel) -> None:
    """Make ``model`` and the models in it use one shared ``__pydantic_fields_set__`` per
    distinct set of field names: the fleet image's largest overhead, otherwise.

    Pydantic gives every model object its own set of the names of the fields it was
    given: 216 bytes for up to 4 names, 728 up to 18, 2,264 beyond, per object. In the
    decoded fleet (10 k instances: their records, remembered ids, open and waiting
    remediations, signals, linked alerts) those sets were 40 % of the image's memory,
    growing with every waiting proposal (measured: 18 of 46 MiB). The set only says which
    fields were given (``model_fields_set``, ``exclude_unset``): a few dozen distinct
    ones exist. Sharing them is safe for frozen models, which never add to it (a change
    is a ``model_copy``, which copies the set first); the others keep their own.

    Objects already sharing are not walked again, so a ``put`` costs the few models a
    change created, and a load the whole record once.
    """
    stack: list[BaseModel] = [model]
    models, others = _MODEL_TYPES, _OTHER_TYPES
    while stack:
        obj = stack.pop()
        fields_set = obj.__pydantic_fields_set__
        if id(fields_set) in _SHARED_IDS:
            continue  # shared already, and so is everything in it (see above)
        if obj.model_config.get("frozen"):
            key = frozenset(fields_set)
            shared = _SHARED_SETS.get(key)
            if shared is None:
                shared = _SHARED_SETS[key] = set(key)
                _SHARED_IDS.add(id(shared))
            object.__setattr__(obj, "__pydantic_fields_set__", shared)
        for value in obj.__dict__.values():
            cls = type(value)
            if cls in others:
                continue
            if cls is list or cls is tuple or cls is dict:
                for item in value.values() if cls is dict else value:
                    kind = type(item)
                    if kind in models or (kind not in others and _is_model(kind)):
                        stack.append(item)
            elif cls in models or _is_model(cls):
                stack.append(value)


#: The types of field values seen by :func:`share_fields_sets`: models, and anything
#: else but lists, tuples and dicts (a set look-up is much cheaper than isinstance()
#: through pydantic's metaclass, for every field of every model walked).
_MODEL_TYPES: set[type] = set()
_OTHER_TYPES: set[type] = {str, int, float, bool, bytes, type(None)}


def _is_model(cls: type) -> bool:
    """Whether values of ``cls`` are models (remembered in one of the sets above)."""
    model = issubclass(cls, BaseModel)
    (_MODEL_TYPES if model else _OTHER_TYPES).add(cls)
    return model


def _add(counts: dict[str, int], name: str, step: int) -> None:
    count = counts.get(name, 0) + step
    if count:
        counts[name] = count
    else:
        del counts[name]


def _set(members: dict[str, _V], member: str, value: _V | None) -> bool:
    """Put ``member``'s value (None: remove it); whether anything changed."""
    if value is None:
        return members.pop(member, None) is not None
    if members.get(member) == value:
        return False
    members[member] = value
    return True


def _toggle(members: set[str], member: str, present: bool) -> None:
    if present:
        members.add(member)
    else:
        members.discard(member)


@dataclass
class Fleet:
    """The clusters of the owned partitions, by partition."""

    partitions: dict[int, dict[str, ClusterModel]] = field(default_factory=dict)

    def cluster(self, partition: int, cluster_id: str) -> ClusterModel:
        clusters = self.partitions.setdefault(partition, {})
        model = clusters.get(cluster_id)
        if model is None:
            model = clusters[cluster_id] = ClusterModel(
                cluster_id, ClusterRecord(cluster_id=cluster_id)
            )
        return model

    def find(self, partition: int, cluster_id: str) -> ClusterModel | None:
        return self.partitions.get(partition, {}).get(cluster_id)

    def clusters(self) -> Iterator[ClusterModel]:
        for clusters in self.partitions.values():
            yield from clusters.values()
