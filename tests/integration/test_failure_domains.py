"""Blast radius by topology end to end (issue 13): a real worker and broker, a policy file
limiting open remediations per rack, the rack named by an alert's annotation for some
instances and by a mapping file next to the policy for the others."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import run_payload
from tests.integration.conftest import OPERATOR_TOKENS, Kafka, Names
from tests.integration.test_policy import V1, alert, iso, mine, until

pytestmark = pytest.mark.integration

POLICY = """
[blast_radius]
min_allowed = 10        # the cluster's own limit never bites here: only the racks'

[blast_radius.domains]
keys = ["rack"]
max_open = 1            # one open automated remediation per rack; resumes at 0
file = "racks.toml"     # next to this file
"""


async def remediations(client: httpx.AsyncClient, cluster: str, instance: str) -> list[Any]:
    body = (await client.get(f"{V1}/{cluster}/instances/{instance}/remediations")).json()
    return list(body["remediations"])


async def test_a_rack_trips_on_its_own_limit_another_rack_admits_and_it_resumes(
    start_worker: Any, api: Any, kafka: Kafka, names: Names, tmp_path: Path
) -> None:
    cluster = f"cl-{uuid.uuid4().hex[:8]}"
    (tmp_path / "racks.toml").write_text(
        '"b1" = { rack = "r2" }\n' + f'"{cluster}/b2" = {{ rack = "r2" }}\n'
    )
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    client = api(
        start_worker(REMEDIATOR_POLICY_FILE=str(policy), REMEDIATOR_API_TOKENS=OPERATOR_TOKENS)
    )
    base = datetime.now(UTC)
    # Four instances known: a1, a2 by runs labelled rack r1; b1, b2 by the mapping file.
    for instance, labels in [
        ("a1", {"rack": "r1"}),
        ("a2", {"rack": "r1"}),
        ("b1", {}),
        ("b2", {}),
    ]:
        payload = run_payload(
            cluster_id=cluster,
            instance_id=instance,
            result="PASSED",
            completed_at=iso(base, 0),
            labels=labels or None,
        )
        await kafka.produce(names.active, payload, key=instance.encode())

    async def safety() -> dict[str, Any]:
        return dict((await client.get(f"{V1}/{cluster}/safety")).json())

    async def racks() -> dict[str, dict[str, Any]] | None:
        domains = {d["domain"]: d for d in (await safety())["domains"]}
        known = {name: d["known_instances"] for name, d in domains.items()}
        return domains if known == {"rack=r1": 2, "rack=r2": 2} else None

    await until(racks, "two instances known in each rack")

    # a1 fails (the alert names its rack too): opened. a2, same rack: the rack trips.
    await kafka.produce(
        names.passive, alert(cluster, "a1", iso(base, 1), annotations={"rack": "r1"}), key=b"a1"
    )
    await until(lambda: remediations(client, cluster, "a1"), "a1's remediation")
    await kafka.produce(names.passive, alert(cluster, "a2", iso(base, 2)), key=b"a2")
    events = await mine(kafka, names.policy_events, cluster, at_least=1)
    assert [(e["kind"], e["domain"], e["instance_id"]) for e in events] == [
        ("BLAST_RADIUS_TRIPPED", "rack=r1", "a2")
    ]
    assert "rack=r1" in events[0]["reason"]

    # b1 fails in the other rack (known from the file only): still admitted.
    await kafka.produce(names.passive, alert(cluster, "b1", iso(base, 3)), key=b"b1")
    await until(lambda: remediations(client, cluster, "b1"), "b1's remediation")
    explained = (await client.get(f"{V1}/{cluster}/instances/a2/explain")).json()
    assert "blast radius tripped in rack=r1" in explained["decisions"][0]["reason"]
    state = await safety()
    assert state["tripped_at"] is None  # the cluster itself has room
    domains = {d["domain"]: d for d in state["domains"]}
    assert domains["rack=r1"]["tripped_at"] is not None
    assert domains["rack=r1"]["unhealthy_instances"] == ["a1"]
    assert (domains["rack=r1"]["limit"], domains["rack=r1"]["resume_at"]) == (1, 0)
    assert domains["rack=r2"]["tripped_at"] is None
    assert domains["rack=r2"]["unhealthy_instances"] == ["b1"]

    # An operator rejects a1's: the rack falls to 0 open and resumes.
    (opened,) = await remediations(client, cluster, "a1")
    path = f"{V1}/{cluster}/instances/a1/remediations/{opened['id']}/reject"
    answer = await client.post(path, json={"comment": "false alarm"})
    assert answer.status_code == 200, answer.text
    # It resumes, and a2, which waited in the queue for its rack, opens by itself.
    events = await mine(kafka, names.policy_events, cluster, at_least=3)
    # (Cluster events and instance events are keyed differently: partitions, no order.)
    assert sorted((e["kind"], e["domain"]) for e in events) == [
        ("BLAST_RADIUS_RESUMED", "rack=r1"),
        ("BLAST_RADIUS_TRIPPED", "rack=r1"),
        ("QUEUE_ADMITTED", None),
    ]
    resumed = next(e for e in events if e["kind"] == "BLAST_RADIUS_RESUMED")
    assert resumed["instance_id"] is None
    admitted = next(e for e in events if e["kind"] == "QUEUE_ADMITTED")
    assert admitted["instance_id"] == "a2"
    reopened = await until(lambda: remediations(client, cluster, "a2"), "a2's remediation")
    assert reopened[0]["state"] == "PENDING_APPROVAL"
