"""The metrics as a scraper sees them, fed by the real handlers, views and client.

The state owner's handlers run in memory (tests/harness.py) and their batches' tallies
are recorded as the processor records them; the web middleware and ``GET /metrics`` run
on a real aiohttp server; the control-plane client on scripted HTTP answers. Every check
reads the registry the way Prometheus would: by parsing the text it serves.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from remediator.api.auth import Caller, Role
from remediator.api.errors import contract_errors
from remediator.api.views import Api
from remediator.domain import safety
from remediator.domain.commands import Command, CommandKind
from remediator.domain.correlate import Outcome, decide
from remediator.domain.execution import ReportKind, StepReport
from remediator.domain.models import Operation, OptOut, RemediationMode, StepAction
from remediator.domain.policy import BlastRadius, Policy
from remediator.domain.safety import BlockReason, ClusterRecord, ClusterView, Pause, Proposal
from remediator.domain.state import InstanceState
from remediator.metrics import Metrics, consumer_lag, open_remediations
from remediator.pipeline.context import Batch
from remediator.pipeline.controlplane import Backoff, ControlPlaneClient, ControlPlaneRejected
from remediator.pipeline.messages import InboxMessage
from tests.builders import T0, event, run
from tests.harness import Harness
from tests.unit.test_safety import config, feed, finish, firing

ACTIVE, PASSIVE = "runs-topic", "events-topic"


def iso(at: timedelta) -> str:
    return (T0 + at).isoformat().replace("+00:00", "Z")


def scrape(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the served text, parsed by prometheus-client's own parser."""
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def recorded(metrics: Metrics, *batches: Batch) -> dict[tuple[str, frozenset[Any]], float]:
    for batch in batches:
        metrics.record(batch.tally)
    return scrape(metrics)


# -- signals -----------------------------------------------------------------------------


def test_each_signal_counts_once_by_its_topic_and_result() -> None:
    harness = Harness()
    metrics = Metrics(active_topic=ACTIVE, passive_topic=PASSIVE)
    passing = run(instance_id="i1", result="PASSED", completed_at=iso(timedelta(0)))
    newer = run(instance_id="i2", result="PASSED", completed_at=iso(timedelta(0)))
    too_old = run(instance_id="i2", result="PASSED", completed_at=iso(-timedelta(days=8)))
    alert = event(instance_id="i3", severity="INFO", observed_at=iso(timedelta(0)))
    first = harness.signal(passing, newer, alert)
    second = harness.signal(passing, too_old)  # a redelivery, and one past the dedup horizon
    samples = recorded(metrics, first, second)
    signals = "remediator_signals_total"
    assert value(samples, signals, topic=ACTIVE, result="used") == 2
    assert value(samples, signals, topic=PASSIVE, result="used") == 1
    assert value(samples, signals, topic=ACTIVE, result="duplicate") == 1
    assert value(samples, signals, topic=ACTIVE, result="stale") == 1
    assert value(samples, signals, topic=PASSIVE, result="duplicate") == 0


def test_ingest_dead_letters_count_by_topic() -> None:
    metrics = Metrics(active_topic=ACTIVE, passive_topic=PASSIVE)
    metrics.dead_lettered(PASSIVE)
    metrics.dead_lettered(PASSIVE, 2)
    samples = scrape(metrics)
    assert value(samples, "remediator_signals_total", topic=PASSIVE, result="dead_lettered") == 3


# -- blocked proposals -------------------------------------------------------------------


def _admission(record: ClusterRecord, *, unhealthy: int = 0, admissions: int = 0) -> BlockReason:
    policy = Policy(
        blast_radius=BlastRadius(max_open=2, max_percent=100, min_allowed=1),
        rate_budget_per_hour=3,
    )
    view = ClusterView(
        record=record,
        known=10,
        unhealthy=unhealthy,
        admissions=[T0 - timedelta(minutes=n) for n in range(admissions, 0, -1)],
    )
    proposal = Proposal("c1", "i9", "r1", "rule", RemediationMode.REBOOT_VM, T0)
    admitted = safety.admit(view, proposal, policy, T0)
    assert not admitted.admitted
    assert admitted.blocked is not None
    return admitted.blocked


def test_every_cluster_refusal_names_its_reason() -> None:
    paused = ClusterRecord(cluster_id="c1", paused=Pause(reason="maintenance", by="bob", at=T0))
    tripped = ClusterRecord(cluster_id="c1", tripped_at=T0)
    clear = ClusterRecord(cluster_id="c1")
    assert _admission(paused) is BlockReason.PAUSED
    assert _admission(tripped, unhealthy=2) is BlockReason.BLAST_RADIUS  # tripped earlier
    assert _admission(clear, unhealthy=2) is BlockReason.BLAST_RADIUS  # trips now
    assert _admission(clear, admissions=3) is BlockReason.RATE_BUDGET


def test_a_cluster_refusal_reaches_the_decision() -> None:
    paused = ClusterRecord(cluster_id="c1", paused=Pause(reason="maintenance", by="bob", at=T0))
    decision = decide(None, run(), T0, config(), ClusterView(record=paused, known=1, unhealthy=0))
    assert (decision.outcome, decision.blocked) == (Outcome.BLOCKED, BlockReason.PAUSED)


def test_every_instance_refusal_names_its_reason() -> None:
    state, _ = feed([firing(0)], config())
    state = finish(state, T0 + timedelta(minutes=5))
    _, decisions = feed([firing(10)], config(), state)
    assert (decisions[0].outcome, decisions[0].blocked) == (Outcome.BLOCKED, BlockReason.COOLDOWN)

    held = config("[hold_for_human]\nmax_remediations = 1\nwindow_hours = 24\n")
    state, _ = feed([firing(0)], held)
    state = finish(state, T0 + timedelta(minutes=1))
    _, decisions = feed([firing(40)], held, state)
    assert decisions[0].blocked is BlockReason.HELD_FOR_HUMAN

    _, decisions = feed([firing(0)], config(), _opted_out())
    assert decisions[0].blocked is BlockReason.OPT_OUT
    # Anything not blocked has no reason.
    _, decisions = feed([firing(0)], config())
    assert (decisions[0].outcome, decisions[0].blocked) == (Outcome.OPENED, None)


def _opted_out() -> InstanceState:
    return InstanceState.empty("c1", "i1").model_copy(
        update={"opt_out": OptOut(reason="benchmark", by="alice", at=T0)}
    )


def test_a_blocked_proposal_is_counted_by_reason_through_the_pipeline() -> None:
    harness = Harness()
    metrics = Metrics()
    harness.command(CommandKind.OPT_OUT, reason="customer benchmark")
    batch = harness.signal(run(instance_id="i1"), run(instance_id="i1"))
    samples = recorded(metrics, batch)
    assert value(samples, "remediator_proposals_blocked_total", reason="opt_out") == 2
    assert value(samples, "remediator_remediations_opened_total", rule="x", mode="y") == 0
    assert not [k for k in samples if k[0] == "remediator_remediations_opened_total"]


# -- remediations: opened, transitions, steps, time to success ----------------------------


def test_a_remediation_carried_out_is_counted_and_timed_by_its_own_timestamps() -> None:
    harness = Harness(max_running=2)
    metrics = Metrics()
    batches = [harness.signal(run(completed_at=iso(timedelta(minutes=-2))), now=T0)]
    state = harness.state()
    assert state is not None
    assert state.open is not None
    opened = state.open.remediation
    approve_at = T0 + timedelta(minutes=10)
    batches.append(approve(harness, opened.id, approve_at))
    clock = approve_at
    steps: list[tuple[str, float]] = []
    for index in range(len(opened_now(harness).operations)):
        op = opened_now(harness).operations[index]
        started, took = clock + timedelta(seconds=5), 60.0 * (index + 1)
        clock = started + timedelta(seconds=took)
        batches.append(reported(harness, report(harness, index, op, ReportKind.STARTED, started)))
        batches.append(reported(harness, report(harness, index, op, ReportKind.DONE, clock)))
        steps.append((op.action.value, took))
    assert harness.state() is not None
    assert harness.state().open is None  # type: ignore[union-attr]  # SUCCEEDED, closed
    samples = recorded(metrics, *batches)
    # Exactly what was published on remediation-transitions, event by event.
    events = Counter(t.event for t in harness.transitions())
    assert events["SUCCEED"] == 1
    for event_name, count in events.items():
        assert value(samples, "remediator_transitions_total", event=str(event_name)) == count
    rule, mode = opened.rule or "", opened.mode.value
    assert value(samples, "remediator_remediations_opened_total", rule=rule, mode=mode) == 1
    for action, took in steps:
        name = "remediator_executor_step_duration_seconds"
        assert value(samples, f"{name}_count", action=action, result="done") == 1
        assert value(samples, f"{name}_sum", action=action, result="done") == took
    to_success = (clock - (T0 - timedelta(minutes=2))).total_seconds()
    name = "remediator_time_to_success_seconds"
    assert value(samples, f"{name}_count", mode=mode) == 1
    assert value(samples, f"{name}_sum", mode=mode) == to_success


def approve(harness: Harness, remediation_id: str, at: datetime) -> Batch:
    command = Command(
        command_id="approve-1",
        kind=CommandKind.APPROVE,
        cluster_id="c1",
        instance_id="i1",
        principal="alice",
        issued_at=at,
        remediation_id=remediation_id,
    )
    return harness.apply(InboxMessage(command=command), now=at)


def reported(harness: Harness, step: StepReport) -> Batch:
    """As the inbox agent applies a report: at the time the executor observed it."""
    return harness.report(step, now=step.observed_at)


def opened_now(harness: Harness) -> Any:
    state = harness.state()
    assert state is not None
    assert state.open is not None
    return state.open.remediation


def report(
    harness: Harness, index: int, op: Operation, kind: ReportKind, at: datetime
) -> StepReport:
    return StepReport(
        remediation_id=opened_now(harness).id,
        cluster_id="c1",
        instance_id="i1",
        step=index,
        operation_id=op.operation_id,
        kind=kind,
        observed_at=at,
    )


def test_a_failed_step_is_timed_as_failed_and_no_success_is_observed() -> None:
    harness = Harness(max_running=2)
    metrics = Metrics()
    harness.signal(run())
    rid = opened_now(harness).id
    approve(harness, rid, T0)
    op = opened_now(harness).operations[0]
    started = reported(harness, report(harness, 0, op, ReportKind.STARTED, T0))
    failed = StepReport(
        remediation_id=rid,
        cluster_id="c1",
        instance_id="i1",
        step=0,
        operation_id=op.operation_id,
        kind=ReportKind.FAILED,
        error="boom",
        observed_at=T0 + timedelta(seconds=30),
    )
    samples = recorded(metrics, started, reported(harness, failed))
    name = "remediator_executor_step_duration_seconds"
    assert value(samples, f"{name}_sum", action=op.action.value, result="failed") == 30
    assert value(samples, "remediator_transitions_total", event="FAIL") == 1
    assert not [k for k in samples if k[0].startswith("remediator_time_to_success_seconds_c")]


# -- gauges computed when scraped ---------------------------------------------------------


def test_open_remediations_by_cluster_and_state_include_zeros() -> None:
    harness = Harness()
    harness.signal(run(cluster_id="c1", instance_id="i1"), run(cluster_id="c3", instance_id="i1"))
    harness.signal(run(cluster_id="c2", instance_id="i1", result="PASSED"))
    counts = {(c, s): n for c, s, n in open_remediations(harness.fleet.clusters())}
    assert counts[("c1", "PENDING_APPROVAL")] == 1
    assert counts[("c3", "PENDING_APPROVAL")] == 1
    assert counts[("c2", "PENDING_APPROVAL")] == 0  # known, nothing open: 0, not absent
    assert {s for c, s in counts if c == "c1"} == {
        "PENDING_APPROVAL",
        "PENDING",
        "QUARANTINING",
        "QUARANTINED",
        "RUNNING",
    }
    assert sum(counts.values()) == 2


class Consumer:
    """What the lag gauge reads of Faust's consumer (assignment, highwater, committed)."""

    def __init__(self, highwaters: dict[TP, int | None], committed: dict[TP, int | None]):
        self.highwaters = highwaters
        self._committed_offset = committed

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]


def test_consumer_lag_is_highwater_minus_committed_for_the_input_topics() -> None:
    runs = [TP(ACTIVE, n) for n in range(3)]
    consumer = Consumer(
        {runs[0]: 10, runs[1]: 7, runs[2]: None, TP("changelog", 0): 99},
        {runs[0]: 4, runs[1]: None},
    )
    assert consumer_lag(consumer, frozenset({ACTIVE})) == [(ACTIVE, 0, 6), (ACTIVE, 1, 7)]


def test_consumer_lag_of_a_consumer_not_started_is_empty() -> None:
    class NotStarted:
        def assignment(self) -> set[TP]:
            raise RuntimeError("consumer thread not yet started")

    assert consumer_lag(NotStarted(), frozenset({ACTIVE})) == []


def test_the_scraped_gauges_are_served() -> None:
    harness = Harness()
    harness.signal(run())
    metrics = Metrics()
    consumer = Consumer({TP(ACTIVE, 0): 5}, {TP(ACTIVE, 0): 5})
    metrics.watch(
        clusters=harness.fleet.clusters,
        consumer=lambda: consumer,
        input_topics=frozenset({ACTIVE}),
        executing=lambda: ["r1", "r2"],
    )
    samples = scrape(metrics)
    state = "PENDING_APPROVAL"
    assert value(samples, "remediator_open_remediations", cluster_id="c1", state=state) == 1
    assert value(samples, "remediator_consumer_lag_messages", topic=ACTIVE, partition="0") == 0
    assert (
        "remediator_consumer_lag_messages",
        frozenset({("topic", ACTIVE), ("partition", "0")}),
    ) in samples
    assert value(samples, "remediator_executor_running") == 2


# -- the web server ----------------------------------------------------------------------


@pytest.fixture
async def served() -> Any:
    metrics = Metrics()
    api = Api(
        gateway=None,  # type: ignore[arg-type]  # whoami and healthz ask no partition
        tokens={"t0ken": Caller("alice", Role.UNRESTRICTED)},
        clock=lambda: T0,
        unready=lambda: None,
        owned=list,
        app_id="test",
        openapi=lambda: b"{}",
    )
    # As the worker builds it: metrics outermost, then the contract's errors.
    app = web.Application(middlewares=[metrics.middleware, contract_errors])
    app.add_routes(api.routes())
    app.add_routes(metrics.routes())
    async with TestClient(TestServer(app)) as client:
        yield client, metrics


async def test_requests_count_by_route_template_and_status(served: Any) -> None:
    client, _ = served
    assert (await client.get("/v3/whoami")).status == 401
    assert (await client.get("/v3/whoami", headers={"Authorization": "Bearer t0ken"})).status == 200
    for path in ("/nowhere", "/v1/compute/clusters/c1/instances/i1/remediations/r1/nothing"):
        assert (await client.get(path)).status == 404
    response = await client.get("/metrics")  # no credentials needed
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(await response.text())
        for s in family.samples
    }
    requests = "remediator_api_requests_total"
    assert value(samples, requests, method="GET", route="/v3/whoami", status="401") == 1
    assert value(samples, requests, method="GET", route="/v3/whoami", status="200") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 2
    latency = "remediator_api_request_duration_seconds_count"
    assert value(samples, latency, method="GET", route="/v3/whoami") == 2
    # No raw path ever becomes a label value.
    assert not [k for k in samples if ("route", "/nowhere") in k[1]]


# -- the control plane -------------------------------------------------------------------


def scripted(answers: list[Callable[[httpx.Request], httpx.Response]]) -> httpx.MockTransport:
    calls: Iterator[Callable[[httpx.Request], httpx.Response]] = iter(answers)
    return httpx.MockTransport(lambda request: next(calls)(request))


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def _no_sleep(delay: float) -> None:
    return None


async def test_control_plane_retries_and_refusals_count_by_call_and_cause() -> None:
    op = Operation(operation_id="r1.step-1.REBOOT_VM", action=StepAction.REBOOT_VM)
    running = {"operation_id": op.operation_id, "action": "REBOOT_VM", "state": "RUNNING"}
    metrics = Metrics()
    transport = scripted(
        [
            lambda r: httpx.Response(503, json={}),
            refused,
            lambda r: httpx.Response(201, json=running),  # start: two retries
            lambda r: httpx.Response(429, json={}),
            lambda r: httpx.Response(200, json=running),  # poll: one retry
            lambda r: httpx.Response(400, json={"error": {"message": "no such instance"}}),
        ]
    )
    client = ControlPlaneClient(
        lambda: "http://cp.test",
        backoff=Backoff(base=0.01, cap=0.01),
        sleep=_no_sleep,
        rng=random.Random(1),
        transport=transport,
        metrics=metrics,
    )
    await client.start("c1", "i1", op)
    assert await client.get(op.operation_id) is not None
    with pytest.raises(ControlPlaneRejected):
        await client.start("c1", "i1", op)
    await client.aclose()
    samples = scrape(metrics)
    retries, errors = (
        "remediator_control_plane_retries_total",
        "remediator_control_plane_errors_total",
    )
    assert value(samples, retries, call="start", cause="503") == 1
    assert value(samples, retries, call="start", cause="transport") == 1
    assert value(samples, retries, call="poll", cause="429") == 1
    assert value(samples, errors, call="start", cause="400") == 1
    assert client.retries == 3
