"""Bounded outputs (issue 18): long input strings are clipped, not refused; a remediation
record stays under its byte budget by dropping its oldest signals and linked alerts; the
logs and list replies are cut by bytes as well as by count."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from remediator.api.auth import Caller, Role
from remediator.api.errors import contract_errors
from remediator.api.views import Api
from remediator.domain import budget, correlate
from remediator.domain.bounds import (
    MAX_ANNOTATION_KEY_CHARS,
    MAX_ANNOTATION_VALUE_CHARS,
    MAX_ANNOTATIONS,
    MAX_ARCHIVE_BYTES,
    MAX_DECISIONS_BYTES,
    MAX_NAME_CHARS,
    MAX_PAGE_BYTES,
    MAX_REMEDIATION_BYTES,
    MAX_TEXT_CHARS,
    TRIM_TO_BYTES,
    clip,
)
from remediator.domain.commands import (
    EVERYWHERE,
    Command,
    CommandKind,
    Order,
    fit_page,
    merge_pages,
)
from remediator.domain.models import PassiveHealthCheckEvent, Remediation, dump_json
from remediator.domain.policy import DEFAULT_POLICY, BlastRadius
from remediator.domain.replies import Reply
from remediator.domain.state import InstanceState
from remediator.pipeline.context import append_line
from remediator.pipeline.messages import InboxMessage, Route
from tests.builders import T0, event, run
from tests.harness import TOPICS, Harness

LONG = "x" * 300_000
ACCENTS = "é" * 3000  # two bytes each in UTF-8


def huge_event(n: int, **overrides: Any) -> PassiveHealthCheckEvent:
    """A CRITICAL alert as large as the contract allows it to be: long names, many long
    annotations (what an input up to REMEDIATOR_MAX_INPUT_BYTES may carry)."""
    fields: dict[str, Any] = {
        "alert_name": f"DmesgXidError{'-' * 400}{n}",
        "instance_name": "n" * 1000,
        "observed_at": (T0 + timedelta(seconds=n)).isoformat(),
        "annotations": {f"{k:03d}{'k' * 100}": f"{n}{ACCENTS}" for k in range(60)},
    }
    fields.update(overrides)
    return event(**fields)


# --- clipping at the boundary -----------------------------------------------------------


def test_clip_keeps_short_strings_and_says_how_large_a_clipped_one_was() -> None:
    assert clip("short", 10) == "short"
    text = "é" * 100  # 200 bytes
    clipped = clip(text, 40)
    assert len(clipped) == 40
    assert clipped.endswith("…(truncated, 200 bytes)")
    assert clipped.startswith("é")
    assert clip(clipped, 40) == clipped  # clipping again changes nothing


def test_long_input_strings_are_accepted_and_stored_clipped() -> None:
    signal = huge_event(1)
    assert len(signal.alert_name) == MAX_NAME_CHARS
    assert signal.alert_name.endswith("bytes)")
    assert signal.instance_name is not None
    assert len(signal.instance_name) == MAX_NAME_CHARS
    annotations = signal.annotations or {}
    assert len(annotations) == MAX_ANNOTATIONS
    assert all(len(k) <= MAX_ANNOTATION_KEY_CHARS for k in annotations)
    assert all(len(v) == MAX_ANNOTATION_VALUE_CHARS for v in annotations.values())
    test = run(test=LONG, message=LONG, labels={"rack": LONG})
    assert len(test.test) == MAX_NAME_CHARS
    assert test.message is not None
    assert len(test.message) == MAX_TEXT_CHARS
    assert len((test.labels or {})["rack"]) == MAX_NAME_CHARS


def test_usual_input_is_kept_as_it_came() -> None:
    signal = event(annotations={"xid": "79", "gpu": "3"}, instance_name="gpu-node-1")
    assert signal.annotations == {"xid": "79", "gpu": "3"}
    assert signal.instance_name == "gpu-node-1"


def test_api_text_and_control_plane_errors_are_clipped() -> None:
    harness = Harness()
    harness.signal(run())
    state = harness.state()
    assert state is not None
    assert state.open is not None
    reply = harness.command(
        CommandKind.REJECT, remediation_id=state.open.remediation.id, comment=LONG
    )
    assert reply.remediation is not None
    assert len(reply.remediation.review_comment or "") == MAX_TEXT_CHARS


# --- the record's byte budget -------------------------------------------------------------


def fed(harness: Harness, count: int) -> list[PassiveHealthCheckEvent]:
    signals = [huge_event(n) for n in range(count)]
    for signal in signals:  # one batch each, as a worker would apply a slow trickle
        harness.signal(signal, now=T0 + timedelta(seconds=1))
    return signals


def test_a_remediation_fed_many_large_alerts_stays_under_its_budget() -> None:
    harness = Harness()
    signals = fed(harness, 60)
    raw = [r.value or b"" for r in harness.outputs if r.topic == TOPICS.transitions]
    assert len(raw) == 60  # every alert still makes a transition: nothing stalls
    assert max(len(value) for value in raw) < MAX_REMEDIATION_BYTES + 16 * 1024
    last = harness.transitions()[-1].remediation
    assert len(dump_json(last)) <= MAX_REMEDIATION_BYTES
    assert last.linked_alerts_dropped > 0
    assert last.signals_dropped == 0  # signal references are small: alerts go first
    ids = [alert.passive_health_check_alert_id for alert in last.linked_alerts]
    assert ids[0] == str(signals[0].event_id)  # the one that opened it
    assert ids[-1] == str(signals[-1].event_id)  # and the newest
    assert len(ids) + last.linked_alerts_dropped == 60
    assert [s.id for s in last.signals] == [str(s.event_id) for s in signals]
    stored = harness.tables.state.get(b"c1/i1") or b""
    assert len(stored) < 2 * MAX_REMEDIATION_BYTES


def test_oldest_signals_go_too_when_alerts_alone_do_not_suffice() -> None:
    record = _record(signals=400, alerts=3)
    assert budget.measure(record) > MAX_REMEDIATION_BYTES
    trimmed, size = budget.fit(record, None)
    assert size == budget.measure(trimmed) <= TRIM_TO_BYTES
    assert trimmed.signals[0] == record.signals[0]
    assert trimmed.signals[-1] == record.signals[-1]
    assert trimmed.signals_dropped == len(record.signals) - len(trimmed.signals) > 0
    # The oldest went: what is kept after the opener is the newest run.
    assert trimmed.signals[1:] == record.signals[-(len(trimmed.signals) - 1) :]


def test_a_record_that_cannot_shrink_is_left_to_the_sender() -> None:
    record = _record(signals=2, alerts=2)
    assert budget.trim(record, 10**9) == record


def test_the_record_is_measured_only_when_its_bound_passes_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured: list[int] = []
    real = budget.measure

    def counting(record: Remediation) -> int:
        measured.append(1)
        return real(record)

    monkeypatch.setattr(budget, "measure", counting)
    harness = Harness()
    harness.signal(event(observed_at=T0.isoformat()))
    for n in range(1, 90):  # small alerts: the bound never nears the budget
        harness.signal(event(alert_name="GpuEccDoubleBitError", observed_at=_at(n)))
    assert len(measured) == 1  # when it opened, and never again
    state = harness.state()
    assert state is not None
    assert state.open is not None
    assert state.open_bytes is not None
    assert state.open_bytes >= len(dump_json(state.open.remediation))


def test_the_size_kept_with_the_state_is_an_upper_bound_through_every_change() -> None:
    harness = Harness()
    for n in range(40):
        harness.signal(huge_event(n) if n % 3 else run(completed_at=_at(n)))
        state = harness.state()
        assert state is not None
        assert state.open is not None
        assert state.open_bytes is not None
        assert state.open_bytes >= len(dump_json(state.open.remediation))


def test_a_replay_from_the_stored_state_decides_the_same() -> None:
    harness = Harness()
    fed(harness, 20)
    stored = harness.stored()
    assert stored is not None
    again = InstanceState.model_validate_json(dump_json(stored))
    signal = huge_event(99)
    first = correlate.decide(stored, signal, T0)
    second = correlate.decide(again, signal, T0)
    assert first.transitions == second.transitions
    assert first.state == second.state


# --- logs and pages -----------------------------------------------------------------------


def test_a_log_keeps_its_newest_lines_within_its_bytes() -> None:
    log = None
    for n in range(10):
        log = append_line(log, f"{n}".encode() * 30, limit=50, max_bytes=100)
    assert log == b"9" * 30 + b"\n" + b"8" * 30 + b"\n" + b"7" * 30
    assert append_line(b"a\nb", b"x" * 500, limit=50, max_bytes=100) == b"x" * 500
    assert append_line(b"a\nb\nc", b"x", limit=2, max_bytes=100) == b"x\na"


def test_the_archive_and_decisions_stay_within_their_bytes() -> None:
    harness = Harness()
    for round_ in range(12):  # an hour apart: past the cooldown of the one cancelled
        for n in range(8):
            at = T0 + timedelta(hours=round_, seconds=n)
            harness.signal(huge_event(round_ * 100 + n, observed_at=at.isoformat()), now=at)
        state = harness.state()
        assert state is not None
        assert state.open is not None
        harness.command(CommandKind.CANCEL, remediation_id=state.open.remediation.id)
    archive = harness.tables.archive.get(b"c1/i1") or b""
    decisions = harness.tables.decisions.get(b"c1/i1") or b""
    assert 1 < len(archive.split(b"\n")) < 12
    assert len(archive) <= MAX_ARCHIVE_BYTES
    assert len(decisions) <= MAX_DECISIONS_BYTES


def test_a_list_reply_stops_within_its_bytes_and_says_more_follow() -> None:
    roomy = BlastRadius(max_open=100, max_percent=100)
    harness = Harness(DEFAULT_POLICY.model_copy(update={"blast_radius": roomy}))
    for instance in range(12):
        for n in range(8):
            harness.signal(huge_event(instance * 100 + n, instance_id=f"i{instance}"))
    reply = harness.command(CommandKind.LIST, instance_id="*", route=Route.CLUSTER, limit=501)
    page = reply.remediations or []
    assert reply.truncated
    assert 0 < len(page) < 12
    assert len(orjson.dumps([r.model_dump(mode="json") for r in page])) <= MAX_PAGE_BYTES
    replies = [r for r in harness.outputs if r.topic == TOPICS.replies]
    assert len(replies[-1].value or b"") < MAX_PAGE_BYTES + 4096


class HarnessGateway:
    """The API's way to the owners, straight into the in-memory harness (one partition)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    async def ask(self, command: Command, route: Route = Route.INSTANCE) -> Reply:
        self.harness.apply(InboxMessage(command=command, route=route))
        return [r for r in self.harness.replies() if r.command_id == command.command_id][-1]

    async def scan(self, command: Command) -> list[Reply]:
        route = Route.FLEET if command.cluster_id == EVERYWHERE else Route.CLUSTER
        return [await self.ask(command, route)]


@pytest.mark.parametrize("path", ["c1/instances/-", "-/instances/-"])
async def test_paging_through_large_records_gets_each_once_in_pages_that_fit(path: str) -> None:
    roomy = BlastRadius(max_open=100, max_percent=100)
    harness = Harness(DEFAULT_POLICY.model_copy(update={"blast_radius": roomy}))
    for instance in range(9):
        for n in range(6):
            harness.signal(huge_event(instance * 100 + n, instance_id=f"i{instance}"))
    api = Api(
        gateway=HarnessGateway(harness),  # type: ignore[arg-type]
        tokens={"t0ken": Caller("alice", Role.UNRESTRICTED)},
        clock=lambda: T0,
        unready=lambda: None,
        owned=list,
        app_id="test",
        openapi=lambda: b"{}",
    )
    app = web.Application(middlewares=[contract_errors])
    app.add_routes(api.routes())
    seen: list[str] = []
    token, pages = "", 0
    async with TestClient(TestServer(app)) as client:
        while True:
            response = await client.get(
                f"/v1/compute/clusters/{path}/remediations",
                params={"page_size": "500", "page_token": token},
                headers={"Authorization": "Bearer t0ken"},
            )
            assert response.status == 200
            body = await response.read()
            assert len(body) <= MAX_PAGE_BYTES + 1024
            page = orjson.loads(body)
            seen += [r["id"] for r in page["remediations"]]
            pages += 1
            if not page["has_next"]:
                break
            token = page["next_page_token"]
    assert pages > 2
    assert len(seen) == len(set(seen)) == 9


def test_merged_pages_end_where_a_cut_reply_ends() -> None:
    records = [_record(signals=1, alerts=1, n=n) for n in range(6)]
    order = Order()  # create_time desc: records[5] first
    newest_first = order.sort(records)
    # One owner had three records but could send only two; another sent all it had.
    cut = (newest_first[0:1] + newest_first[2:3], True)
    whole = ([newest_first[1], newest_first[3], newest_first[4]], False)
    page, more = merge_pages([cut, whole], order, size=10)
    assert page == newest_first[0:3]  # nothing after the cut reply's last record
    assert more
    page, more = merge_pages([whole], order, size=10)
    assert (page, more) == (whole[0], False)
    page, more = merge_pages([whole], order, size=2)
    assert (page, more) == (whole[0][:2], True)


def test_a_page_always_holds_one_record() -> None:
    big = _record(signals=1, alerts=1)
    assert fit_page([big, big], max_bytes=10) == ([big], True)
    assert fit_page([], max_bytes=10) == ([], False)


# --- helpers ------------------------------------------------------------------------------


def _at(n: int) -> str:
    return (T0 + timedelta(seconds=n)).isoformat()


def _record(*, signals: int, alerts: int, n: int = 0) -> Remediation:
    """A remediation with ``signals`` large signal references and ``alerts`` alerts."""
    opener = huge_event(0, instance_id=f"i{n}")
    decision = correlate.decide(None, opener, T0 + timedelta(seconds=n))
    record = decision.transitions[0].remediation
    refs = [
        correlate.signal_ref(run(test=f"T{k}{'t' * 300}", completed_at=_at(k)))
        for k in range(signals)
    ]
    linked = [record.linked_alerts[0]] * alerts
    return record.model_copy(update={"signals": refs, "linked_alerts": linked})


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/v1/compute/clusters/c1/instances/{x}/remediations"),  # a bad id
        ("GET", "/v1/compute/clusters/c1/instances/i1/remediations?state={x}"),  # an enum
        ("GET", "/v1/compute/clusters/c1/instances/i1/remediations?order_by={x}"),
        ("GET", "/v1/compute/clusters/c1/instances/i1/remediations?page_size={x}"),
    ],
)
async def test_an_error_about_input_repeats_only_a_little_of_it(method: str, url: str) -> None:
    """Echoed input is clipped everywhere (issue 19): a 6,000-character value comes back
    as 120 characters that say how large it was."""
    value = "/" + "x" * 6000 if "{x}/" in url else "x" * 6000
    api = Api(
        gateway=None,  # type: ignore[arg-type]  # refused before any command is sent
        tokens={"t0ken": Caller("alice", Role.UNRESTRICTED)},
        clock=lambda: T0,
        unready=lambda: None,
        owned=list,
        app_id="test",
        openapi=lambda: b"{}",
    )
    app = web.Application(middlewares=[contract_errors])
    app.add_routes(api.routes())
    async with TestClient(TestServer(app)) as client:
        response = await client.request(
            method,
            url.format(x=value.replace("/", "%2F")),
            headers={"Authorization": "Bearer t0ken"},
        )
        body = orjson.loads(await response.read())
    assert response.status == 400
    message = body["error"]["message"]
    assert "truncated" in message
    assert len(message) < 400
