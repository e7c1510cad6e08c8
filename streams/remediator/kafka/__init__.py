"""Kafka plumbing: Faust's transport and consumer as patched here, aiokafka clients, brokers.

The one place to review on a Faust or aiokafka upgrade. Checked against the versions in
``requirements.lock``: faust-streaming 0.15.3 (pyproject: ``>=0.15.3,<0.16``),
mode-streaming 0.7.1, aiokafka 0.14.0 (pyproject: ``>=0.11,<0.15``, capped below the next
minor because of the private attributes below). Each item names the behaviour replaced or
patched, the private names it relies on, and the tests that prove it.

In this package:

- :mod:`.transport` (Faust's aiokafka driver subclassed: ``AIOKafkaConsumerThread``,
  ``Consumer``, ``Transport``):

  - fetch wait: ``_create_worker_consumer`` sets aiokafka's private
    ``consumer._fetch_max_wait_ms`` (Faust hard-codes 1500 ms; Tansu answers only when the
    wait is over). No test of its own: every integration test's timing relies on it.
  - committed records only: the same hook sets ``consumer._isolation_level =
    "read_committed"``. Test: ``tests/integration/test_on_apache_kafka.py::
    test_signals_written_in_transactions_count_once_committed_and_commits_reach_the_end``.
  - true end offsets: ``_highwaters`` overridden, checked against the last record batch
    (:class:`.transport.EndOffsets`). Tests: ``tests/integration/test_transport.py``,
    ``test_on_apache_kafka.py::test_list_offsets_answers_the_true_end_and_the_end_check_keeps_it``.
  - what the fetcher skipped: ``_fetch_records`` overridden, reading aiokafka's
    ``consumer._subscription.subscription.assignment`` before and after each fetch.
    Tests: the transactions test above, ``tests/unit/test_commit_offsets.py::
    test_what_the_fetcher_moved_past_without_a_record_is_skipped``.
  - ``Consumer.wait_first`` replaced while the flow runs (no race per message against a
    suspension: a quarter of the CPU). Covered by every pipeline integration test and
    ``tests/integration/test_rebalance.py``.

- :mod:`.offsets` (:class:`~.offsets.SafeOffsets`, mixed into Faust's consumer): replaces
  ``Consumer._new_offset`` (the commit rule), extends ``perform_seek``, and replaces
  ``Consumer._drain_messages`` (Faust's fetch loop, copied and changed: every record
  delivered, only true gaps counted). Uses Faust's private ``_acked``, ``_acked_index``,
  ``_gap``, ``_committed_offset``, ``_n_acked``, ``_commit_every``, ``_thread``,
  ``_add_gap`` and mode's ``Service._stopped``. Tests: ``tests/unit/test_commit_offsets.py``
  (runs Faust's own ``_new_offset`` beside ours),
  ``tests/integration/test_crash.py::test_records_fetched_before_a_seek_back_are_delivered_not_dropped``.

- :mod:`.seeks` (:class:`~.seeks.SeekingApp`, the app's base class): re-seeks after every
  rebalance (Faust's ``perform_seek`` relies on aiokafka's ``seek_to_committed``, which
  does not move a partition committed at 0 or never) and when a partition stalls; reads
  Faust's private ``consumer._committed_offset``, seeks with ``consumer.seek_wait`` (in the
  consumer's thread). Tests: ``tests/integration/test_crash.py::
  test_a_stalled_partition_is_re_seeked_and_its_records_processed`` and
  ``::test_seeks_racing_the_fetcher_do_not_crash_the_worker``,
  ``tests/integration/test_rebalance.py::test_signals_sent_during_a_takeover_are_not_delayed``.

- :mod:`.direct`: the worker's own topics bypass Faust's conductor and streams (fed by the
  fetch loop of :mod:`.offsets`), repeating the streams' skip rule (``generation_id``,
  ``app.flow_control``) and acknowledging with ``consumer.ack``. Tests: every pipeline
  integration test, ``tests/integration/test_rebalance.py``.

- :mod:`.metadata`: aiokafka's private ``consumer._client.fetch_all_metadata()`` (no
  public call answers every topic on Apache Kafka). Tests: ``tests/integration/
  test_on_apache_kafka.py``, ``tests/integration/test_pipeline.py::
  test_local_table_files_ahead_of_their_changelogs_are_discarded_at_start``.

- :mod:`.codec`: the orjson codec registered with ``faust.serializers.codecs`` (its
  ``_dumps``/``_loads`` are the codec API's hooks). Covered by every worker test.

- :mod:`.admin`, :mod:`.security`, :mod:`.local`, :mod:`.embedded`, :mod:`.topictools`:
  aiokafka's public clients, Apache Kafka and the embedded Tansu broker; no private API.

Elsewhere in the package (review these too):

- ``app.py``: ``TableManager.on_start`` replaces Faust's (no second of sleep; calls the
  private ``_update_channels``); ``RemediatorApp`` overrides ``_on_agent_error`` (a crashed
  agent stops the worker, ``pipeline/supervision.py``) and ``_on_partitions_revoked``.
  Tests: ``tests/integration/test_crash.py::
  test_an_agent_that_crashes_stops_the_worker_and_the_restart_loses_nothing``,
  ``tests/integration/test_rebalance.py``.
- ``cli.py``: the worker class overrides mode's ``Worker._sentinel_task`` (no second of
  sleep at stop). Covered by ``tests/integration/test_cli.py``.
- ``pipeline/processor.py``: sends through aiokafka's producer under Faust's,
  ``app.producer._producer`` (``pipeline/outbox.py``). Tests:
  ``tests/integration/test_bounded_outputs.py``.
- ``pipeline/store.py`` and ``pipeline/rocks.py``: Faust's table stores read directly
  (``_db_for_partition``, ``_dbs``, ``data``, ``set_persisted_offset``); the RocksDB store
  subclassed and registered in ``faust.stores.STORES.aliases``; aiokafka's
  ``consumer._client.fetch_all_metadata()``. Tests: ``tests/unit/test_rocks.py``,
  ``tests/integration/test_pipeline.py`` (the rocksdict restarts).
- ``metrics.py``: consumer lag from Faust's private ``consumer._committed_offset``. Tests:
  ``tests/unit/test_metrics.py::test_consumer_lag_is_highwater_minus_committed_for_the_input_topics``,
  ``tests/integration/test_metrics.py::test_consumer_lag_of_every_owned_input_partition_drains_to_zero``.
"""
