"""The Faust application: :func:`create_app` builds everything from :class:`Settings`.

Topology (README "How it keeps its promises")::

    active-health-check-runs ───┐          ┌─► remediator-dead-letter
                                ├─ ingest ─┼─► (cluster owned here) ──────────┐
    passive-health-check-events ┘          └─► {app_id}-cluster-inbox ─ inbox ┤
                          API commands, step reports ──┘  ▲                   ▼
                                                          │             state owner
                                      executor ───────────┘  (reports)  │   │   │
                                         │  ▲  (RUNNING ones)  ◄────────┘   │   └─► tables
                                         ▼  │                               ▼  (changelogs)
                                compute control plane      remediation-transitions,
                                                           remediator-policy-events

Everything about a cluster lives in one partition (the inbox and every table are
partitioned by ``cluster_id``), so the agent that owns a partition is the only writer of
its clusters' state and decides their cluster-wide limits locally. The executor never
writes state: it reports on the inbox like everyone else.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from aiohttp import web
from faust.tables.manager import TableManager as FaustTableManager

from remediator import dashboard, failpoints
from remediator.api import openapi
from remediator.api.alertmanager import alertmanager_receiver
from remediator.api.audit import AuditTrail
from remediator.api.auth import Right
from remediator.api.errors import contract_errors
from remediator.api.views import Api
from remediator.domain.correlate import CorrelationConfig
from remediator.domain.policy import PolicyInForce
from remediator.kafka import codec
from remediator.kafka.admin import TopicSpec
from remediator.kafka.direct import DirectDelivery
from remediator.kafka.seeks import SeekingApp
from remediator.kafka.transport import transport_class
from remediator.metrics import Metrics
from remediator.notify import notifier_for
from remediator.pipeline import rocks
from remediator.pipeline.context import Tables
from remediator.pipeline.context import Topics as ProcessorTopics
from remediator.pipeline.controlplane import Backoff, ControlPlaneClient
from remediator.pipeline.executor import Executor
from remediator.pipeline.gateway import Gateway
from remediator.pipeline.ingest import register_ingest
from remediator.pipeline.instances import register_instances
from remediator.pipeline.messages import cluster_partition
from remediator.pipeline.outbox import Record, key_partition
from remediator.pipeline.processor import Processor
from remediator.pipeline.store import TableStore
from remediator.pipeline.supervision import crash_worker, stop_worker
from remediator.settings import Settings
from remediator.simulation.inprocess import SimulatedControlPlane, with_token

log = logging.getLogger(__name__)


MAX_REQUEST_BODY = 64 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Topics:
    active_runs: faust.TopicT
    passive_events: faust.TopicT
    inbox: faust.TopicT
    transitions: faust.TopicT
    dead_letters: faust.TopicT
    replies: faust.TopicT
    policy_events: faust.TopicT
    audit: faust.TopicT


def external_topic_names(settings: Settings) -> list[str]:
    """Topics shared with the outside world; the CLI creates the missing ones at start."""
    return [
        settings.topic_active_runs,
        settings.topic_passive_events,
        settings.topic_transitions,
        settings.topic_dead_letter,
        settings.topic_policy_events,
        settings.topic_audit,
    ]


#: The tables, each with a compacted changelog ``{app_id}-{name}-changelog``.
TABLES = ("state", "archive", "decisions", "claims")
#: How long replies to API commands are kept (only the asking worker reads them, at once).
REPLIES_RETENTION = timedelta(hours=1)


def internal_topics(settings: Settings) -> list[TopicSpec]:
    """The worker's own topics, created before Faust starts (as Faust would create them).

    Faust declares them itself once it runs, but its consumer may join the group first:
    on Apache Kafka a group formed before the new inbox was in the metadata, and the
    worker then owned no inbox partition for minutes while saying it was ready (seen
    about once in four starts of a fresh app id).
    """
    compacted = {"cleanup.policy": "compact"}
    return [
        TopicSpec(settings.inbox_topic, settings.partitions),
        # Faust's leader assignor's topic (one partition), read as the group forms.
        TopicSpec(f"{settings.app_id}-__assignor-__leader", 1),
        TopicSpec(
            settings.replies_topic,
            1,
            {"retention.ms": str(int(REPLIES_RETENTION.total_seconds() * 1000))},
        ),
        *(
            TopicSpec(f"{settings.app_id}-{table}-changelog", settings.partitions, compacted)
            for table in TABLES
        ),
    ]


#: The time a rebalance may take, the same for every worker of an app id (see create_app).
REBALANCE_TIMEOUT = 10.0


class TableManager(FaustTableManager):
    """Faust's table manager without its second of sleep at start.

    Faust waits a second before its first recovery so that tables an agent declares as it
    starts are registered; every table here is declared in :func:`create_app`, before the
    app starts. A second off every worker start (and off every test that starts one)."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class RemediatorApp(SeekingApp):
    """faust.App with fixes to its rebalance recovery, and a stall check (both in
    :class:`remediator.kafka.seeks.SeekingApp`).

    It also tells the executor when a rebalance starts (stop carrying out remediations:
    the instances may move) and the state owner when it starts (apply nothing more here)
    and ends (rebuild the image of the partitions now owned from the recovered tables,
    then resume the executor's work there).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.executor: Executor | None = None
        self.processor: Processor | None = None
        #: The worker's own topics' records, bypassing Faust's streams (kafka/direct.py).
        self.direct = DirectDelivery(self)
        self.inbox_topic_name = ""
        #: Failpoint consumer.drop_fetched: until when (loop time) fetched records drop.
        self.drop_fetched_until = 0.0

    async def _on_agent_error(self, agent: faust.types.AgentT[Any], exc: BaseException) -> None:
        # Faust's default restarts the agent in place; ours stops the worker (see
        # pipeline/supervision.py).
        await super()._on_agent_error(agent, exc)
        await crash_worker(agent, exc)

    async def _on_partitions_revoked(self, revoked: set[Any]) -> None:
        # Only the owner acts: the executor's tasks have stopped, not merely been told
        # to, before the partitions may be assigned to another worker (Faust awaits this
        # before the consumer rejoins its group).
        if self.executor is not None:
            await self.executor.stop_for_revocation()
        # The batch being applied finishes first, as Faust waits for unacknowledged
        # events (its state owner already applies nothing more of these partitions).
        await self.direct.idle()
        await super()._on_partitions_revoked(revoked)

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        if self.processor is not None:
            self.processor.on_rebalance_start()
        # May be called from the consumer's thread: hop to the app's loop.
        self.loop.call_soon_threadsafe(self.direct.discard)
        if self.executor is not None:
            self.loop.call_soon_threadsafe(self.executor.suspend)

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        if failpoints.armed("consumer.drop_fetched"):
            # Read by SafeOffsets.dropping (kafka/offsets.py) in the fetch loop.
            self.drop_fetched_until = self.loop.time() + 5.0
            log.critical("failpoint consumer.drop_fetched: dropping source records for 5 s")
        if self.processor is not None:
            self.processor.on_rebalance_end()
        self.schedule_reseeks()


def tune_gc() -> None:
    """Collect young objects less often (measured: about 15 % of the worker's CPU under load
    went to the collector, and its full passes showed as latency spikes).

    Every input makes a handful of short-lived objects; the default threshold (700) runs a
    young collection every hundred or so inputs, and the older generations, which hold the
    whole owned fleet's decoded state, are walked again and again. The fleet itself is
    moved out of the collector's sight once loaded (``gc.freeze`` in the state owner).
    """
    gc.set_threshold(50_000, 20, 100)


def create_app(
    settings: Settings, *, clock: Callable[[], datetime] = utcnow, datadir: Path | None = None
) -> faust.App:
    """Build the Faust app for ``settings``; the broker must be set (see ``cli``).

    ``datadir``: where its local table files go (``cli`` claims one per running worker,
    see :func:`remediator.pipeline.rocks.claim_datadir`); by default the app id's
    directory under ``REMEDIATOR_DATA_DIR``.
    """
    if not settings.bootstrap_servers:
        raise ValueError("create_app needs settings.broker; the CLI starts an embedded one")
    codec.register()
    tune_gc()
    metrics = Metrics(
        active_topic=settings.topic_active_runs,
        passive_topic=settings.topic_passive_events,
        app_id=settings.app_id,
    )
    trail = AuditTrail(
        worker=settings.app_id,
        clock=clock,
        timeout=settings.api_timeout_seconds,
        count=lambda result: metrics.audit_records(result).inc(),
    )
    app = RemediatorApp(
        settings.app_id,
        **_broker_options(settings),
        datadir=str(datadir or settings.data_dir / settings.app_id),
        # Metrics outermost: they see the status the client gets. The audit trail
        # inside the errors: it sees a view's ApiError as raised.
        **_web_options(settings, [metrics.middleware, contract_errors, trail.middleware]),
    )
    # Before anything touches app.transport (declaring a topic does).
    app.transport = transport_class(settings.fetch_max_wait_ms, settings.connection)(
        app.conf.broker_consumer, app
    )
    topics = _topics(app, settings)
    trail.topic = topics.audit
    app.inbox_topic_name = settings.inbox_topic
    loaded = settings.policy_in_force  # read once: the policy and its domains' mapping file
    executor, processor = _pipeline(app, settings, loaded, topics, metrics, clock)
    gateway = Gateway(
        app=app,
        inbox=topics.inbox,
        replies=topics.replies,
        connection=settings.connection,
        partitions=settings.partitions,
        timeout=settings.api_timeout_seconds,
    )
    app.add_dependency(gateway)  # started and stopped with the app
    trail.tell = gateway.tell  # API calls noted on their instance, for its timeline
    _background(app, settings)
    _notifications(app, settings, loaded, metrics, clock)
    _web(app, settings, loaded, topics, gateway, (executor, processor), metrics, clock)
    return app


def _broker_options(settings: Settings) -> dict[str, Any]:
    """Faust's settings for the broker, its topics and tables."""
    session_timeout = settings.session_timeout
    return {
        "broker": [f"kafka://{server}" for server in settings.bootstrap_servers],
        "store": _hot_store(settings),
        "autodiscover": False,
        "key_serializer": "raw",
        "value_serializer": codec.NAME,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        "TableManager": TableManager,
        # TLS and SASL (REMEDIATOR_BROKER_*), for Faust's consumer, producer and topic
        # creation; our own clients take them from settings.connection.
        "broker_credentials": settings.broker_security.faust_credentials(),
        "broker_session_timeout": session_timeout,
        # Heartbeats at most a second apart and one rebalance timeout for every worker,
        # whatever its session timeout: a worker with a long one still learns of a
        # rebalance at once and joins within the same window as the others (with
        # session/3 and session, workers of 3 s and 45 s rebalanced in a loop, each
        # owning partitions the other had taken: test_rebalance.py).
        "broker_heartbeat_interval": min(max(session_timeout / 3, 0.5), 1.0),
        "broker_rebalance_timeout": REBALANCE_TIMEOUT,
        "broker_request_timeout": max(session_timeout + 5, 40.0),
        "broker_commit_interval": settings.commit_interval_seconds,
        # Batches of a few hundred records per partition and request (transitions carry
        # the whole record): fewer, larger produce requests.
        "producer_max_batch_size": 256 * 1024,
        "producer_linger": 0.0,
        # At most one batch of records per poll. Unbounded (Faust's default), one poll
        # returned everything fetched (up to 1 MiB per partition, decoded at once) and
        # the direct routes queued several such polls: the whole backlog as Python
        # objects at once, which the allocator then kept (RSS +100 MiB after 100 k
        # signals, `make bench` memory).
        "broker_max_poll_records": settings.batch_max,
    }


def _web_options(settings: Settings, middlewares: list[Any]) -> dict[str, Any]:
    """Faust's settings for its web server: the API, dashboard and metrics."""
    return {
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        # HTTPS when REMEDIATOR_WEB_TLS_* are set: Faust's aiohttp driver hands this
        # context to its TCPSite (None: plain HTTP).
        "web_ssl_context": settings.web_ssl_context,
        "web_in_thread": False,
        "web_application_options": {
            "middlewares": middlewares,
            "client_max_size": MAX_REQUEST_BODY,
        },
        # Faust's own introspection pages (tables, router, stats) are unauthenticated.
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
    }


def _pipeline(
    app: RemediatorApp,
    settings: Settings,
    loaded: PolicyInForce,
    topics: Topics,
    metrics: Metrics,
    clock: Callable[[], datetime],
) -> tuple[Executor, Processor]:
    """The state owner, the executor it drives, and the routes that feed them."""
    client, simulated = _control_plane(settings, metrics)
    if simulated is not None:
        app.add_dependency(simulated)  # started before the executor calls it
    processor: Processor | None = None

    def deliver() -> Callable[[Sequence[Record]], Awaitable[object]]:
        assert processor is not None  # noqa: S101 - set below, before anything runs
        return processor.sender.deliver

    executor = Executor(
        inbox=settings.inbox_topic,
        partitions=settings.partitions,
        deliver=deliver,
        client=client,
        poll=Backoff(
            base=settings.poll_interval_seconds,
            cap=max(settings.poll_interval_max_seconds, settings.poll_interval_seconds),
            factor=1.5,
        ),
        step_timeout=timedelta(seconds=settings.step_timeout_seconds),
        clock=clock,
    )
    app.executor = executor
    app.add_dependency(executor)
    processor = Processor(
        app=app,
        tables=_tables(app, settings),
        topics=ProcessorTopics(
            transitions=settings.topic_transitions,
            policy_events=settings.topic_policy_events,
            replies=settings.replies_topic,
            inbox=settings.inbox_topic,
            dead_letters=settings.topic_dead_letter,
        ),
        config=CorrelationConfig(
            dedup_ttl=timedelta(seconds=settings.dedup_ttl_seconds),
            dedup_max_ids=settings.dedup_max_ids,
            policy=loaded.policy,
            domains=loaded.domains,
        ),
        max_running_per_cluster=settings.max_running_per_cluster,
        partitions=settings.partitions,
        executor=executor,
        clock=clock,
        metrics=metrics,
        max_output_bytes=settings.max_output_bytes,
    )
    app.processor = processor
    _routes(app, settings, topics, processor, clock)
    return executor, processor


def _routes(
    app: RemediatorApp,
    settings: Settings,
    topics: Topics,
    processor: Processor,
    clock: Callable[[], datetime],
) -> None:
    """The input topics and the inbox, delivered straight to the processor."""
    app.add_dependency(app.direct)
    register_ingest(
        app.direct,
        sources=[topics.active_runs, topics.passive_events],
        inbox=settings.inbox_topic,
        processor=processor,
        partitions=settings.partitions,
        clock=clock,
        batch_max=settings.batch_max,
        max_input_bytes=settings.max_input_bytes,
    )
    register_instances(
        app.direct,
        inbox=topics.inbox,
        processor=processor,
        clock=clock,
        batch_max=settings.batch_max,
    )


def _background(app: RemediatorApp, settings: Settings) -> None:
    """The stall check (a safety net: re-seek a stuck source partition) and the line
    that says when the worker serves."""
    app.watched_topics = frozenset(
        {settings.topic_active_runs, settings.topic_passive_events, settings.inbox_topic}
    )
    if settings.stall_seconds > 0:

        @app.timer(interval=max(settings.stall_seconds / 3, 1.0))  # type: ignore[untyped-decorator]
        async def stall_check() -> None:
            await app.check_stalls(settings.stall_seconds, app.watched_topics)

    @app.task  # type: ignore[untyped-decorator]
    async def announce() -> None:
        await _announce_readiness(app, settings)


def _notifications(
    app: RemediatorApp,
    settings: Settings,
    loaded: PolicyInForce,
    metrics: Metrics,
    clock: Callable[[], datetime],
) -> None:
    """The notifier (its own consumer group on the output topics), only when the policy
    has ``[[notify]]`` targets."""

    async def crashed(exc: BaseException) -> None:
        await stop_worker(app, "notifier", exc)

    notifier = notifier_for(settings, loaded.policy, counts=metrics, clock=clock, on_crash=crashed)
    if notifier is not None:
        app.add_dependency(notifier)


def _web(
    app: RemediatorApp,
    settings: Settings,
    loaded: PolicyInForce,
    topics: Topics,
    gateway: Gateway,
    parts: tuple[Executor, Processor],
    metrics: Metrics,
    clock: Callable[[], datetime],
) -> None:
    """The REST API, /metrics, the Alertmanager webhook and the dashboard."""
    executor, processor = parts
    api = Api(
        gateway=gateway,
        tokens=settings.tokens,
        clock=clock,
        unready=lambda: _unready_reason(app),
        owned=lambda: _owned_partitions(app, settings.inbox_topic),
        app_id=settings.app_id,
        openapi=openapi.document_bytes,
        executing=lambda: executor.running,
        policy=loaded,
    )
    web_app: web.Application = app.web.web_app  # type: ignore[attr-defined]  # aiohttp driver
    web_app.add_routes(api.routes())
    metrics.watch(
        clusters=processor.owned_clusters,
        consumer=lambda: app.consumer,
        input_topics=app.watched_topics,
        executing=lambda: executor.running,
    )
    web_app.add_routes(metrics.routes())  # GET /metrics
    # Alertmanager's webhook (POST /v1/alertmanager), with the REST API's tokens.
    alertmanager = alertmanager_receiver(
        settings,
        events=topics.passive_events,
        dead_letters=topics.dead_letters,
        authenticate=api.authorizer(Right.WEBHOOK, "post Alertmanager notifications"),
        clock=clock,
    )
    web_app.add_routes(alertmanager.routes())
    dashboard.install(  # /dashboard/, its stream
        app, settings, authenticate=api.authorizer(Right.READ, "read the transition stream")
    )


def _hot_store(settings: Settings) -> str:
    """The store of the hot tables (``REMEDIATOR_TABLE_STORE``)."""
    return rocks.STORE_URL if settings.table_store == "rocksdict" else "memory://"


def _tables(app: faust.App, settings: Settings) -> Tables:
    """The tables, all partitioned like the inbox (by cluster; claims by their id).

    The hot ones (``state``, ``claims``) in the store ``REMEDIATOR_TABLE_STORE`` names;
    the cold ones (``archive``, ``decisions``: history that grows with the fleet's age,
    read only on an append or an operator's request) in RocksDB whatever it says, so
    that the worker's memory stays flat (``pipeline/rocks.py``). Every RocksDB table
    shares one memory budget, ``REMEDIATOR_ROCKSDB_MEMORY_MB``.
    """
    options = {rocks.BUDGET_OPTION: settings.rocksdb_memory_mb * 1024 * 1024}

    def table(
        name: str, help_text: str, partition_of: Callable[[bytes], int], *, cold: bool = False
    ) -> TableStore:
        in_rocksdb = cold or settings.table_store == "rocksdict"
        created = app.Table(
            name,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            help=help_text,
            store=rocks.table_store_url(name) if in_rocksdb else "memory://",
            options=dict(options) if in_rocksdb else None,
        )
        return TableStore(created, partition_of)

    def by_cluster(key: bytes) -> int:
        # Keys are "cluster" or "cluster/instance": everything about a cluster together.
        return cluster_partition(key.split(b"/", 1)[0].decode(), settings.partitions)

    def by_key(key: bytes) -> int:
        return key_partition(key, settings.partitions)

    return Tables(
        state=table(
            "state",
            "The hot records decisions read: per instance, and per cluster (its pause and "
            "blast radius), in one changelog so that they recover to the same point.",
            by_cluster,
        ),
        archive=table(
            "archive", "Per instance: its closed remediations (JSON Lines).", by_cluster, cold=True
        ),
        decisions=table(
            "decisions",
            "Per instance: recent policy decisions (JSON Lines).",
            by_cluster,
            cold=True,
        ),
        claims=table("claims", "Client-specified remediation ids: who uses each.", by_key),
    )


def _topics(app: faust.App, settings: Settings) -> Topics:
    def raw(name: str, *, internal: bool = False) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            internal=internal,
        )

    return Topics(
        active_runs=raw(settings.topic_active_runs),
        passive_events=raw(settings.topic_passive_events),
        inbox=raw(settings.inbox_topic, internal=True),
        transitions=raw(settings.topic_transitions),
        dead_letters=raw(settings.topic_dead_letter),
        policy_events=raw(settings.topic_policy_events),
        audit=raw(settings.topic_audit),
        # Replies to API commands: low volume, read whole by every worker.
        replies=app.topic(
            settings.replies_topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=1,
            internal=True,
            retention=REPLIES_RETENTION,
        ),
    )


def _control_plane(
    settings: Settings, metrics: Metrics
) -> tuple[ControlPlaneClient, SimulatedControlPlane | None]:
    """The executor's control-plane client, with its credentials (read once, here), and
    the built-in simulated control plane when no URL is set (it wants a token too)."""
    credentials = settings.control_plane_credentials
    simulated: SimulatedControlPlane | None = None
    base_url: Callable[[], str]
    if settings.control_plane_base_url is None:
        credentials = with_token(credentials)
        assert credentials.token is not None  # noqa: S101 - with_token made sure
        simulated = SimulatedControlPlane(port=settings.simulator_port, token=credentials.token)
        base_url = simulated.base_url
    else:
        fixed = settings.control_plane_base_url  # user:password@ taken out: basic auth
        base_url = lambda: fixed  # noqa: E731
    client = ControlPlaneClient(
        base_url,
        timeout=settings.control_plane_timeout_seconds,
        backoff=Backoff(base=0.5, cap=settings.control_plane_retry_max_seconds),
        metrics=metrics,
        credentials=credentials,
    )
    return client, simulated


def _owned_partitions(app: faust.App, topic: str) -> list[int]:
    return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)


async def _announce_readiness(app: faust.App, settings: Settings) -> None:
    """One line when the worker starts serving, and one whenever what it owns changes:
    the frameworks' own lines about it are at debug (see logs.py)."""
    served = f"{settings.web_scheme}://{settings.web_host}:{settings.web_port}"
    announced: list[int] | None = None
    while True:
        await asyncio.sleep(0.25)
        if not _ready(app):
            continue
        owned = _owned_partitions(app, settings.inbox_topic)
        if announced is None:
            log.info(
                "ready: API at %s/v1/compute, dashboard at %s/ (%s of %d partitions)",
                served,
                served,
                _ranges(owned),
                settings.partitions,
            )
        elif owned != announced:
            log.info(
                "rebalanced: now serving partitions %s of %d", _ranges(owned), settings.partitions
            )
        announced = owned


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``; ``"none"`` when empty."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans) or "none"


def _ready(app: faust.App) -> bool:
    """Serving partitions now: assigned, tables recovered, not rebalancing."""
    return _unready_reason(app) is None


def _unready_reason(app: faust.App) -> str | None:
    """Why the worker cannot serve its partitions right now (``/healthz`` says it with a
    503, so that orchestrators and load balancers wait); None when it can."""
    if app.rebalancing:
        return "rebalancing: partitions are moving between workers"
    if not app.consumer.assignment():
        return "joining the consumer group: no partitions assigned yet"
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # not on TableManagerT
    if not recovery.completed.is_set() or recovery.in_recovery:
        return "recovering its tables from their changelogs"
    return None
