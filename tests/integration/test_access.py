"""Who may do what, and the trail it leaves: roles, two-person approval, the audit topic,
and a client-chosen remediation id that belongs to one remediation only (issue 19).

One worker on the embedded broker serves the module (the broker changes none of these
outcomes), with a token of every role. Driven as users drive it: httpx for the matrix of
rights, the provider's SDK (strict response validation) for approvals and refusals, a real
consumer for the audit and policy-event topics.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from together import AsyncTogether, ConflictError, PermissionDeniedError

from tests.integration.conftest import (
    Broker,
    Kafka,
    Names,
    WorkerProcess,
    launch_worker,
    open_automated,
    unique_names,
)

ROLES = {
    "viv": ("viewer", "viewer-t0ken"),
    "olga": ("operator", "operator-t0ken"),
    "otto": ("operator", "second-operator-t0ken"),
    "ada": ("admin", "admin-t0ken"),
    "am": ("webhook", "webhook-t0ken"),
}
TOKENS = ",".join(f"{who}:{role}={token}" for who, (role, token) in ROLES.items())
# An entry written the old way, without a role: every right, as before.
TOKENS += ",legacy=legacy-t0ken"
EVICT = "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT"


def bearer(who: str) -> dict[str, str]:
    token = "legacy-t0ken" if who == "legacy" else ROLES[who][1]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def access_names() -> Names:
    return unique_names()


@pytest.fixture(scope="module")
def worker(
    broker: Broker, access_names: Names, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    process = launch_worker(
        broker, access_names, tmp_path_factory.mktemp("access"), REMEDIATOR_API_TOKENS=TOKENS
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def http(worker: WorkerProcess) -> AsyncIterator[httpx.AsyncClient]:
    # Reads as the viewer unless a call says otherwise.
    headers = bearer("viv")
    async with httpx.AsyncClient(base_url=worker.base_url, headers=headers, timeout=30) as client:
        yield client


def sdk(worker: WorkerProcess, who: str) -> AsyncTogether:
    token = bearer(who)["Authorization"].removeprefix("Bearer ")
    return AsyncTogether(api_key=token, base_url=worker.base_url, _strict_response_validation=True)


@pytest.fixture
def cluster() -> str:
    return f"cl-{uuid.uuid4().hex[:8]}"


def instance_path(cluster: str, instance: str, *rest: str) -> str:
    return "/".join([f"/v1/compute/clusters/{cluster}/instances/{instance}", *rest])


async def test_each_role_may_do_what_it_names_and_nothing_more(
    http: httpx.AsyncClient, cluster: str
) -> None:
    remediations = instance_path(cluster, "i1", "remediations")
    calls = {
        "read": ("GET", remediations, None),
        "explain": ("GET", instance_path(cluster, "i1", "explain"), None),
        "create": ("POST", instance_path(cluster, "i9", "remediations"), {}),
        "opt-out": ("PUT", instance_path(cluster, "i2", "opt-out"), {"reason": "burn-in"}),
        "pause": ("PUT", f"/v1/compute/clusters/{cluster}/pause", {"reason": "maintenance"}),
        "webhook": ("POST", "/v1/alertmanager", {"alerts": [], "version": "4"}),
    }
    allowed = {
        "viv": {"read", "explain"},
        "olga": {"read", "explain", "create"},
        "ada": {"read", "explain", "create", "opt-out", "pause"},
        "am": {"webhook"},
        "legacy": set(calls),
    }
    for who, rights in allowed.items():
        for name, (method, url, body) in calls.items():
            if name == "create":  # a fresh instance each time: one open remediation each
                url = instance_path(cluster, f"i-{who}", "remediations")
            response = await http.request(method, url, json=body, headers=bearer(who))
            if name in rights:
                assert response.status_code < 400, (who, name, response.text)
                continue
            assert response.status_code == 403, (who, name, response.text)
            assert response.headers["x-should-retry"] == "false"
            error = response.json()["error"]
            assert error["status"] == "PERMISSION_DENIED"
            assert f"{who} has the role {ROLES[who][0]}" in error["message"]
    for who in [*ROLES, "legacy"]:
        whoami = (await http.get("/v3/whoami", headers=bearer(who))).json()
        assert (whoami["principal"], whoami["role"]) == (
            who,
            ROLES[who][0] if who in ROLES else "unrestricted",
        )


async def test_two_different_people_approve_an_eviction_through_the_sdk(
    worker: WorkerProcess,
    http: httpx.AsyncClient,
    kafka: Kafka,
    access_names: Names,
    cluster: str,
) -> None:
    opened = await open_automated(kafka, access_names, http, cluster, "i1")
    where = {"cluster_id": cluster, "instance_id": "i1"}
    async with sdk(worker, "olga") as olga, sdk(worker, "otto") as otto, sdk(worker, "viv") as viv:
        with pytest.raises(PermissionDeniedError, match="viv has the role viewer"):
            await viv.clusters.remediations.approve(opened["id"], **where)
        first = await olga.clusters.remediations.approve(
            opened["id"], **where, mode=EVICT, comment="GPU fell off the bus twice"
        )
        assert first.state == "PENDING_APPROVAL"
        extra = first.model_extra or {}
        assert extra["approvals_required"] == 2
        assert [(a["principal"], a["mode"]) for a in extra["approvals"]] == [("olga", EVICT)]
        with pytest.raises(ConflictError, match="a second, different person"):
            await olga.clusters.remediations.approve(opened["id"], **where, mode=EVICT)
        second = await otto.clusters.remediations.approve(opened["id"], **where, mode=EVICT)
        assert (second.state, second.mode, second.reviewed_by) == ("PENDING", EVICT, "otto")
    explained = (
        await http.get(instance_path(cluster, "i1", "explain"), headers=bearer("viv"))
    ).json()
    approvals = explained["open_remediation"]["approvals"]
    assert [a["principal"] for a in approvals] == ["olga", "otto"]
    # The instance's timeline has every call, the refused ones too (the audit trail in short).
    assert [(a["principal"], a["action"], a["status"]) for a in explained["audit"]] == [
        ("viv", "remediation.approve", 403),
        ("olga", "remediation.approve", 200),
        ("olga", "remediation.approve", 409),
        ("otto", "remediation.approve", 200),
    ]
    events = await kafka.read(access_names.policy_events, at_least=1)
    recorded = [
        e for e in events if e["kind"] == "APPROVAL_RECORDED" and e["cluster_id"] == cluster
    ]
    assert len(recorded) == 1
    assert "recorded by olga" in recorded[0]["reason"]


async def test_every_mutating_call_and_every_refusal_is_on_the_audit_topic(
    http: httpx.AsyncClient, kafka: Kafka, access_names: Names, cluster: str
) -> None:
    create = instance_path(cluster, "i1", "remediations")
    done = await http.post(
        create, json={"mode": "REMEDIATION_MODE_REBOOT_VM"}, headers=bearer("olga")
    )
    assert done.status_code == 200
    rid = done.json()["id"]
    refused = await http.post(
        instance_path(cluster, "i1", "remediations", rid, "cancel"), headers=bearer("viv")
    )
    assert refused.status_code == 403
    unknown = await http.put(
        f"/v1/compute/clusters/{cluster}/pause",
        json={"reason": "x"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert unknown.status_code == 401
    await http.get(create, headers=bearer("viv"))  # a read: not audited
    records = await kafka.read(access_names.audit, at_least=3)
    # Keyed by instance (or cluster): partitions differ, so order by time.
    mine = sorted(
        (r for r in records if r.get("cluster_id") == cluster), key=lambda r: r["occurred_at"]
    )
    assert [(r["action"], r["principal"], r["role"], r["outcome"], r["status"]) for r in mine] == [
        ("remediation.create", "olga", "operator", "OK", 200),
        ("remediation.cancel", "viv", "viewer", "REFUSED", 403),
        ("cluster.pause", None, None, "REFUSED", 401),
    ]
    created, cancelled, paused = mine
    assert (created["remediation_id"], created["mode"]) == (rid, "REMEDIATION_MODE_REBOOT_VM")
    assert created["_key"] == f"{cluster}/i1"
    assert (cancelled["remediation_id"], cancelled["error"]) == (rid, "PERMISSION_DENIED")
    assert paused["error"] == "UNAUTHENTICATED"
    assert "not-a-token" not in str(records)  # no credential in the trail


async def test_one_client_chosen_id_names_one_remediation_even_when_creates_race(
    http: httpx.AsyncClient, cluster: str
) -> None:
    """50 concurrent creates with one remediation_id, alternating two instances: one
    instance gets it (every call for it answers the same record), the other a 409."""
    rid = f"client-{uuid.uuid4().hex[:8]}"
    responses = await asyncio.gather(
        *(
            http.post(
                instance_path(cluster, f"i{n % 2}", "remediations"),
                params={"remediation_id": rid},
                json={},
                headers=bearer("olga"),
            )
            for n in range(50)
        )
    )
    by_instance: dict[str, set[int]] = {}
    for n, response in enumerate(responses):
        by_instance.setdefault(f"i{n % 2}", set()).add(response.status_code)
    assert sorted(by_instance.values(), key=sorted) == [{200}, {409}], by_instance
    winners = [r.json() for r in responses if r.status_code == 200]
    assert all(w == winners[0] for w in winners)
    listed = await http.get(
        f"/v1/compute/clusters/{cluster}/instances/-/remediations", headers=bearer("viv")
    )
    assert [r["id"] for r in listed.json()["remediations"]] == [rid]


async def test_the_id_of_an_automated_remediation_cannot_be_reused_by_hand(
    http: httpx.AsyncClient, kafka: Kafka, access_names: Names, cluster: str
) -> None:
    """Automated ids are not claimed (they never pass the claims table): a manual create
    on another instance given one is refused, so one id never names two remediations."""
    opened = await open_automated(kafka, access_names, http, cluster, "y")
    response = await http.post(
        instance_path(cluster, "x", "remediations"),
        params={"remediation_id": opened["id"]},
        json={"mode": "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT"},
        headers=bearer("olga"),
    )
    assert response.status_code == 409
    assert response.json()["error"]["status"] == "ALREADY_EXISTS"
    listed = await http.get(
        f"/v1/compute/clusters/{cluster}/instances/-/remediations", headers=bearer("viv")
    )
    assert [r["instance_id"] for r in listed.json()["remediations"]] == ["y"]
