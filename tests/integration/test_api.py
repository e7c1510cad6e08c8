"""The Remediations REST API against a running worker on a real broker, with httpx.

One worker serves the whole module; each test works in a cluster of its own and checks
both the API's answers and what landed on ``remediation-transitions``.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import (
    Broker,
    Kafka,
    Names,
    WorkerProcess,
    launch_worker,
    open_automated,
    unique_names,
)

TOKENS = "alice=alice-token,bob=bob-token"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}


@pytest.fixture(scope="module")
def api_names() -> Names:
    return unique_names()


@pytest.fixture(scope="module")
def worker(
    broker: Broker, api_names: Names, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    process = launch_worker(
        broker, api_names, tmp_path_factory.mktemp("api"), REMEDIATOR_API_TOKENS=TOKENS
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(worker: WorkerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=worker.base_url, headers=ALICE, timeout=30) as c:
        yield c


@pytest.fixture
def cluster() -> str:
    return f"cl-{uuid.uuid4().hex[:8]}"


def path(cluster: str, instance: str, *rest: str) -> str:
    return "/".join([f"/v1/compute/clusters/{cluster}/instances/{instance}/remediations", *rest])


async def transitions_of(
    kafka: Kafka, names: Names, cluster: str, at_least: int
) -> list[dict[str, Any]]:
    """Transitions of one cluster; waits for ``at_least`` and then for quiet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        records = await kafka.read(names.transitions, at_least=0, settle=0.5)
        mine = [r for r in records if str(r["_key"]).startswith(f"{cluster}/")]
        if len(mine) >= at_least:
            await asyncio.sleep(1.0)
            records = await kafka.read(names.transitions, at_least=0, settle=0.5)
            return [r for r in records if str(r["_key"]).startswith(f"{cluster}/")]
        assert loop.time() < deadline, f"{len(mine)} of {at_least} transitions for {cluster}"
        await asyncio.sleep(0.3)


def assert_error(response: httpx.Response, code: int, status: str) -> dict[str, Any]:
    assert response.status_code == code, response.text
    body = response.json()
    # The contract's object, plus its google.rpc.Status form for the SDK's CLI (additions).
    assert set(body) == {"error", "code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["status"] == status
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert body["message"] == body["error"]["message"]
    assert isinstance(body["error"]["type"], str)
    if code < 500:  # final: the SDK must not ask again
        assert response.headers["x-should-retry"] == "false"
    return body["error"]


async def test_manual_create_is_pending_and_published_once(
    client: httpx.AsyncClient, kafka: Kafka, api_names: Names, cluster: str
) -> None:
    response = await client.post(path(cluster, "i1"), json={"reason": "GPU 3 flaky"})
    assert response.status_code == 200, response.text
    rem = response.json()
    assert rem["state"] == "PENDING"
    assert rem["trigger"] == "REMEDIATION_TRIGGER_MANUAL"
    assert rem["mode"] == "REMEDIATION_MODE_VM_ONLY"
    assert (rem["requested_by"], rem["reason"]) == ("alice", "GPU 3 flaky")
    assert rem["create_time"] == rem["update_time"]
    assert (await client.get(path(cluster, "i1", rem["id"]))).json() == rem

    (transition,) = await transitions_of(kafka, api_names, cluster, 1)
    assert (transition["sequence"], transition["from_state"], transition["to_state"]) == (
        1,
        None,
        "PENDING",
    )
    assert transition["actor"] == "alice"
    assert transition["remediation"] == rem


async def test_automated_remediation_approved_with_mode_override(
    client: httpx.AsyncClient, kafka: Kafka, api_names: Names, cluster: str
) -> None:
    opened = await open_automated(kafka, api_names, client, cluster, "i1")
    assert opened["state"] == "PENDING_APPROVAL"

    response = await client.post(
        path(cluster, "i1", opened["id"], "approve"),
        json={"comment": "reboot first", "mode": "REMEDIATION_MODE_REBOOT_VM"},
        headers=BOB,
    )
    assert response.status_code == 200, response.text
    approved = response.json()
    assert approved["state"] == "PENDING"
    assert approved["mode"] == "REMEDIATION_MODE_REBOOT_VM"
    assert (approved["reviewed_by"], approved["review_comment"]) == ("bob", "reboot first")
    assert approved["review_time"] == approved["update_time"]

    transitions = await transitions_of(kafka, api_names, cluster, 2)
    assert [(t["sequence"], t["from_state"], t["to_state"]) for t in transitions] == [
        (1, None, "PENDING_APPROVAL"),
        (2, "PENDING_APPROVAL", "PENDING"),
    ]
    assert transitions[1]["actor"] == "bob"
    assert transitions[1]["remediation"] == approved


async def test_reject_cancels_a_pending_approval(
    client: httpx.AsyncClient, kafka: Kafka, api_names: Names, cluster: str
) -> None:
    opened = await open_automated(kafka, api_names, client, cluster, "i1")
    response = await client.post(
        path(cluster, "i1", opened["id"], "reject"), json={"comment": "false alarm"}
    )
    assert response.status_code == 200, response.text
    rejected = response.json()
    assert (rejected["state"], rejected["reviewed_by"], rejected["review_comment"]) == (
        "CANCELLED",
        "alice",
        "false alarm",
    )
    assert rejected["end_time"] is not None
    transitions = await transitions_of(kafka, api_names, cluster, 2)
    assert transitions[-1]["to_state"] == "CANCELLED"


async def test_cancel_from_both_allowed_states(
    client: httpx.AsyncClient, kafka: Kafka, api_names: Names, cluster: str
) -> None:
    opened = await open_automated(kafka, api_names, client, cluster, "awaiting")
    cancelled = await client.post(path(cluster, "awaiting", opened["id"], "cancel"))
    assert cancelled.json()["state"] == "CANCELLED", cancelled.text

    manual = (await client.post(path(cluster, "queued"))).json()
    assert manual["state"] == "PENDING"
    cancelled = await client.post(path(cluster, "queued", manual["id"], "cancel"))
    assert cancelled.json()["state"] == "CANCELLED", cancelled.text

    transitions = await transitions_of(kafka, api_names, cluster, 4)
    moves = {(t["_key"], t["from_state"], t["to_state"]) for t in transitions}
    assert (f"{cluster}/awaiting", "PENDING_APPROVAL", "CANCELLED") in moves
    assert (f"{cluster}/queued", "PENDING", "CANCELLED") in moves


async def test_every_refused_move_is_409_and_changes_nothing(
    client: httpx.AsyncClient, kafka: Kafka, api_names: Names, cluster: str
) -> None:
    pending = (await client.post(path(cluster, "p"))).json()
    cancelled = (await client.post(path(cluster, "c"))).json()
    cancelled = (await client.post(path(cluster, "c", cancelled["id"], "cancel"))).json()
    refused = [
        ("p", pending, "approve"),
        ("p", pending, "reject"),
        ("c", cancelled, "approve"),
        ("c", cancelled, "reject"),
        ("c", cancelled, "cancel"),
    ]
    for instance, record, action in refused:
        response = await client.post(path(cluster, instance, record["id"], action))
        error = assert_error(response, 409, "FAILED_PRECONDITION")
        assert record["state"] in error["message"]
        assert (await client.get(path(cluster, instance, record["id"]))).json() == record

    transitions = await transitions_of(kafka, api_names, cluster, 3)
    assert len(transitions) == 3  # two creations and one cancel: nothing from the refusals


async def test_create_is_idempotent_by_remediation_id(
    client: httpx.AsyncClient, kafka: Kafka, api_names: Names, cluster: str
) -> None:
    first = await client.post(
        path(cluster, "i1"), params={"remediation_id": "fix-i1"}, json={"reason": "x"}
    )
    again = await client.post(
        path(cluster, "i1"), params={"remediation_id": "fix-i1"}, json={"reason": "x"}
    )
    alias = await client.post(
        path(cluster, "i1"), params={"request_id": "fix-i1"}, json={"reason": "x"}
    )
    assert first.status_code == again.status_code == alias.status_code == 200
    assert first.json()["id"] == "fix-i1"
    assert again.json() == first.json() == alias.json()

    other_mode = await client.post(
        path(cluster, "i1"),
        params={"remediation_id": "fix-i1"},
        json={"mode": "REMEDIATION_MODE_REBOOT_VM"},
    )
    assert_error(other_mode, 409, "ALREADY_EXISTS")
    other_target = await client.post(path(cluster, "i2"), params={"remediation_id": "fix-i1"})
    assert_error(other_target, 409, "ALREADY_EXISTS")
    assert (await client.get(path(cluster, "i2"))).json()["remediations"] == []

    transitions = await transitions_of(kafka, api_names, cluster, 1)
    assert len(transitions) == 1


async def test_manual_create_on_an_instance_with_an_open_remediation_names_it(
    client: httpx.AsyncClient, kafka: Kafka, api_names: Names, cluster: str
) -> None:
    opened = await open_automated(kafka, api_names, client, cluster, "i1")
    response = await client.post(path(cluster, "i1"))
    error = assert_error(response, 409, "FAILED_PRECONDITION")
    assert opened["id"] in error["message"]


async def test_authentication(worker: WorkerProcess, cluster: str) -> None:
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=30) as anonymous:
        missing = await anonymous.get(path(cluster, "i1"))
        assert_error(missing, 401, "UNAUTHENTICATED")
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await anonymous.get(path(cluster, "i1"), headers={"Authorization": "Bearer nope"})
        assert_error(wrong, 401, "UNAUTHENTICATED")
        basic = await anonymous.get(path(cluster, "i1"), headers={"Authorization": "Basic YTpi"})
        assert_error(basic, 401, "UNAUTHENTICATED")
        created = await anonymous.post(path(cluster, "i1"), headers=BOB)
        assert created.status_code == 200
        assert created.json()["requested_by"] == "bob"
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/openapi.json")).json()["openapi"].startswith("3.")


async def test_pagination_filters_and_the_whole_cluster_wildcard(
    client: httpx.AsyncClient, cluster: str
) -> None:
    created = []
    for n in range(7):
        rem = (await client.post(path(cluster, f"i{n}"), json={"reason": f"n{n}"})).json()
        if n % 2:
            rem = (await client.post(path(cluster, f"i{n}", rem["id"], "cancel"))).json()
        created.append(rem)
    newest_first = sorted(created, key=lambda r: (r["create_time"], r["id"]), reverse=True)

    seen, token, pages = [], "", 0
    while True:
        params: dict[str, Any] = {"page_size": 3}
        if token:
            params["page_token"] = token
        page = (await client.get(path(cluster, "-"), params=params)).json()
        pages += 1
        seen.extend(page["remediations"])
        assert page["has_next"] == bool(page["next_page_token"])
        if not page["has_next"]:
            break
        token = page["next_page_token"]
    assert pages == 3
    assert [r["id"] for r in seen] == [r["id"] for r in newest_first]

    cancelled = (await client.get(path(cluster, "-"), params={"state": "CANCELLED"})).json()
    assert {r["id"] for r in cancelled["remediations"]} == {
        r["id"] for r in created if r["state"] == "CANCELLED"
    }
    both = await client.get(
        path(cluster, "-"), params=[("state", "CANCELLED"), ("state", "PENDING")]
    )
    assert len(both.json()["remediations"]) == 7
    comma_joined = await client.get(path(cluster, "-"), params={"state": "CANCELLED,PENDING"})
    assert comma_joined.json()["remediations"] == both.json()["remediations"]
    assert (await client.get(path(cluster, "-"), params={"state": ""})).json() == (
        await client.get(path(cluster, "-"))
    ).json()
    oldest_first = await client.get(path(cluster, "-"), params={"order_by": "create_time asc"})
    assert [r["id"] for r in oldest_first.json()["remediations"]] == [
        r["id"] for r in reversed(newest_first)
    ]
    automated = await client.get(
        path(cluster, "-"), params={"trigger": "REMEDIATION_TRIGGER_AUTOMATED"}
    )
    assert automated.json()["remediations"] == []
    by_mode = await client.get(path(cluster, "-"), params={"mode": "REMEDIATION_MODE_VM_ONLY"})
    assert len(by_mode.json()["remediations"]) == 7
    one_instance = (await client.get(path(cluster, "i3"))).json()
    assert [r["id"] for r in one_instance["remediations"]] == [created[3]["id"]]
    assert one_instance["has_next"] is False
    assert one_instance["next_page_token"] == ""


async def test_bad_requests_get_the_contract_error_never_a_5xx(
    client: httpx.AsyncClient, worker: WorkerProcess, cluster: str
) -> None:
    rem = (await client.post(path(cluster, "i1"))).json()
    token = (
        await client.get(path(cluster, "-"), params={"page_size": 1, "state": "PENDING"})
    ).json()
    cases = [
        (await client.post(path(cluster, "i2"), content=b"{not json"), 400, "INVALID_ARGUMENT"),
        (await client.post(path(cluster, "i2"), content=b"[1, 2]"), 400, "INVALID_ARGUMENT"),
        (
            await client.post(path(cluster, "i2"), json={"mode": "REMEDIATION_MODE_TELEPORT"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            await client.post(path(cluster, "i2"), json={"mdoe": "REMEDIATION_MODE_VM_ONLY"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (await client.post(path(cluster, "i2"), content=b"x" * 100_000), 400, "INVALID_ARGUMENT"),
        (
            await client.post(path(cluster, "i2"), params={"remediation_id": "bad/id"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (await client.post(path(cluster, "-")), 400, "INVALID_ARGUMENT"),
        # "." and ".." as ids, percent-encoded so that the client sends them as they are.
        (await client.post(path(cluster, "%2E%2E")), 400, "INVALID_ARGUMENT"),
        (await client.post(path("%2E", "i2")), 400, "INVALID_ARGUMENT"),
        (await client.get(path(cluster, "i1", "%2E%2E")), 400, "INVALID_ARGUMENT"),
        (
            await client.post(path(cluster, "i2"), params={"remediation_id": ".."}),
            400,
            "INVALID_ARGUMENT",
        ),
        (await client.get(path(cluster, "i1", "no-such-remediation")), 404, "NOT_FOUND"),
        (await client.get(path(cluster, "other-instance", rem["id"])), 404, "NOT_FOUND"),
        (await client.get(path("other-cluster", "i1", rem["id"])), 404, "NOT_FOUND"),
        (await client.post(path(cluster, "i1", "no-such-remediation", "cancel")), 404, "NOT_FOUND"),
        (
            await client.get(path(cluster, "-"), params={"state": "SLEEPING"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            await client.get(path(cluster, "-"), params={"state": "PENDING,SLEEPING"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            await client.get(path(cluster, "-"), params={"order_by": "create_time sideways"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            await client.get(path(cluster, "-"), params={"page_size": "ten"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (await client.get(path(cluster, "-"), params={"page_size": "-1"}), 400, "INVALID_ARGUMENT"),
        (
            await client.get(path(cluster, "-"), params={"page_token": "garbage!"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            await client.get(
                path(cluster, "-"), params={"page_token": token["next_page_token"] or "x"}
            ),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            await client.post(path(cluster, "i1", rem["id"], "approve"), json={"comment": 5}),
            400,
            "INVALID_ARGUMENT",
        ),
        (await client.get("/v1/compute/nothing-here"), 404, "NOT_FOUND"),
        (await client.delete(path(cluster, "i1", rem["id"])), 405, "METHOD_NOT_ALLOWED"),
    ]
    for response, code, status in cases:
        assert_error(response, code, status)
    assert (await client.get(path(cluster, "i1", rem["id"]))).json() == rem


async def test_concurrent_approve_and_cancel_one_wins_and_records_agree(
    client: httpx.AsyncClient, kafka: Kafka, api_names: Names, cluster: str
) -> None:
    opened = await open_automated(kafka, api_names, client, cluster, "race")
    approve, cancel = await asyncio.gather(
        client.post(path(cluster, "race", opened["id"], "approve")),
        client.post(path(cluster, "race", opened["id"], "cancel"), headers=BOB),
    )
    statuses = sorted([approve.status_code, cancel.status_code])
    # Approve then cancel are both allowed (PENDING can be cancelled); cancel then approve
    # is not. Either way the record and the transitions tell the same story.
    final = (await client.get(path(cluster, "race", opened["id"]))).json()
    transitions = await transitions_of(kafka, api_names, cluster, 2)
    assert [t["sequence"] for t in transitions] == list(range(1, len(transitions) + 1))
    assert transitions[-1]["remediation"] == final
    if statuses == [200, 409]:
        winner = approve if approve.status_code == 200 else cancel
        assert winner.json() == final
        assert len(transitions) == 2
    else:
        assert statuses == [200, 200]
        assert [t["to_state"] for t in transitions] == ["PENDING_APPROVAL", "PENDING", "CANCELLED"]
        assert final["state"] == "CANCELLED"


async def test_concurrent_duplicate_approvals_one_wins(
    client: httpx.AsyncClient, kafka: Kafka, api_names: Names, cluster: str
) -> None:
    opened = await open_automated(kafka, api_names, client, cluster, "dup")
    responses = await asyncio.gather(
        *(client.post(path(cluster, "dup", opened["id"], "approve")) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409]
    transitions = await transitions_of(kafka, api_names, cluster, 2)
    assert len(transitions) == 2


def test_checked_in_openapi_document_is_what_the_worker_serves(worker: WorkerProcess) -> None:
    served = httpx.get(f"{worker.base_url}/openapi.json").json()
    checked_in = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"
    assert served == httpx.Response(200, content=checked_in.read_bytes()).json()


async def test_fleet_wide_list_and_cluster_summaries(client: httpx.AsyncClient) -> None:
    """cluster_id '-' lists every cluster, with the same filters and paging; the clusters
    list says what is open where and what holds automation back (additions)."""
    a, b = f"cl-{uuid.uuid4().hex[:8]}", f"cl-{uuid.uuid4().hex[:8]}"
    mine = []
    for cluster, instance in [(a, "i1"), (b, "i1"), (a, "i2"), (b, "i2"), (a, "i3")]:
        rem = (await client.post(path(cluster, instance), json={"reason": "fleet"})).json()
        mine.append(rem)
    cancelled = (await client.post(path(a, "i3", mine[-1]["id"], "cancel"))).json()
    mine[-1] = cancelled
    paused = await client.put(f"/v1/compute/clusters/{b}/pause", json={"reason": "maintenance"})
    assert paused.status_code == 200, paused.text

    # Every page of the fleet, newest first across clusters; other tests' records too.
    seen, token = [], ""
    while True:
        params: dict[str, Any] = {"page_size": 2}
        if token:
            params["page_token"] = token
        page = (await client.get(path("-", "-"), params=params)).json()
        seen.extend(page["remediations"])
        if not page["has_next"]:
            break
        token = page["next_page_token"]
    keys = [(r["create_time"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)
    assert len(set(keys)) == len(keys)
    ours = [r["id"] for r in seen if r["cluster_id"] in (a, b)]
    assert ours == [r["id"] for r in sorted(mine, key=lambda r: (r["create_time"], r["id"]))][::-1]

    pending = await client.get(path("-", "-"), params={"state": "PENDING", "page_size": 100})
    pending_ids = {r["id"] for r in pending.json()["remediations"]}
    assert {r["id"] for r in mine if r["state"] == "PENDING"} <= pending_ids
    assert cancelled["id"] not in pending_ids
    assert all(r["state"] == "PENDING" for r in pending.json()["remediations"])

    clusters = {
        c["cluster_id"]: c for c in (await client.get("/v1/compute/clusters")).json()["clusters"]
    }
    assert clusters[a]["known_instances"] == 3
    assert clusters[a]["open_remediations"] == {"PENDING": 2}
    assert clusters[a]["paused"] is None
    assert clusters[b]["open_remediations"] == {"PENDING": 2}
    assert clusters[b]["paused"]["reason"] == "maintenance"
    assert clusters[b]["paused"]["by"] == "alice"
    assert clusters[b]["blast_radius_limit"] >= 1

    refused = await client.get(path("-", "i1"))
    assert "every cluster" in assert_error(refused, 400, "INVALID_ARGUMENT")["message"]
    assert_error(await client.get("/v1/compute/clusters/-/safety"), 400, "INVALID_ARGUMENT")
    assert_error(await client.post(path("-", "-"), json={}), 400, "INVALID_ARGUMENT")


def test_the_policy_in_force_and_its_hash_in_the_banner(worker: WorkerProcess) -> None:
    answer = httpx.get(f"{worker.base_url}/v1/compute/policy", headers=ALICE)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    source = Path(body["source"])
    assert source.name == "permissive-policy.toml"
    assert body["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert body["policy"]["rules"], "the effective rules are shown"
    assert f"sha256 {body['sha256'][:12]}" in worker.log()
    assert httpx.get(f"{worker.base_url}/v1/compute/policy").status_code == 401


async def test_lifting_a_hold_needs_a_reason_and_is_explained(
    client: httpx.AsyncClient, cluster: str
) -> None:
    hold = f"/v1/compute/clusters/{cluster}/instances/i1/hold"
    assert_error(await client.delete(hold), 400, "INVALID_ARGUMENT")
    lifted = await client.request("DELETE", hold, json={"reason": "vendor replaced the GPU"})
    assert lifted.status_code == 200, lifted.text
    body = lifted.json()
    assert body["hold_lifted"]["by"] == "alice"
    assert body["hold_lifted"]["reason"] == "vendor replaced the GPU"
    explained = (await client.get(f"/v1/compute/clusters/{cluster}/instances/i1/explain")).json()
    assert explained["hold_lifted"] == body["hold_lifted"]
