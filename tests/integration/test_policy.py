"""The safety policy end to end: real worker, real broker, the REST API and the topics.

Event times are real (now, plus offsets) so that the cooldown, which starts when a
remediation ends on the service's clock, lines up with the signals' own times.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from remediator.domain.policy import default_policy_text
from tests.builders import event_payload, run_payload
from tests.integration.conftest import OPERATOR_TOKENS, Kafka, Names
from tests.integration.test_executor import ControlPlane, executor_env

pytestmark = pytest.mark.integration

V1 = "/v1/compute/clusters"


def policy_env(tmp_path: Path, extra: str = "", **settings: float) -> dict[str, str]:
    """The default policy (so its real cluster limits), its top-level ``settings``
    changed, with ``extra`` appended."""
    text = default_policy_text()
    for key, value in settings.items():
        text, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert found == 1, f"default-policy.toml has no top-level {key}"
    path = tmp_path / f"policy-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(text + "\n" + extra)
    return {"REMEDIATOR_POLICY_FILE": str(path), "REMEDIATOR_API_TOKENS": OPERATOR_TOKENS}


@pytest.fixture
def cluster() -> str:
    return f"cl-{uuid.uuid4().hex[:8]}"


def iso(base: datetime, minutes: float) -> str:
    return (base + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def alert(
    cluster: str, instance: str, at: str, status: str = "FIRING", **extra: Any
) -> dict[str, Any]:
    return event_payload(
        cluster_id=cluster,
        instance_id=instance,
        alert_name="NpdKernelDeadlock",
        status=status,
        observed_at=at,
        **extra,
    )


async def mine(kafka: Kafka, topic: str, cluster: str, at_least: int) -> list[dict[str, Any]]:
    """Records of one cluster on ``topic``, once at least ``at_least`` and quiet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 40
    while True:
        records = await kafka.read(topic, at_least=0, settle=1.0)
        found = [r for r in records if str(r["_key"]).split("/")[0] == cluster]
        if len(found) >= at_least:
            return found
        assert loop.time() < deadline, f"{len(found)} of {at_least} on {topic}: {found}"
        await asyncio.sleep(0.3)


async def until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_a_flapping_alert_opens_at_most_one_remediation_per_cooldown(
    start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str, tmp_path: Path
) -> None:
    client = api(start_worker(**policy_env(tmp_path)))
    base = datetime.now(UTC)
    # FIRING / RESOLVED every minute for 40 minutes of event time, in order. Each flap is
    # let through the pipeline (admission included) before the next, as minutes would.
    explain = f"{V1}/{cluster}/instances/i-1/explain"
    for minute in range(0, 40, 2):
        await kafka.produce(names.passive, alert(cluster, "i-1", iso(base, minute)), key=b"i-1")
        await kafka.produce(
            names.passive, alert(cluster, "i-1", iso(base, minute + 1), "RESOLVED"), key=b"i-1"
        )

        async def settled(last: str = iso(base, minute + 1)) -> bool:
            seen = (await client.get(explain)).json()["last_signal_at"]
            return seen is not None and datetime.fromisoformat(seen) >= datetime.fromisoformat(last)

        await until(settled, f"the flap at minute {minute} to settle")
    transitions = await mine(kafka, names.transitions, cluster, at_least=4)
    creations = [t for t in transitions if t["event"] == "CREATE_AUTOMATED"]
    resolutions = [t for t in transitions if t["event"] == "AUTO_RESOLVE"]
    # Opened at 0, auto-resolved at 1, cooldown of 30 minutes, opened again at 32.
    assert len(creations) == 2, [t["reason"] for t in transitions]
    assert len(resolutions) == 2
    opened_at = [
        datetime.fromisoformat(t["remediation"]["signals"][0]["observed_at"]) for t in creations
    ]
    assert opened_at[1] - opened_at[0] >= timedelta(minutes=30)
    assert all(t["to_state"] == "AUTO_RESOLVED" for t in resolutions)


async def test_auto_resolve_end_to_end(
    start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str, tmp_path: Path
) -> None:
    client = api(start_worker(**policy_env(tmp_path)))
    base = datetime.now(UTC)
    await kafka.produce(names.passive, alert(cluster, "i-1", iso(base, 0)), key=b"i-1")
    listing = await until(lambda: _list(client, cluster, "i-1"), "the remediation to open")
    rid = listing[0]["id"]
    await kafka.produce(names.passive, alert(cluster, "i-1", iso(base, 2), "RESOLVED"), key=b"i-1")

    async def resolved() -> dict[str, Any] | None:
        record = (await client.get(f"{V1}/{cluster}/instances/i-1/remediations/{rid}")).json()
        return record if record["state"] == "AUTO_RESOLVED" else None

    record = await until(resolved, "AUTO_RESOLVED")
    assert record["end_time"]
    explanation = (await client.get(f"{V1}/{cluster}/instances/i-1/explain")).json()
    assert [d["outcome"] for d in explanation["decisions"]][:2] == ["RESOLVED", "OPENED"]
    assert explanation["cooldown_until"]


async def test_a_storm_trips_the_blast_radius_queues_the_rest_and_opens_them_on_recovery(
    start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str, tmp_path: Path
) -> None:
    client = api(start_worker(**policy_env(tmp_path)))
    instances = [f"i-{n:02d}" for n in range(20)]
    base = datetime.now(UTC)
    # The cluster's 20 instances are known (healthy runs) before the storm.
    for instance in instances:
        await kafka.produce(
            names.active,
            run_payload(
                cluster_id=cluster, instance_id=instance, result="PASSED", completed_at=iso(base, 0)
            ),
            key=instance.encode(),
        )

    async def safety() -> dict[str, Any]:
        return dict((await client.get(f"{V1}/{cluster}/safety")).json())

    await until(lambda: _known(client, cluster, 20), "20 known instances")
    # 30 % of the cluster fails within a minute. The limit is 20 % of 20 = 4.
    storm = instances[:6]
    for n, instance in enumerate(storm):
        await kafka.produce(
            names.passive, alert(cluster, instance, iso(base, 1 + n / 10)), key=instance.encode()
        )
    events = await mine(kafka, _policy_topic(names), cluster, at_least=1)
    assert [e["kind"] for e in events] == ["BLAST_RADIUS_TRIPPED"]
    state = await safety()
    assert state["tripped_at"] is not None
    assert state["limit"] == 4
    assert len(state["unhealthy_instances"]) == 4
    opened = await until(lambda: _list(client, cluster, "-", 4), "4 remediations")
    assert len(opened) == 4
    refused = sorted(i for i in storm if i not in {r["instance_id"] for r in opened})
    assert state["waiting"] == refused  # queued (issue 13), first in line first
    explained = (await client.get(f"{V1}/{cluster}/instances/{refused[1]}/explain")).json()
    assert "blast radius" in explained["decisions"][0]["reason"]
    assert explained["decisions"][0]["outcome"] == "QUEUED"
    assert (explained["queued"]["place"], explained["queued"]["of"]) == (2, 2)

    # Recovery: operators reject two (down to 2 = half the limit), and it resumes.
    for record in opened[:2]:
        path = f"{V1}/{cluster}/instances/{record['instance_id']}/remediations/{record['id']}"
        answer = await client.post(f"{path}/reject", json={"comment": "false alarm"})
        assert answer.status_code == 200, answer.text
    # The two that waited open by themselves, no new signal needed, each with an event.
    events = await mine(kafka, _policy_topic(names), cluster, at_least=4)
    # (Cluster events and instance events are keyed differently: partitions, no order.)
    assert sorted(e["kind"] for e in events) == [
        "BLAST_RADIUS_RESUMED",
        "BLAST_RADIUS_TRIPPED",
        "QUEUE_ADMITTED",
        "QUEUE_ADMITTED",
    ]
    admitted = [e for e in events if e["kind"] == "QUEUE_ADMITTED"]
    assert sorted(e["instance_id"] for e in admitted) == refused
    state = await safety()
    assert state["tripped_at"] is None
    assert state["waiting"] == []
    for instance in refused:
        (record,) = await until(lambda i=instance: _list(client, cluster, i), f"{instance} open")
        assert record["state"] == "PENDING_APPROVAL"
        assert record["passive_health_check_event_id"]  # the evidence of the signal it waited on


async def test_pause_opt_out_and_auto_approval_through_the_api(
    start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str, tmp_path: Path
) -> None:
    extra = f'[clusters.{cluster}]\nauto_approve = ["reboot-faults"]\n'
    client = api(start_worker(**policy_env(tmp_path, extra)))
    base = datetime.now(UTC)

    paused = await client.put(f"{V1}/{cluster}/pause", json={"reason": "rack maintenance"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"]["by"] == "operator"
    await kafka.produce(names.passive, alert(cluster, "i-1", iso(base, 0)), key=b"i-1")

    async def decided(instance: str) -> list[dict[str, Any]]:
        return list(
            (await client.get(f"{V1}/{cluster}/instances/{instance}/explain")).json()["decisions"]
        )

    decisions = await until(lambda: decided("i-1"), "a decision on i-1")
    assert decisions[0]["outcome"] == "BLOCKED"
    assert "cluster paused by operator: rack maintenance" in decisions[0]["reason"]
    # Manual remediations stay possible while paused.
    manual = await client.post(
        f"{V1}/{cluster}/instances/i-9/remediations", params={"remediation_id": f"m-{cluster}"}
    )
    assert manual.status_code == 200, manual.text
    assert (await client.delete(f"{V1}/{cluster}/pause")).json()["paused"] is None

    # An opted-out instance opens nothing; the others open, approved at once by policy.
    opted = await client.put(f"{V1}/{cluster}/instances/i-2/opt-out", json={"reason": "benchmark"})
    assert opted.status_code == 200, opted.text
    assert opted.json()["opt_out"]["reason"] == "benchmark"
    await kafka.produce(names.passive, alert(cluster, "i-2", iso(base, 1)), key=b"i-2")
    await kafka.produce(names.passive, alert(cluster, "i-3", iso(base, 1)), key=b"i-3")
    (approved,) = await until(lambda: _list(client, cluster, "i-3"), "i-3 to open")
    assert approved["state"] == "PENDING"
    assert approved["reviewed_by"] == "Auto-Approved"
    decisions = await until(lambda: decided("i-2"), "a decision on i-2")
    assert "opted out by operator: benchmark" in decisions[0]["reason"]
    assert await _list(client, cluster, "i-2") == []

    bad = await client.put(f"{V1}/{cluster}/pause", json={})
    assert bad.status_code == 400
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    events = await mine(kafka, _policy_topic(names), cluster, at_least=2)
    assert [e["kind"] for e in events] == ["CLUSTER_PAUSED", "CLUSTER_RESUMED"]


async def test_shadow_mode_publishes_what_it_would_do(
    start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str, tmp_path: Path
) -> None:
    client = api(start_worker(**policy_env(tmp_path, f"[clusters.{cluster}]\nshadow = true\n")))
    base = datetime.now(UTC)
    await kafka.produce(names.passive, alert(cluster, "i-1", iso(base, 0)), key=b"i-1")
    (event,) = await mine(kafka, _policy_topic(names), cluster, at_least=1)
    assert event["kind"] == "SHADOW_OPEN"
    assert "would open REBOOT_VM" in event["reason"]
    assert await _list(client, cluster, "i-1") == []


# -- post-repair verification (issue 13) ------------------------------------------------


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """The simulated control plane, so that remediations really run and SUCCEED."""
    cp = ControlPlane(tmp_path / "control-plane.log")
    cp.start("--latency", "REBOOT_VM=0.2", "--latency", "DELETE_VM=0.2")
    try:
        yield cp
    finally:
        cp.stop()


async def _repaired(
    kafka: Kafka, names: Names, client: httpx.AsyncClient, cluster: str, base: datetime
) -> dict[str, Any]:
    """NpdKernelDeadlock on i-1 at ``base`` opens a REBOOT_VM, auto-approved by the
    cluster's policy; the executor carries it out on the simulated control plane."""
    await kafka.produce(names.passive, alert(cluster, "i-1", iso(base, 0)), key=b"i-1")

    async def succeeded() -> dict[str, Any] | None:
        records = await _list(client, cluster, "i-1")
        return dict(records[0]) if records and records[0]["state"] == "SUCCEEDED" else None

    done = dict(await until(succeeded, "the remediation to SUCCEED", timeout=40))
    assert done["mode"] == "REMEDIATION_MODE_REBOOT_VM"
    return done


async def _verification(client: httpx.AsyncClient, cluster: str, state: str) -> dict[str, Any]:
    async def noted() -> dict[str, Any] | None:
        answer = (await client.get(f"{V1}/{cluster}/instances/i-1/explain")).json()
        note = answer.get("verification")
        return note if note is not None and note["state"] == state else None

    return dict(await until(noted, f"verification {state}"))


def _passing(cluster: str, instance: str, at: str) -> dict[str, Any]:
    return run_payload(cluster_id=cluster, instance_id=instance, result="PASSED", completed_at=at)


async def test_a_repair_followed_by_a_passing_run_in_time_is_verified_quietly(
    start_worker: Any,
    api: Any,
    kafka: Kafka,
    names: Names,
    cluster: str,
    tmp_path: Path,
    control_plane: ControlPlane,
) -> None:
    extra = f'[clusters.{cluster}]\nauto_approve = ["reboot-faults"]\n'
    env = {**executor_env(control_plane), **policy_env(tmp_path, extra)}
    client = api(start_worker(**env))
    base = datetime.now(UTC)
    done = await _repaired(kafka, names, client, cluster, base)
    pending = await _verification(client, cluster, "PENDING")
    assert pending["remediation_id"] == done["id"]
    since = datetime.fromisoformat(pending["since"])
    assert datetime.fromisoformat(pending["deadline"]) - since == timedelta(minutes=30)
    assert since >= datetime.fromisoformat(done["end_time"])

    # A passing run five minutes (event time) after the repair shows the instance healthy.
    passing = _passing(cluster, "i-1", iso(base, 5))
    await kafka.produce(names.active, passing, key=b"i-1")
    verified = await _verification(client, cluster, "VERIFIED")
    assert verified["by"] == f"run:{passing['run_id']}"
    assert verified["at"] == iso(base, 5)
    # The cluster's clock then moves far past the deadline: nothing is published.
    await kafka.produce(names.active, _passing(cluster, "i-2", iso(base, 90)), key=b"i-2")
    await until(lambda: _known(client, cluster, 2), "the later signal to be applied")
    records = await kafka.read(names.policy_events, at_least=0, settle=1.5)
    assert [r for r in records if r["cluster_id"] == cluster] == []
    assert (await _verification(client, cluster, "VERIFIED"))["by"] == verified["by"]


async def test_no_health_by_the_deadline_fails_the_repair_and_escalates_at_once(
    start_worker: Any,
    api: Any,
    kafka: Kafka,
    names: Names,
    cluster: str,
    tmp_path: Path,
    control_plane: ControlPlane,
) -> None:
    extra = f'[clusters.{cluster}]\nauto_approve = ["reboot-faults"]\n'
    # A two-hour cooldown: only the failed verification can open anything at minute 41.
    policy = policy_env(tmp_path, extra, cooldown_minutes=120)
    env = {**executor_env(control_plane), **policy}
    client = api(start_worker(**env))
    base = datetime.now(UTC)
    done = await _repaired(kafka, names, client, cluster, base)
    pending = await _verification(client, cluster, "PENDING")

    # Only later signals, past the deadline: another instance's passing run at minute 40.
    await kafka.produce(names.active, _passing(cluster, "i-2", iso(base, 40)), key=b"i-2")
    (event,) = await mine(kafka, names.policy_events, cluster, at_least=1)
    assert event["kind"] == "VERIFICATION_FAILED"
    assert event["_key"] == f"{cluster}/i-1"
    assert (event["instance_id"], event["rule"]) == ("i-1", "reboot-faults")
    assert event["mode"] == "REMEDIATION_MODE_REBOOT_VM"
    assert event["occurred_at"] == pending["deadline"]
    assert done["id"] in event["reason"]
    failed = await _verification(client, cluster, "FAILED")
    assert (failed["at"], failed["by"]) == (pending["deadline"], None)

    # The instance's next failing signal, deep inside the cooldown, opens the next heavier
    # mode at once.
    await kafka.produce(names.passive, alert(cluster, "i-1", iso(base, 41)), key=b"i-1")
    escalated = (await until(lambda: _list(client, cluster, "i-1", 2), "the escalation"))[0]
    assert escalated["id"] != done["id"]
    assert escalated["mode"] == "REMEDIATION_MODE_VM_ONLY"
    explanation = (await client.get(f"{V1}/{cluster}/instances/i-1/explain")).json()
    assert explanation["decisions"][0]["outcome"] == "OPENED"
    assert "escalated at once" in explanation["decisions"][0]["reason"]
    # Exactly one event, even though the cluster was settled many times since.
    events = await mine(kafka, names.policy_events, cluster, at_least=1)
    assert [e["kind"] for e in events] == ["VERIFICATION_FAILED"]


async def test_a_recommendation_not_approved_in_time_expires_on_event_time(
    start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str, tmp_path: Path
) -> None:
    """Approval expiry (issue 13) on the real broker: event time only. A recommendation
    opened from a signal two days old waits; a signal of another instance an hour later
    changes nothing; one 25 hours later (the default TTL is 24 h) cancels it with the
    reason, an EXPIRE transition stamped at the deadline and an APPROVAL_EXPIRED event."""
    client = api(start_worker(**policy_env(tmp_path)))
    base = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    await kafka.produce(names.passive, alert(cluster, "i-1", iso(base, 0)), key=b"i-1")
    (opened,) = await until(lambda: _list(client, cluster, "i-1"), "the recommendation")
    assert opened["state"] == "PENDING_APPROVAL"

    await kafka.produce(names.active, _passing(cluster, "i-2", iso(base, 60)), key=b"i-2")
    await until(lambda: _known(client, cluster, 2), "the second instance")
    (still,) = await _list(client, cluster, "i-1")
    assert still["state"] == "PENDING_APPROVAL"

    await kafka.produce(names.active, _passing(cluster, "i-3", iso(base, 25 * 60)), key=b"i-3")
    events = await mine(kafka, names.policy_events, cluster, at_least=1)
    assert [(e["kind"], e["instance_id"]) for e in events] == [("APPROVAL_EXPIRED", "i-1")]
    deadline = iso(base, 24 * 60)
    assert events[0]["occurred_at"] == deadline
    (expired,) = await _list(client, cluster, "i-1")
    assert expired["state"] == "CANCELLED"
    transitions = [
        t
        for t in await kafka.read(names.transitions, at_least=2)
        if t["remediation_id"] == opened["id"]
    ]
    last = max(transitions, key=lambda t: t["sequence"])
    assert (last["event"], last["to_state"]) == ("EXPIRE", "CANCELLED")
    assert last["occurred_at"] == deadline
    assert "approval expired" in last["reason"]


def _policy_topic(names: Names) -> str:
    return names.policy_events


async def _list(
    client: httpx.AsyncClient, cluster: str, instance: str, at_least: int = 1
) -> list[dict[str, Any]]:
    body = (await client.get(f"{V1}/{cluster}/instances/{instance}/remediations")).json()
    records = list(body["remediations"])
    return records if len(records) >= at_least else []


async def _known(client: httpx.AsyncClient, cluster: str, count: int) -> bool:
    body = (await client.get(f"{V1}/{cluster}/safety")).json()
    return bool(body["known_instances"] >= count)


OLGA_TOKEN = "olga-freeze-t0ken"  # an operator: may create, but not during a freeze
ADA_TOKEN = "ada-freeze-t0ken"  # an admin: may, with a reason


async def test_a_freeze_defers_a_storm_and_the_queue_opens_when_it_ends(
    start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str, tmp_path: Path
) -> None:
    base = datetime.now(UTC)
    extra = (
        f'[[freeze]]\nname = "launch"\nclusters = ["{cluster}"]\nstart = {iso(base, 10)}\n'
        f'end = {iso(base, 20)}\nreason = "GA launch"\n'
    )
    env = policy_env(tmp_path, extra)
    env["REMEDIATOR_API_TOKENS"] += f",olga:operator={OLGA_TOKEN},ada:admin={ADA_TOKEN}"
    worker = start_worker(**env)
    client = api(worker)
    instances = [f"i-{n:02d}" for n in range(20)]
    for instance in instances:  # known, healthy, before the freeze
        passed = _passing(cluster, instance, iso(base, 0))
        await kafka.produce(names.active, passed, key=instance.encode())
    await until(lambda: _known(client, cluster, 20), "20 known instances")

    storm = instances[:6]  # 30 % fails inside the freeze (the limit is 4)
    for n, instance in enumerate(storm):
        await kafka.produce(
            names.passive, alert(cluster, instance, iso(base, 11 + n / 10)), key=instance.encode()
        )
    safety = await until(
        lambda: _safety_if(client, cluster, lambda s: len(s["waiting"]) == 6), "6 waiting"
    )
    assert safety["waiting"] == storm  # in the order they failed
    assert [f["name"] for f in safety["freezes"]] == ["launch"]
    assert await _list(client, cluster, "-") == []  # nothing opened
    explained = (await client.get(f"{V1}/{cluster}/instances/{storm[0]}/explain")).json()
    assert explained["queued"]["blocked"] == "freeze"
    assert explained["freeze"]["reason"] == "GA launch"
    summary = (await client.get("/v1/compute/clusters")).json()["clusters"]
    assert [c["freezes"][0]["name"] for c in summary if c["cluster_id"] == cluster] == ["launch"]
    metrics = (await client.get("/metrics")).text
    assert f'remediator_change_freezes{{cluster_id="{cluster}"}} 1.0' in metrics

    # By hand: an operator is refused (409, the freeze named); an admin with a reason is not.
    create = f"{V1}/{cluster}/instances/{instances[19]}/remediations"
    body = {"mode": "REMEDIATION_MODE_REBOOT_VM", "reason": "customer escalation"}
    refused = await client.post(create, json=body, headers=_bearer(OLGA_TOKEN))
    assert refused.status_code == 409, refused.text
    assert "change freeze launch" in refused.json()["message"]
    made = await client.post(create, json=body, headers=_bearer(ADA_TOKEN))
    assert made.status_code == 200, made.text

    # The freeze ends with the first input at or after its end: the queue opens, within
    # the blast radius (4 at once; the manual one does not count against it).
    await kafka.produce(names.active, _passing(cluster, instances[18], iso(base, 20)), key=b"i-18")
    opened = await until(lambda: _list(client, cluster, "-", 5), "the queue to open")
    automated = sorted(r["instance_id"] for r in opened if r["trigger"].endswith("AUTOMATED"))
    assert automated == storm[:4]
    events = await mine(kafka, names.policy_events, cluster, at_least=6)
    kinds = sorted(e["kind"] for e in events)
    assert kinds == ["FREEZE_ENDED", "FREEZE_STARTED", *["QUEUE_ADMITTED"] * 4], kinds
    assert {e["freeze"] for e in events if e["kind"].startswith("FREEZE")} == {"launch"}
    safety = await _safety_if(client, cluster, lambda s: True)
    assert safety["freezes"] == []
    assert safety["waiting"] == storm[4:]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _safety_if(
    client: httpx.AsyncClient, cluster: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    body = dict((await client.get(f"{V1}/{cluster}/safety")).json())
    return body if check(body) else None
