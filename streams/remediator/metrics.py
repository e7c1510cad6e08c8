"""Prometheus metrics: what ``GET /metrics`` serves, all defined here.

One :class:`Metrics` per worker, on a registry of its own (never the library's global one:
tests build several workers' metrics in one process). Numbers get in three ways, each
chosen to keep the pipeline's hot path cheap (thousands of signals a second per core):

- The state owner's handlers count into their batch's :class:`Tally`: a dict increment
  or two per input, no Prometheus call. Once the batch is durable the processor adds the
  tally to the counters (:meth:`Metrics.record`): a handful of ``inc(n)`` per batch, on
  labelled children resolved once and cached. So a counter moves only for what was
  really applied and published, by the one worker that applied it.
- Rare events (a dead letter at ingest, a control-plane retry, an API request) go
  straight to cached children.
- What can be read off the state the worker holds (open remediations by cluster and
  state, consumer lag, remediations being carried out) is computed when scraped
  (:meth:`Metrics.watch`): nothing to keep in step, and right at once after a rebalance
  or a restart. Each worker reports only the partitions it owns, so sums across workers
  are the fleet's.

Durations come from the remediations' own timestamps (event time), never from a timer
around the code: a step resumed by another worker after a crash is still measured from
its real start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import prometheus_client
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from remediator import __version__
from remediator.domain.correlate import Decision, Outcome
from remediator.domain.models import (
    ActiveHealthCheckRun,
    HealthSignal,
    Operation,
    PassiveHealthCheckEvent,
    RemediationState,
    RemediationTransition,
)

if TYPE_CHECKING:
    from remediator.pipeline.fleet import ClusterModel

#: ``result`` of a signal: applied (whatever it decided), seen before, too old, unusable.
USED, DUPLICATE, STALE, DEAD_LETTERED = "used", "duplicate", "stale", "dead_lettered"
_RESULTS = {Outcome.DUPLICATE: DUPLICATE, Outcome.STALE: STALE}
#: ``rule`` of a remediation no policy rule opened (created through the API).
MANUAL = "manual"
#: ``route`` of a request that matched no route (404, 405): raw paths would be unbounded.
UNMATCHED = "unmatched"
#: ``status`` of a request whose client went away before the answer (nginx's convention).
CLIENT_CLOSED = 499
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OPEN_STATES = tuple(state for state in RemediationState if not state.is_terminal)

#: Control-plane steps take seconds to an hour; API calls milliseconds to the gateway's
#: timeout; a remediation from its first failing signal to success, minutes to a day
#: (most of it waiting for a human's approval).
STEP_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SUCCESS_BUCKETS = (10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
#: A notification from its first attempt to its delivery: milliseconds on a healthy
#: receiver, minutes across its outage.
NOTIFY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

M = TypeVar("M", bound=MetricWrapperBase)


class _Children(Generic[M]):
    """A labelled metric's children, each resolved once (``labels()`` costs a lock and a
    tuple build per call; the label sets here are few and bounded)."""

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._cache: dict[tuple[str, ...], M] = {}

    def __call__(self, *labels: str) -> M:
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self._metric.labels(*labels)
        return child


@dataclass(slots=True)
class Tally:
    """What one batch applied, counted by the handlers; see the module docstring."""

    #: (signal class, result) -> count.
    signals: dict[tuple[type[HealthSignal], str], int] = field(default_factory=dict)
    #: event -> count.
    transitions: dict[str, int] = field(default_factory=dict)
    #: (rule, mode) -> count.
    opened: dict[tuple[str, str], int] = field(default_factory=dict)
    #: reason -> count.
    blocked: dict[str, int] = field(default_factory=dict)
    #: (action, result, seconds) per finished step.
    steps: list[tuple[str, str, float]] = field(default_factory=list)
    #: (mode, seconds from the first failing signal) per SUCCEEDED remediation.
    successes: list[tuple[str, float]] = field(default_factory=list)
    #: input topic -> inputs dead-lettered (each once, however often it was read).
    dead_letters: dict[str, int] = field(default_factory=dict)

    def signal(self, signal: HealthSignal, result: str) -> None:
        key = (type(signal), result)
        self.signals[key] = self.signals.get(key, 0) + 1

    def decided(self, signal: HealthSignal, decision: Decision) -> None:
        """A signal was decided: count it, and why it opened nothing if it was blocked."""
        self.signal(signal, _RESULTS.get(decision.outcome, USED))
        if decision.outcome in (Outcome.BLOCKED, Outcome.QUEUED):
            reason = decision.blocked.value if decision.blocked is not None else "other"
            self.blocked[reason] = self.blocked.get(reason, 0) + 1

    def transition(self, transition: RemediationTransition) -> None:
        """A transition to be published: by event, and what it opened or completed."""
        event = transition.event or "unknown"
        self.transitions[event] = self.transitions.get(event, 0) + 1
        remediation = transition.remediation
        if transition.from_state is None:
            key = (remediation.rule or MANUAL, remediation.mode.value)
            self.opened[key] = self.opened.get(key, 0) + 1
        elif transition.to_state is RemediationState.SUCCEEDED and remediation.signals:
            first = min(signal.observed_at for signal in remediation.signals)
            end = remediation.end_time or transition.occurred_at
            seconds = max((end - first).total_seconds(), 0.0)
            self.successes.append((remediation.mode.value, seconds))

    def step(self, operation: Operation) -> None:
        """A step finished (DONE or FAILED), timed by its own recorded start and end."""
        if operation.start_time is None or operation.end_time is None:
            return
        seconds = max((operation.end_time - operation.start_time).total_seconds(), 0.0)
        self.steps.append((operation.action.value, operation.state.value.lower(), seconds))


def _counter(
    registry: CollectorRegistry, name: str, text: str, labels: list[str]
) -> _Children[Counter]:
    return _Children(Counter(name, text, labels, registry=registry))


def _histogram(
    registry: CollectorRegistry,
    name: str,
    text: str,
    labels: list[str],
    buckets: Sequence[float],
) -> _Children[Histogram]:
    return _Children(Histogram(name, text, labels, buckets=buckets, registry=registry))


class Metrics:
    """Every metric of one worker, on its own registry."""

    def __init__(
        self,
        *,
        active_topic: str = "active-health-check-runs",
        passive_topic: str = "passive-health-check-events",
        app_id: str = "remediator",
    ) -> None:
        # The text format would otherwise add a ``_created`` series beside every counter
        # and histogram child: twice the series for a timestamp nobody alerts on.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._topics: dict[type[HealthSignal], str] = {
            ActiveHealthCheckRun: active_topic,
            PassiveHealthCheckEvent: passive_topic,
        }
        Info("remediator_build", "The worker's version and app id.", registry=registry).info(
            {"version": __version__, "app_id": app_id}
        )
        prometheus_client.ProcessCollector(registry=registry)  # process_cpu_seconds_total, ...
        self._pipeline_metrics(registry)
        self._edge_metrics(registry)
        self._notify_metrics(registry)

    def _pipeline_metrics(self, registry: CollectorRegistry) -> None:
        """What the pipeline did: signals, remediations, transitions, refusals."""
        self.signals = _counter(
            registry,
            "remediator_signals_total",
            "Health signals read from the input topics, by result: used (applied), "
            "duplicate (seen before), stale (older than the dedup memory), "
            "dead_lettered (unreadable or unusable; sent to the dead-letter topic).",
            ["topic", "result"],
        )
        self.opened = _counter(
            registry,
            "remediator_remediations_opened_total",
            "Remediations created, by the policy rule that opened them ('manual' for "
            "API creates) and mode.",
            ["rule", "mode"],
        )
        self.transitions = _counter(
            registry,
            "remediator_transitions_total",
            "Transitions published on remediation-transitions, by lifecycle event.",
            ["event"],
        )
        self.blocked = _counter(
            registry,
            "remediator_proposals_blocked_total",
            "Failing signals a rule would have opened a remediation for, kept from "
            "opening by the safety policy, by reason.",
            ["reason"],
        )
        self.time_to_success = _histogram(
            registry,
            "remediator_time_to_success_seconds",
            "From a remediation's first failing signal (its event time) to SUCCEEDED, "
            "by mode; remediations created through the API have no signal and are "
            "not counted.",
            ["mode"],
            SUCCESS_BUCKETS,
        )

    def _edge_metrics(self, registry: CollectorRegistry) -> None:
        """The service's edges: outputs, the control plane, the API, the audit trail."""
        self.output_dropped = _counter(
            registry,
            "remediator_output_records_dropped_total",
            "Records the worker did not publish because they were too large to send "
            "(the last resort: outputs are kept far below the limit), by topic and "
            "reason: over_limit (larger than REMEDIATOR_MAX_OUTPUT_BYTES, never sent) "
            "or refused (the producer or the broker refused it as too large). Each "
            "has a CRITICAL log line and, unless it was one, a dead letter.",
            ["topic", "reason"],
        )
        self.steps = _histogram(
            registry,
            "remediator_executor_step_duration_seconds",
            "Control-plane steps from start to end (their recorded times), by action "
            "and result (done, failed).",
            ["action", "result"],
            STEP_BUCKETS,
        )
        self.cp_retries = _counter(
            registry,
            "remediator_control_plane_retries_total",
            "Control-plane requests that failed transiently and were retried, by call "
            "(start, poll) and cause (transport, or the HTTP status).",
            ["call", "cause"],
        )
        self.cp_errors = _counter(
            registry,
            "remediator_control_plane_errors_total",
            "Control-plane requests refused for good (the step fails), by call and "
            "cause (the HTTP status, or unreadable).",
            ["call", "cause"],
        )
        self.audit_records = _counter(
            registry,
            "remediator_audit_records_total",
            "Audit records of mutating API calls, by result: written (acknowledged by "
            "the broker) or unacknowledged (logged at ERROR instead).",
            ["result"],
        )
        self.api_requests = _counter(
            registry,
            "remediator_api_requests_total",
            "HTTP requests served, by method, route template and status.",
            ["method", "route", "status"],
        )
        self.api_latency = _histogram(
            registry,
            "remediator_api_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            API_BUCKETS,
        )

    def _notify_metrics(self, registry: CollectorRegistry) -> None:
        """The notifier's (``notify/``): what reached the policy's ``[[notify]]`` targets."""
        self.notifications = _counter(
            registry,
            "remediator_notifications_total",
            "Notifications to the policy's [[notify]] targets, by target and result: "
            "delivered, retried (an attempt failed and is retried) or given_up (sent to "
            "the dead-letter topic).",
            ["target", "result"],
        )
        self.notify_latency = _histogram(
            registry,
            "remediator_notification_delivery_seconds",
            "From a notification's first attempt to its delivery, by target.",
            ["target"],
            NOTIFY_BUCKETS,
        )

    # -- counting ----------------------------------------------------------------------

    def record(self, tally: Tally) -> None:
        """Add a durable batch's tally (a few ``inc`` per batch, see the module docstring)."""
        topics = self._topics
        for (kind, result), count in tally.signals.items():
            self.signals(topics[kind], result).inc(count)
        for event, count in tally.transitions.items():
            self.transitions(event).inc(count)
        for (rule, mode), count in tally.opened.items():
            self.opened(rule, mode).inc(count)
        for reason, count in tally.blocked.items():
            self.blocked(reason).inc(count)
        for action, result, seconds in tally.steps:
            self.steps(action, result).observe(seconds)
        for mode, seconds in tally.successes:
            self.time_to_success(mode).observe(seconds)
        for topic, count in tally.dead_letters.items():
            self.dead_lettered(topic, count)

    def dead_lettered(self, topic: str, count: int = 1) -> None:
        """Input of ``topic`` that could not be read as a signal (counted once, when its
        dead letter is durable)."""
        self.signals(topic, DEAD_LETTERED).inc(count)

    def output_record_dropped(self, topic: str, reason: str) -> None:
        """An output too large to publish was dropped (see ``pipeline/outbox.py``)."""
        self.output_dropped(topic, reason).inc()

    def notified(self, target: str, result: str, seconds: float | None = None) -> None:
        """A notification's attempt or end (see ``notify/service.py``)."""
        self.notifications(target, result).inc()
        if seconds is not None:
            self.notify_latency(target).observe(seconds)

    def control_plane_retry(self, call: str, cause: str) -> None:
        self.cp_retries(call, cause).inc()

    def control_plane_error(self, call: str, cause: str) -> None:
        self.cp_errors(call, cause).inc()

    # -- the web server ------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count and time every request, by route template (bounded: never the raw path)."""
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # redirects and the like, raised through
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            method = request.method if request.method in _METHODS else "OTHER"
            route = route_template(request)
            self.api_requests(method, route, str(status)).inc()
            self.api_latency(method, route).observe(time.perf_counter() - started)

    def routes(self) -> list[web.RouteDef]:
        """``GET /metrics``: no credentials, like ``/healthz`` (a scraper has no token)."""
        return [web.get("/metrics", make_aiohttp_handler(self.registry))]

    # -- computed when scraped -------------------------------------------------------------

    def watch(
        self,
        *,
        clusters: Callable[[], Iterable[ClusterModel]],
        consumer: Callable[[], Any],
        input_topics: frozenset[str],
        executing: Callable[[], Sequence[str]],
    ) -> None:
        """Register the gauges read off the worker's state at scrape time."""
        self.registry.register(_Scraped(clusters, consumer, input_topics, executing))


def route_template(request: web.Request) -> str:
    """The route a request matched, as registered (``…/{cluster_id}/…``)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def open_remediations(clusters: Iterable[ClusterModel]) -> Iterator[tuple[str, str, int]]:
    """(cluster, state, count) for every open state of every cluster with instances; zeros
    included, so that a series drops to 0 rather than vanishing when its last one closes."""
    for model in clusters:
        if not model.instances:
            continue
        counts = dict.fromkeys(OPEN_STATES, 0)
        for state in model.instances.values():
            if state.open is not None:
                counts[state.open.remediation.state] += 1
        for remediation_state, count in counts.items():
            yield model.cluster_id, remediation_state.value, count


def consumer_lag(consumer: Any, topics: frozenset[str]) -> list[tuple[str, int, int]]:
    """(topic, partition, lag) for the assigned partitions of ``topics``.

    Lag is the partition's high watermark as last fetched (the consumer's own figure, no
    broker request; on Tansu it is also the true end, unlike a ListOffsets answer, see
    ``kafka/transport.py``) minus the offset Faust last committed (the next one to process, or
    the start when nothing is committed yet): what is still to be processed, give or take
    the commit interval. A partition not fetched yet has no figure and is left out.
    """
    try:
        assigned = consumer.assignment()
    except Exception:  # noqa: BLE001 - not started yet, or stopping: nothing to report
        return []
    committed = consumer._committed_offset
    lags = []
    for tp in sorted(tp for tp in assigned if tp.topic in topics):
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # noqa: BLE001, S112 - unassigned meanwhile (a rebalance)
            continue
        if highwater is None:
            continue
        lags.append((tp.topic, tp.partition, max(highwater - (committed.get(tp) or 0), 0)))
    return lags


class _Scraped(Collector):
    def __init__(
        self,
        clusters: Callable[[], Iterable[ClusterModel]],
        consumer: Callable[[], Any],
        topics: frozenset[str],
        executing: Callable[[], Sequence[str]],
    ) -> None:
        self._clusters = clusters
        self._consumer = consumer
        self._topics = topics
        self._executing = executing

    def describe(self) -> Iterable[Metric]:
        # Names only: the registry asks at registration, before the worker runs.
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        opened, lag, running, waiting, frozen = self._families()
        clusters = list(self._clusters())
        for cluster_id, state, count in open_remediations(clusters):
            opened.add_metric([cluster_id, state], count)
        for model in clusters:
            if model.instances:
                waiting.add_metric([model.cluster_id], len(model.waiting))
                frozen.add_metric([model.cluster_id], len(model.record.freezes))
        for topic, partition, behind in consumer_lag(self._consumer(), self._topics):
            lag.add_metric([topic, str(partition)], behind)
        running.add_metric([], len(self._executing()))
        return [opened, lag, running, waiting, frozen]

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        return (
            GaugeMetricFamily(
                "remediator_open_remediations",
                "Open remediations of the clusters this worker owns, by cluster and state.",
                labels=["cluster_id", "state"],
            ),
            GaugeMetricFamily(
                "remediator_consumer_lag_messages",
                "Records of an input partition this worker owns not yet processed "
                "(high watermark - committed offset).",
                labels=["topic", "partition"],
            ),
            GaugeMetricFamily(
                "remediator_executor_running",
                "Remediations this worker is carrying out through the control plane now.",
            ),
            GaugeMetricFamily(
                "remediator_admission_queue",
                "Proposals refused for lack of room waiting in the cluster's admission "
                "queue, by cluster (clusters this worker owns).",
                labels=["cluster_id"],
            ),
            GaugeMetricFamily(
                "remediator_change_freezes",
                "Change freezes holding in the cluster (whole or some of its failure domains) "
                "at its event-time clock, by cluster (clusters this worker owns); 0: none.",
                labels=["cluster_id"],
            ),
        )
