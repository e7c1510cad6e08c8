"""Notifications without a broker: the bodies, the signature, retries, and the commit rule."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from remediator.domain.notify_policy import NotifyTarget
from remediator.kafka.security import Connection
from remediator.metrics import Metrics
from remediator.notify import Notifier, NotifierConfig, Target
from remediator.notify.delivery import (
    HideTargetPaths,
    Request,
    backoff,
    deliver,
    retry_after,
    verdict,
)
from remediator.notify.formats import (
    cloudevent,
    dashboard_link,
    notice_of,
    signature,
    slack_message,
)
from remediator.notify.progress import PartitionProgress, Progress
from remediator.notify.service import request_for

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def transition(
    to_state: str = "PENDING_APPROVAL", from_state: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "transition_id": "r1:1",
        "remediation_id": "r1",
        "sequence": 1,
        "from_state": from_state,
        "to_state": to_state,
        "occurred_at": "2026-12-06T12:00:00Z",
        "actor": "pipeline",
        "reason": "DmesgXidError xid=79 firing (CRITICAL)",
        "remediation": {
            "id": "r1",
            "cluster_id": "cl 1",
            "instance_id": "node/7",
            "instance_name": "gpu-node-7",
            "mode": "REMEDIATION_MODE_HOST_AWARE",
            "state": to_state,
        },
        **extra,
    }


def policy_event(kind: str = "BLAST_RADIUS_TRIPPED", instance: str | None = None) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "kind": kind,
        "cluster_id": "cl-1",
        "instance_id": instance,
        "reason": "5 of 20 instances open: limit 4",
        "occurred_at": "2026-12-06T12:01:00Z",
    }


def target(**overrides: Any) -> NotifyTarget:
    values: dict[str, Any] = {
        "name": "t",
        "url": "http://receiver.test/hook",
        "on": ["*"],
        "max_attempts": 4,
        "backoff_initial_seconds": 1.0,
        "backoff_max_seconds": 5.0,
    }
    values.update(overrides)
    return NotifyTarget.model_validate(values)


# -- notices and bodies -------------------------------------------------------------------


def test_a_transition_into_a_state_is_a_notice_and_an_update_keeping_it_is_not() -> None:
    notice = notice_of("transition", orjson.dumps(transition()))
    assert notice is not None
    assert (notice.id, notice.trigger, notice.subject) == (
        "r1:1",
        "PENDING_APPROVAL",
        "cl 1/node/7",
    )
    update = transition("PENDING_APPROVAL", "PENDING_APPROVAL", event="ATTACH_SIGNAL")
    assert notice_of("transition", orjson.dumps(update)) is None


def test_a_policy_event_is_a_notice_even_of_a_kind_this_worker_does_not_know() -> None:
    notice = notice_of("policy", orjson.dumps(policy_event("SOMETHING_NEWER")))
    assert notice is not None
    assert (notice.id, notice.trigger, notice.subject) == ("e1", "SOMETHING_NEWER", "cl-1")


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", b'{"transition_id": 3}'])
def test_a_record_that_is_not_a_transition_makes_no_notice(raw: bytes) -> None:
    assert notice_of("transition", raw) is None
    assert notice_of("policy", raw) is None


def test_the_cloudevent_is_structured_mode_1_0_with_the_transition_id() -> None:
    notice = notice_of("transition", orjson.dumps(transition()))
    assert notice is not None
    event = orjson.loads(cloudevent(notice, "remediator/prod"))
    assert event == {
        "specversion": "1.0",
        "id": "r1:1",
        "source": "remediator/prod",
        "type": "com.remediator.transition.PENDING_APPROVAL",
        "subject": "cl 1/node/7",
        "time": "2026-12-06T12:00:00Z",
        "datacontenttype": "application/json",
        "data": transition(),
    }


def test_a_policy_events_cloudevent_has_the_event_id_and_kind() -> None:
    notice = notice_of("policy", orjson.dumps(policy_event()))
    assert notice is not None
    event = orjson.loads(cloudevent(notice, "remediator/prod"))
    assert event["id"] == "e1"
    assert event["type"] == "com.remediator.policy.BLAST_RADIUS_TRIPPED"


def test_the_slack_message_has_the_instance_mode_state_reason_and_a_dashboard_link() -> None:
    notice = notice_of("transition", orjson.dumps(transition()))
    assert notice is not None
    message = orjson.loads(slack_message(notice, "https://remediator.example.com/"))
    link = "https://remediator.example.com/dashboard/#/instance/cl%201/node%2F7"
    assert message["text"] == (
        "PENDING_APPROVAL: cl 1/node/7 (gpu-node-7), HOST_AWARE: "
        f"DmesgXidError xid=79 firing (CRITICAL) ({link})"
    )
    blocks = orjson.dumps(message["blocks"]).decode()
    assert "*Mode:* HOST_AWARE" in blocks
    assert "*Reason:* DmesgXidError xid=79 firing (CRITICAL)" in blocks
    assert f"<{link}|Open in the dashboard>" in blocks


def test_a_cluster_events_slack_message_links_to_the_cluster() -> None:
    notice = notice_of("policy", orjson.dumps(policy_event()))
    assert notice is not None
    message = orjson.loads(slack_message(notice, "http://localhost:6066"))
    assert message["text"].startswith("BLAST_RADIUS_TRIPPED: cl-1: 5 of 20 instances open")
    assert "http://localhost:6066/dashboard/#/cluster/cl-1" in message["text"]
    assert dashboard_link("http://x", notice) == "http://x/dashboard/#/cluster/cl-1"


def test_the_signature_is_verifiable_with_the_secret_and_only_with_it() -> None:
    body = b'{"id": "r1:1"}'
    header = signature(b"s3cret", body)
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(header, expected)
    assert signature(b"other", body) != header
    assert signature(b"s3cret", body + b" ") != header


def test_a_targets_secret_is_not_in_its_repr() -> None:
    assert "s3cret" not in repr(Target(target(), b"s3cret"))


def test_a_request_is_signed_only_when_the_target_has_a_secret() -> None:
    config = notifier_config()
    notice = notice_of("transition", orjson.dumps(transition()))
    assert notice is not None
    signed = request_for(Target(target(header="X-Sig"), b"k"), notice, config)
    assert signed.headers["X-Sig"] == signature(b"k", signed.body)
    assert signed.headers["Content-Type"] == "application/cloudevents+json"
    plain = request_for(Target(target(format="slack")), notice, config)
    assert "X-Remediator-Signature" not in plain.headers
    assert plain.headers["Content-Type"] == "application/json"
    assert "blocks" in orjson.loads(plain.body)


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (301, "permanent"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
        (410, "permanent"),
    ],
)
def test_what_each_status_means(status: int, expected: str) -> None:
    assert verdict(status) == expected


def test_the_backoff_doubles_with_jitter_between_half_and_all_and_is_capped() -> None:
    spec = target(backoff_initial_seconds=1.0, backoff_max_seconds=5.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (50, 5.0), (500, 5.0)]:
        assert backoff(attempt, spec, lambda: 0.0) == ceiling / 2
        assert ceiling / 2 <= backoff(attempt, spec, lambda: 0.999999) <= ceiling
        assert ceiling / 2 <= backoff(attempt, spec) <= ceiling


def test_retry_after_seconds_are_honoured_up_to_the_cap() -> None:
    assert retry_after("3", 10.0) == 3.0
    assert retry_after("3600", 10.0) == 10.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 10.0) is None
    assert retry_after(None, 10.0) is None


def receiver(answers: list[int | type[Exception]]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        next_answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(next_answer, int):
            return httpx.Response(next_answer)
        raise next_answer("refused", request=request)

    return answer


async def run_delivery(
    answers: list[int | type[Exception]], **overrides: Any
) -> tuple[Any, list[str], list[float]]:
    retries: list[str] = []
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    transport = httpx.MockTransport(receiver(answers))
    async with httpx.AsyncClient(transport=transport) as client:
        outcome = await deliver(
            client,
            target(**overrides),
            Request(b"{}", {}),
            on_retry=retries.append,
            sleep=sleep,
            draw=lambda: 0.0,
        )
    return outcome, retries, waits


async def test_a_receiver_that_fails_for_a_while_gets_it_in_the_end() -> None:
    outcome, retries, waits = await run_delivery([503, httpx.ConnectError, 429, 200])
    assert outcome.delivered
    assert outcome.attempts == 4
    assert retries == ["HTTP 503", "ConnectError: refused", "HTTP 429"]
    assert waits == [0.5, 1.0, 2.0]


async def test_a_timeout_is_retried() -> None:
    outcome, retries, _ = await run_delivery([httpx.ReadTimeout, 200], timeout_seconds=2)
    assert outcome.delivered
    assert retries == ["timed out after 2 s"]


async def test_a_4xx_is_given_up_at_once() -> None:
    outcome, retries, waits = await run_delivery([400])
    assert not outcome.delivered
    assert outcome.attempts == 1
    assert outcome.error == "HTTP 400 (after 1 attempt)"
    assert retries == waits == []


async def test_after_max_attempts_it_is_given_up_with_the_last_cause() -> None:
    outcome, retries, waits = await run_delivery([500], max_attempts=3)
    assert not outcome.delivered
    assert outcome.error == "HTTP 500 (after 3 attempts)"
    assert len(retries) == len(waits) == 2


# -- the commit rule ------------------------------------------------------------------------


def test_the_offset_committed_never_passes_a_record_not_done() -> None:
    progress = PartitionProgress(next_offset=10)
    assert progress.committable() == 10
    progress.fetched(10, 2)  # two targets want it
    progress.fetched(11, 0)  # no target wants it: done at once
    progress.fetched(12, 1)
    assert progress.committable() == 10
    progress.done(12)  # a later record done first: the commit still waits for 10
    assert progress.committable() == 10
    progress.done(10)
    assert progress.committable() == 10  # one of its two notifications is left
    progress.done(10)
    assert progress.committable() == 13
    progress.done(10)  # a late repeat changes nothing
    assert progress.committable() == 13


def test_only_partitions_that_moved_are_committed() -> None:
    progress: Progress[str] = Progress()
    first = progress.assign("p0", 5, committed=5)
    assert progress.to_commit() == {}
    first.fetched(5, 1)
    assert progress.to_commit() == {}
    assert progress.pending() == 1
    first.done(5)
    assert progress.to_commit() == {"p0": 6}
    progress.committed({"p0": 6})
    assert progress.to_commit() == {}
    fresh = progress.assign("p1", 0, committed=None)  # a new group's start: committed now
    assert progress.to_commit() == {"p1": 0}
    progress.revoke("p1")
    fresh.fetched(0, 0)  # what a revoked partition's deliveries do counts no more
    assert progress.to_commit() == {}


def notifier_config() -> NotifierConfig:
    return NotifierConfig(
        connection=Connection(("127.0.0.1:9",)),
        group_id="app-notify",
        transitions_topic="transitions",
        policy_events_topic="events",
        dead_letter_topic="dead",
        source="remediator/app",
        public_url="http://localhost:6066",
    )


def consumer_record(topic: str, offset: int, value: dict[str, Any]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=orjson.dumps(value),
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=1,
        headers=(),
    )


def test_each_record_is_queued_for_every_target_that_wants_it_and_counted_pending() -> None:
    targets = [
        Target(target(name="all", on=["*"])),
        Target(target(name="failures", on=["FAILED"])),
        Target(target(name="storms", on=["BLAST_RADIUS_TRIPPED"], clusters=["other"])),
    ]
    notifier = Notifier(notifier_config(), targets, clock=lambda: T0)
    tp = TopicPartition("transitions", 0)
    notifier._dispatch(tp, consumer_record("transitions", 7, transition("FAILED", "RUNNING")))
    notifier._dispatch(tp, consumer_record("transitions", 8, {"not": "a transition"}))
    notifier._dispatch(TopicPartition("events", 0), consumer_record("events", 0, policy_event()))
    queued = {name: queue.qsize() for name, queue in notifier._queues.items()}
    assert queued == {"all": 2, "failures": 1, "storms": 0}
    progress = notifier.progress.get(tp)
    assert progress is not None
    assert progress.pending == {7: 2}
    assert progress.committable() == 7


def test_the_metrics_count_each_result_per_target() -> None:
    metrics = Metrics()
    metrics.notified("ops", "retried")
    metrics.notified("ops", "delivered", 0.2)
    metrics.notified("ops", "given_up")
    registry = metrics.registry
    for result in ("retried", "delivered", "given_up"):
        labels = {"target": "ops", "result": result}
        assert registry.get_sample_value("remediator_notifications_total", labels) == 1.0
    count = registry.get_sample_value(
        "remediator_notification_delivery_seconds_count", {"target": "ops"}
    )
    assert count == 1.0


def test_httpx_request_lines_do_not_show_a_targets_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """httpx logs each request's URL (at DEBUG in the worker): a Slack webhook's path is its
    credential, so while the filter is on the httpx logger only scheme and host show."""
    secret_url = "https://hooks.example.com/services/T000/B000/s3cretPath?token=abc"
    hide = HideTargetPaths([secret_url])
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    logger = logging.getLogger("httpx")
    logger.addFilter(hide)
    try:
        with caplog.at_level(logging.DEBUG), httpx.Client(transport=transport) as client:
            client.post(secret_url, content=b"{}")
            client.post("https://other.example.com/kept/path", content=b"{}")
    finally:
        logger.removeFilter(hide)
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(lines) == 2, lines
    assert "s3cretPath" not in lines[0]
    assert "token=abc" not in lines[0]
    assert "https://hooks.example.com/…" in lines[0]
    assert "https://other.example.com/kept/path" in lines[1]  # not a target: as it was
