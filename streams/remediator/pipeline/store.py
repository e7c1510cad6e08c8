"""The tables, read and written directly: a partition-explicit view of one Faust table.

Faust's own ``table[key] = value`` sends each change through its producer machinery
(about a quarter of a millisecond per write here) and takes the changelog partition from
the event being processed. The state owner (``pipeline/processor.py``) needs neither: it
writes many values per batch, for a partition it knows (everything about a cluster lives
in the cluster's partition), sometimes while processing an input from another topic. So
it writes the local store itself and produces the changelog record with the batched
sender; Faust's recovery reads those changelog records back exactly as if Faust had
written them (keys and values are raw bytes).

Two kinds of store are supported: ``memory://`` (the hot tables' default: rebuilt from
the changelog at start) and RocksDB (``pipeline/rocks.py``, Faust's rocksdb store with
the ``rocksdict`` driver: the cold tables always, the hot ones with
``REMEDIATOR_TABLE_STORE=rocksdict``; data survives a restart on local disk and only the
changelog's tail is read back). For RocksDB the offset of the last changelog record
written is kept with the data, as Faust does, so a restart knows where to resume reading.

The local store is written only once the changelog has the record (:meth:`record`, sent,
then :meth:`apply`), never ahead of it: a RocksDB value ahead of its changelog would
outlive a kill -9, the replay would then find the same entry already there and not write
it again, and the changelog (what any other worker recovers from) would never get it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import faust
from faust.types import TP

from .outbox import Record

#: Keys Faust itself keeps in a RocksDB partition (its persisted offset): not ours.
_FAUST_KEYS = b"__faust"


class TableStore:
    """One table: local reads and writes by partition, changelog records to send."""

    def __init__(
        self, table: faust.types.TableT[bytes, bytes], partition_of: Callable[[bytes], int]
    ):
        self.table = table
        self.partition_of = partition_of
        self.name = table.name

    @property
    def changelog(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    @property
    def _store(self) -> Any:
        return self.table.data

    def _rocks(self) -> bool:
        return hasattr(self._store, "_db_for_partition")

    def get(self, key: bytes) -> bytes | None:
        store = self._store
        if self._rocks():
            value: bytes | None = store._db_for_partition(self.partition_of(key)).get(key)
            return value
        return store.data.get(key)  # type: ignore[no-any-return]

    def record(self, key: bytes, value: bytes | None) -> Record:
        """The changelog record of writing ``value`` (None deletes) at ``key``; the local
        store is not touched until :meth:`apply` (once the record is in the broker)."""
        return Record(self.changelog, key, value, self.partition_of(key))

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Write ``value`` (None deletes) to the local store."""
        store = self._store
        if self._rocks():
            db = self._assigned_db(self.partition_of(key))
            if db is None:
                return
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
        elif value is None:
            store.data.pop(key, None)
            store._key_partition.pop(key, None)
        else:
            store.data[key] = value
            store._key_partition[key] = self.partition_of(key)

    def persisted(self, partition: int, offset: int) -> None:
        """The changelog record at ``offset`` is in the broker (RocksDB keeps the offset)."""
        if self._rocks() and self._assigned_db(partition) is not None:
            self._store.set_persisted_offset(TP(self.changelog, partition), offset)

    def _assigned_db(self, partition: int) -> Any:
        """The partition's RocksDB if Faust has it open (it opens those assigned here and
        closes those revoked); None otherwise.

        A batch's records are acknowledged after a rebalance may have revoked their
        partition: opening its database again then would hold its lock for good (a
        worker on the same data dir could never take the partition over), and there is
        nothing to keep: the changelog has the record, and whoever owns the partition
        next reads it from there (the offset kept here did not move either).
        """
        return self._store._dbs.get(partition)

    def items(self, partitions: Iterable[int]) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of the given partitions."""
        wanted = set(partitions)
        store = self._store
        if self._rocks():
            for partition in sorted(wanted):
                for key, value in store._db_for_partition(partition).items():
                    if not key.startswith(_FAUST_KEYS) and value is not None:
                        yield key, value
            return
        for key, value in list(store.data.items()):
            if value is not None and self.partition_of(key) in wanted:
                yield key, value
