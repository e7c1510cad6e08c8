"""The commit rule of the notifier: a partition's offset moves only past records done.

A record is *done* when every notification it makes (one per target that wants it) has
been delivered or given up (its dead letter acknowledged). Records are fetched in offset
order but finish out of order (targets run side by side, one may be down), so per
partition the offsets fetched and not done are kept, and the offset committed is the
lowest of them, or one past the last fetched when none is left: never past a record not
done. A crash then redelivers at most what was in flight (at least once; receivers drop
repeats by id), and loses nothing.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass(eq=False)
class PartitionProgress:
    """One partition's records fetched and not yet done."""

    #: One past the last offset fetched (where the partition started, before any).
    next_offset: int
    #: Offset -> notifications of that record not yet done, in offset order.
    pending: dict[int, int] = field(default_factory=dict)
    #: The offset last committed (or found committed).
    committed: int | None = None

    def fetched(self, offset: int, notifications: int) -> None:
        """A record fetched, with the number of notifications it makes (0: done now)."""
        if notifications > 0:
            self.pending[offset] = notifications
        self.next_offset = max(self.next_offset, offset + 1)

    def done(self, offset: int) -> None:
        """One notification of the record at ``offset`` was delivered or given up."""
        left = self.pending.get(offset)
        if left is None:
            return
        if left > 1:
            self.pending[offset] = left - 1
        else:
            del self.pending[offset]

    def committable(self) -> int:
        """The offset that may be committed: the lowest not done, or the next one."""
        # Offsets go in in increasing order and a dict keeps insertion order: the first
        # key left is the lowest.
        return next(iter(self.pending), self.next_offset)


class Progress(Generic[P]):
    """Every assigned partition's :class:`PartitionProgress`."""

    def __init__(self) -> None:
        self._partitions: dict[P, PartitionProgress] = {}

    def assign(self, partition: P, position: int, committed: int | None) -> PartitionProgress:
        """Start tracking ``partition`` from ``position`` (what is committed, or where
        reading starts)."""
        progress = PartitionProgress(next_offset=position, committed=committed)
        self._partitions[partition] = progress
        return progress

    def revoke(self, partition: P) -> None:
        """Stop tracking: notifications still in flight for it finish, uncounted (the
        partition's next owner delivers them again: at least once)."""
        self._partitions.pop(partition, None)

    def get(self, partition: P) -> PartitionProgress | None:
        return self._partitions.get(partition)

    def pending(self) -> int:
        """Records fetched and not done, over every partition."""
        return sum(len(p.pending) for p in self._partitions.values())

    def to_commit(self) -> dict[P, int]:
        """The partitions whose committable offset moved past the last commit."""
        moved: dict[P, int] = {}
        for partition, progress in self._partitions.items():
            offset = progress.committable()
            if progress.committed is None or offset > progress.committed:
                moved[partition] = offset
        return moved

    def committed(self, offsets: dict[P, int]) -> None:
        """These offsets were committed."""
        for partition, offset in offsets.items():
            progress = self._partitions.get(partition)
            if progress is not None:
                progress.committed = offset
