"""The tables, read and written directly: a partition-explicit view of one Faust table.

Faust's own ``table[key] = value`` sends each change through its producer machinery
(about a quarter of a millisecond per write here) and takes the changelog partition from
the event being processed. The state owner (``pipeline/processor.py``) needs neither: it
writes many values per batch, for a partition it knows (everything about a cluster lives
in the cluster's partition), sometimes while processing an input from another topic. So
it writes the local store itself and produces the changelog record with the batched
sender; Faust's recovery reads those changelog records back exactly as if Faust had
written them (keys and values are raw bytes).

Two stores are supported: ``memory://`` (the default: state is rebuilt from the changelog
at start) and ``rocksdb://`` with the ``rocksdict`` driver (state survives a restart on
local disk; only the changelog's tail is read back). For RocksDB the offset of the last
changelog record written is kept with the data, as Faust does, so a restart knows where
to resume reading.
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

    def put(self, key: bytes, value: bytes | None) -> Record:
        """Write ``value`` (None deletes) to the local store; return its changelog record."""
        partition = self.partition_of(key)
        store = self._store
        if self._rocks():
            db = store._db_for_partition(partition)
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
            store._key_index[key] = partition
        elif value is None:
            store.data.pop(key, None)
            store._key_partition.pop(key, None)
        else:
            store.data[key] = value
            store._key_partition[key] = partition
        return Record(self.changelog, key, value, partition)

    def persisted(self, partition: int, offset: int) -> None:
        """The changelog record at ``offset`` is in the broker (RocksDB keeps the offset)."""
        if self._rocks():
            self._store.set_persisted_offset(TP(self.changelog, partition), offset)

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
