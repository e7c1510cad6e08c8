"""Where the tables live (pipeline/rocks.py): the cold ones (archive, decisions) in RocksDB
whatever REMEDIATOR_TABLE_STORE says, every RocksDB database drawing on one bounded
memory budget, and local files ahead of their changelogs found before Faust reads them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from faust.stores import memory

from remediator.app import create_app
from remediator.pipeline import rocks
from remediator.pipeline.store import TableStore
from remediator.settings import load_settings

MiB = 1024 * 1024


def app_for(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    settings = load_settings(
        {
            "REMEDIATOR_BROKER": "127.0.0.1:9",  # never connected to: nothing starts
            "REMEDIATOR_DATA_DIR": str(tmp_path),
            "REMEDIATOR_API_TOKENS": "ops=t",
            **env,
        }
    )
    return create_app(settings)


@pytest.mark.parametrize("hot", ["memory", "rocksdict"])
def test_the_cold_tables_are_in_rocksdb_on_one_bounded_budget_whatever_the_hot_store(
    tmp_path: Path, hot: str
) -> None:
    app = app_for(tmp_path, REMEDIATOR_TABLE_STORE=hot, REMEDIATOR_ROCKSDB_MEMORY_MB="24")
    tables = {name: table.data for name, table in app.tables.items()}
    cold = [tables["archive"], tables["decisions"]]
    in_rocksdb = cold if hot == "memory" else list(tables.values())
    if hot == "memory":
        # The hot records keep REMEDIATOR_TABLE_STORE's meaning.
        assert isinstance(tables["state"], memory.Store)
        assert isinstance(tables["claims"], memory.Store)
    budgets = set()
    for store in in_rocksdb:
        # Not Faust's plain rocksdb store: per database, 64 MiB write buffers x 3 and a
        # 2 GiB block cache of its own.
        assert isinstance(store, rocks.BoundedRocksDBStore)
        options = store.rocksdb_options
        assert isinstance(options, rocks.BoundedOptions)
        assert options.write_buffer_size <= 4 * MiB
        assert options.max_write_buffer_number == 2
        assert options.max_open_files == rocks.MAX_OPEN_FILES
        budgets.add(id(options.budget))
        assert options.budget.size == 24 * MiB
        # Under the data dir, named as Faust names them (a rocksdict hot store's files
        # from before are the same files).
        assert store.partition_path(3) == app.conf.tabledir / f"{store.table.name}-3.db"
        assert str(store.partition_path(3)).startswith(str(tmp_path))
    assert len(budgets) == 1  # one cache and one write buffer manager for all


def test_every_database_draws_on_the_one_budget(tmp_path: Path) -> None:
    budget = rocks.Budget(8 * MiB)
    assert budget.write_buffers.enabled()
    assert budget.write_buffers.get_buffer_size() == budget.memtables == 4 * MiB
    assert budget.write_buffer_size == MiB  # a quarter of the memtables' share
    options = rocks.BoundedOptions(budget)
    dbs = [options.open(tmp_path / f"t-{n}.db") for n in range(4)]
    value = os.urandom(16 * 1024)  # incompressible
    most = 0
    for n in range(4_000):  # 64 MiB in all: eight times the budget
        dbs[n % len(dbs)].put(f"key-{n}".encode(), value)
        most = max(most, budget.write_buffers.get_usage())
    # Each database holds at most its two memtables (one filling, one being flushed),
    # however much is written; the manager flushes the one written to once the
    # memtables' share is used (and, as they are charged to the cache, so does the cache).
    assert most <= len(dbs) * 2 * budget.write_buffer_size * 1.1
    for _ in range(50):
        if budget.write_buffers.get_usage() <= budget.memtables:
            break
        time.sleep(0.1)
    assert budget.write_buffers.get_usage() <= budget.memtables
    assert budget.cache.get_usage() >= budget.write_buffers.get_usage()  # charged to it
    for k, db in enumerate(dbs):
        assert db.get(f"key-{k}".encode()) == value  # the oldest: from a file
        db.close()
    assert len(list(tmp_path.glob("t-*.db/*.sst"))) >= len(dbs)  # flushed, not held


def test_local_files_at_or_past_their_changelogs_end_are_stale(tmp_path: Path) -> None:
    path = tmp_path / "archive-1.db"
    db = rocks.BoundedOptions(rocks.budget(4 * MiB)).open(path)
    db.put(b"c1/i1", b"closed")
    db.put(rocks.faust_rocksdb.Store.offset_key, b"41")
    db.close()
    assert rocks.persisted_offset(path) == 41

    part = rocks.LocalPartition("archive", "app-archive-changelog", 1, path, 41)
    topic = ("app-archive-changelog", 1)
    assert rocks.stale([part], {topic: 42}) == []  # record 41 is the changelog's last
    assert rocks.stale([part], {topic: 500}) == []  # the tail is read at start
    assert rocks.stale([part], {topic: 41}) == [part]  # a changelog that lost records
    assert rocks.stale([part], {topic: 0}) == [part]  # empty: a broker that lost it
    assert rocks.stale([part], {}) == [part]  # no such topic: Faust creates it empty
    unknown = rocks.LocalPartition("archive", "app-archive-changelog", 1, path, None)
    assert rocks.stale([unknown], {}) == []  # no offset: Faust reads it all anyway


def test_local_partitions_lists_the_rocksdb_partitions_on_disk(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    archive = app.tables["archive"]
    store = archive.data
    db = store.rocksdb_options.open(store.partition_path(2))
    db.put(store.offset_key, b"7")
    db.close()
    (found,) = rocks.local_partitions(app)
    assert found.table == "archive"
    assert found.changelog == archive.changelog_topic.get_topic_name()
    assert (found.partition, found.offset) == (2, 7)


def test_a_table_store_reads_and_writes_the_partition_of_its_key(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    faust_store = app.tables["decisions"].data
    faust_store._db_for_partition(5)  # assigned here (Faust opens it at the assignment)
    store = TableStore(app.tables["decisions"], lambda key: 5)
    record = store.record(b"c1/i1", b"line")
    assert (record.topic, record.partition) == (store.changelog, 5)
    assert store.get(b"c1/i1") is None  # a record is not a write
    store.apply(b"c1/i1", b"line")
    store.persisted(5, 12)
    assert store.get(b"c1/i1") == b"line"
    assert app.tables["decisions"].data.persisted_offset(record_tp(store, 5)) == 12
    assert list(store.items([5])) == [(b"c1/i1", b"line")]  # Faust's offset key is not ours
    store.apply(b"c1/i1", None)
    assert store.get(b"c1/i1") is None


def test_a_partition_revoked_meanwhile_is_not_opened_again_by_a_late_write(
    tmp_path: Path,
) -> None:
    """A batch acknowledged after a rebalance took its partition away: nothing to write
    here (the changelog has it), and reopening the database would keep its lock."""
    app = app_for(tmp_path)
    faust_store = app.tables["archive"].data
    faust_store._db_for_partition(2)
    store = TableStore(app.tables["archive"], lambda key: 2)
    store.apply(b"c1/i1", b"closed")
    store.persisted(2, 3)
    faust_store._dbs.pop(2)  # revoked: Faust closes it (revoke_partitions)
    store.apply(b"c1/i1", b"closed twice")
    store.persisted(2, 4)
    assert 2 not in faust_store._dbs
    reopened = faust_store._db_for_partition(2)  # assigned here again later
    assert reopened.get(b"c1/i1") == b"closed"
    assert reopened.get(faust_store.offset_key) == b"3"  # recovery reads on from there


def record_tp(store: TableStore, partition: int):  # type: ignore[no-untyped-def]
    from faust.types import TP

    return TP(store.changelog, partition)


def test_each_running_worker_claims_a_data_dir_of_its_own(tmp_path: Path) -> None:
    """RocksDB opens a database in one process at a time: two workers of one app id on
    one data dir would wait on each other's partition locks after a rebalance."""
    first, first_lock = rocks.claim_datadir(tmp_path, "app")
    second, second_lock = rocks.claim_datadir(tmp_path, "app")
    assert (first, second) == (tmp_path / "app", tmp_path / "app@2")
    first_lock.close()  # the first worker ends (however: the lock goes with the process)
    again, again_lock = rocks.claim_datadir(tmp_path, "app")
    assert again == tmp_path / "app"  # its files found again by the next one alone
    other, other_lock = rocks.claim_datadir(tmp_path, "other-app")
    assert other == tmp_path / "other-app"
    for lock in (second_lock, again_lock, other_lock):
        lock.close()
