"""RocksDB table stores with one memory budget for the whole worker.

The cold tables (``archive``: closed remediations, ``decisions``: why each signal did
what it did, up to 50 each per instance) grow with the fleet's history and are read
only when a signal is appended to them or an operator asks (``explain``, listings of
closed remediations). In the ``memory`` store they were the part of the worker's RSS
that kept growing at fleet scale (README "PERFORMANCE"); they live in RocksDB on local
disk instead, whatever ``REMEDIATOR_TABLE_STORE`` says (that setting is about the hot
tables, ``state`` and ``claims``).

Faust's own rocksdb store opens one database per table partition, each with its own
64 MiB write buffers (up to 3) and its own 2 GiB block cache: with 2 tables of 8
partitions, gigabytes of potential memory, which a growing history would fill. Every
database opened by :class:`BoundedRocksDBStore` instead shares one block cache and one
write buffer manager whose memtables are charged to that cache, so RocksDB's memory
stays near ``REMEDIATOR_ROCKSDB_MEMORY_MB`` however many partitions and tables the
worker holds (memtables may pass their half of it by a memtable or two while flushes
run: measured 6.5 MiB for a 4 MiB share under the bench's load); index and filter
blocks are kept in the same cache. What does not fit is read from the files (the OS
page cache, which is not the worker's RSS).

Everything else is Faust's store: one database per partition under
``REMEDIATOR_DATA_DIR``, the offset of the last changelog record applied kept in each
(so a restart reads only the changelog's tail), recovery from the changelog.

Local files outlive the changelogs they copy when a broker loses its topics (the embedded
broker keeps them in memory only; a topic deleted and created again): a database then
claims an offset the new changelog does not reach, and Faust would either keep its stale
values (an empty changelog) or refuse to start (ConsistencyError). :func:`discard_stale`,
run before the worker starts, removes such partitions' files: they are rebuilt from the
changelog like a memory store.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import faust
import rocksdict
from faust import stores
from faust.stores import rocksdb as faust_rocksdb

from remediator.kafka.security import Connection

log = logging.getLogger(__name__)

#: The URL scheme of :class:`BoundedRocksDBStore`.
SCHEME = "remediator-rocksdb"
#: The app-wide store URL (``faust.App(store=...)``).
STORE_URL = f"{SCHEME}://"


def table_store_url(table: str) -> str:
    """The store URL of one table (``app.Table(..., store=...)``).

    Not ``STORE_URL``: a URL without host or path is false to yarl, and Faust then
    silently takes the app's store instead (``self._store or self.app.conf.store``), so
    a table given ``rocksdb://`` alone ends up in memory. The path is the table's name,
    which is what Faust's store names the files after anyway.
    """
    return f"{SCHEME}:{table}"


#: The table option (``app.Table(..., options=...)``) holding the budget, in bytes.
BUDGET_OPTION = "memory_budget"

#: Share of the budget the memtables may take (the rest: data, index and filter blocks).
MEMTABLE_SHARE = 0.5
#: One memtable of one database at most (a flush makes an SST file about this large).
MAX_WRITE_BUFFER = 4 * 1024 * 1024
#: Open SST files per database (their readers' metadata is outside the cache).
MAX_OPEN_FILES = 64


class Budget:
    """The block cache and write buffer manager shared by every database of one budget."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.cache = rocksdict.Cache(size)
        self.memtables = min(max(int(size * MEMTABLE_SHARE), 1024 * 1024), size)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            self.memtables, False, self.cache
        )

    @property
    def write_buffer_size(self) -> int:
        """One memtable's size: a quarter of the memtables' share, at most 4 MiB, so that
        the manager flushes before any one database could take it all."""
        return max(min(self.memtables // 4, MAX_WRITE_BUFFER), 256 * 1024)


_budgets: dict[int, Budget] = {}
_lock = threading.Lock()


def budget(size: int) -> Budget:
    """The process-wide :class:`Budget` of ``size`` bytes (one per distinct size)."""
    with _lock:
        found = _budgets.get(size)
        if found is None:
            found = _budgets[size] = Budget(size)
        return found


class BoundedOptions(faust_rocksdb.RocksDBOptions):
    """Faust's options object, opening databases that draw on one :class:`Budget`."""

    def __init__(self, shared: Budget) -> None:
        super().__init__(
            max_open_files=MAX_OPEN_FILES,
            write_buffer_size=shared.write_buffer_size,
            max_write_buffer_number=2,
            target_file_size_base=MAX_WRITE_BUFFER * 4,
            block_cache_size=shared.size,
            use_rocksdict=True,
        )
        self.budget = shared

    def open(self, path: Path, *, read_only: bool = False) -> rocksdict.Rdict:
        db = rocksdict.Rdict(
            str(path),
            options=self.as_options(),
            access_type=rocksdict.AccessType.read_write(),
        )
        db.set_read_options(rocksdict.ReadOptions())
        return db

    def as_options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files or MAX_OPEN_FILES)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(self.budget.write_buffers)
        options.set_compression_type(rocksdict.DBCompressionType.lz4())
        # RocksDB's own info log: a few small files, not one per restart for ever.
        options.set_keep_log_file_num(2)
        options.set_max_log_file_size(1024 * 1024)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(self.budget.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_bloom_filter(10, False)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


class BoundedRocksDBStore(faust_rocksdb.Store):
    """Faust's RocksDB store (rocksdict driver) with :class:`BoundedOptions`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = dict(kwargs.pop("options", None) or {})
        size = int(options.pop(BUDGET_OPTION, DEFAULT_BUDGET))
        super().__init__(*args, options={**options, "driver": "rocksdict"}, **kwargs)
        self.rocksdb_options = BoundedOptions(budget(size))


# Faust's logger ("opening partition ..." at every assignment is framework chatter, which
# logs.py demotes by the logger's name); mode gives a subclass its module's logger.
BoundedRocksDBStore.logger = faust_rocksdb.Store.logger


#: The budget when a table does not give one (the worker's comes from its settings).
DEFAULT_BUDGET = 8 * 1024 * 1024


@dataclass(frozen=True)
class LocalPartition:
    """One table partition's RocksDB files, and the changelog offset they claim."""

    table: str
    changelog: str
    partition: int
    path: Path
    #: The offset of the last changelog record applied (None: none recorded).
    offset: int | None


def local_partitions(app: faust.App) -> list[LocalPartition]:
    """The RocksDB partitions of ``app``'s tables that exist on local disk."""
    found = []
    for table in app.tables.values():
        store = table.data
        if not isinstance(store, faust_rocksdb.Store):
            continue
        changelog = table.changelog_topic.get_topic_name()
        for partition in range(table.partitions or app.conf.topic_partitions):
            path = store.partition_path(partition)
            if path.is_dir():
                found.append(
                    LocalPartition(table.name, changelog, partition, path, persisted_offset(path))
                )
    return found


def persisted_offset(path: Path) -> int | None:
    """The changelog offset Faust recorded in the database at ``path`` (read-only)."""
    db = rocksdict.Rdict(
        str(path),
        options=rocksdict.Options(raw_mode=True),
        access_type=rocksdict.AccessType.read_only(),
    )
    try:
        raw = db.get(faust_rocksdb.Store.offset_key)
    finally:
        db.close()
    return int(raw) if raw is not None else None


def stale(
    partitions: Iterable[LocalPartition], ends: Mapping[tuple[str, int], int]
) -> list[LocalPartition]:
    """The partitions whose files claim an offset their changelog does not have: at or
    past its end (``ends``: the offset after the last record; a changelog missing from
    ``ends`` does not exist, and will be created empty)."""
    return [
        p
        for p in partitions
        if p.offset is not None and p.offset >= ends.get((p.changelog, p.partition), 0)
    ]


async def changelog_ends(
    connection: Connection, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """True end offsets of the changelog partitions that exist."""
    from aiokafka import TopicPartition

    from remediator.kafka.transport import EndOffsets

    consumer = connection.consumer(group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        # Not consumer.partitions_for_topic: on Apache Kafka it knows only the topics
        # the consumer subscribed to, so every changelog looked missing and every
        # restart threw its local files away (kafka/metadata.py).
        cluster = await consumer._client.fetch_all_metadata()  # aiokafka: no public call
        wanted = [
            TopicPartition(topic, partition)
            for topic, partition in partitions
            if partition in (cluster.partitions_for_topic(topic) or ())
        ]
        ends = await consumer.end_offsets(wanted) if wanted else {}
    finally:
        await consumer.stop()
    checker = EndOffsets(connection)
    try:
        checked = await checker.check(ends)
    finally:
        await checker.close()
    return {(tp.topic, tp.partition): end for tp, end in checked.items()}


async def discard_stale(app: faust.App, connection: Connection, timeout: float) -> None:
    """Remove the local RocksDB partitions that are ahead of their changelogs (see the
    module docstring); a broker that does not answer in ``timeout`` seconds leaves them
    (Faust's own check then applies)."""
    found = [p for p in local_partitions(app) if p.offset is not None]
    if not found:
        return
    started = time.perf_counter()
    try:
        ends = await asyncio.wait_for(
            changelog_ends(connection, {(p.changelog, p.partition) for p in found}), timeout
        )
    except Exception as exc:  # noqa: BLE001 - never stop the start for this check
        log.warning("could not check the local table files against the changelogs: %s", exc)
        return
    log.debug(
        "%d local table partition(s) checked against their changelogs in %.2fs",
        len(found),
        time.perf_counter() - started,
    )
    for part in stale(found, ends):
        log.warning(
            "table %s partition %d: the local RocksDB files are at changelog offset %d, "
            "but %s[%d] ends at %d (the broker lost the topic, or it was created again): "
            "removed, rebuilt from the changelog",
            part.table,
            part.partition,
            part.offset,
            part.changelog,
            part.partition,
            ends.get((part.changelog, part.partition), 0),
        )
        shutil.rmtree(part.path)


def claim_datadir(data_dir: Path, app_id: str) -> tuple[Path, IO[bytes]]:
    """The directory of this worker's local tables: ``data_dir/app_id`` unless another
    running worker holds it, then ``data_dir/app_id@2``, ``@3``...; with the open lock
    file that holds it (an ``flock``, released however the process ends: keep it open).

    RocksDB lets one process at a time open a database, and the cold tables are always
    in RocksDB: two workers of one app id on the same data dir (two terminals, tests)
    would otherwise wait on each other's partition locks after a rebalance (Faust gives
    up after 30 s and the worker stops). A worker started again alone gets the first
    directory back, with its files.
    """
    slot = 1
    while True:
        directory = data_dir / (app_id if slot == 1 else f"{app_id}@{slot}")
        directory.mkdir(parents=True, exist_ok=True)
        lock = (directory / "worker.lock").open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            slot += 1
            continue
        return directory, lock


def register() -> None:
    """Make :data:`STORE_URL` known to Faust (idempotent)."""
    stores.STORES.aliases.setdefault(SCHEME, f"{__name__}:BoundedRocksDBStore")


register()
