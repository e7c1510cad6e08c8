"""Blast radius by topology: a limit per failure domain (rack, leaf switch) as well as per
cluster (issue 13). Pure core and the in-memory handlers; explicit event times, no sleeps.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediator.domain import safety, topology
from remediator.domain.commands import CommandKind
from remediator.domain.models import HealthSignal, PolicyEvent, PolicyEventKind, RemediationMode
from remediator.domain.policy import (
    BlastRadius,
    FailureDomains,
    Policy,
    PolicyError,
    load_policy_in_force,
    parse_layered,
)
from remediator.domain.replies import SafetyView
from remediator.domain.safety import ClusterRecord, ClusterView, Proposal
from remediator.domain.state import InstanceState
from remediator.pipeline.fleet import ClusterModel
from remediator.pipeline.messages import Route
from remediator.settings import ConfigError, load_settings
from tests.builders import T0, event, run
from tests.harness import Harness

K = PolicyEventKind


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


def policy(keys: tuple[str, ...] = ("rack",), **domains: Any) -> Policy:
    """A cluster limit that never bites here (10, 100 %), per domain ``domains``."""
    limits = FailureDomains(keys=list(keys), **{"max_open": 2, **domains})
    radius = BlastRadius(max_open=10, max_percent=100, min_allowed=1, domains=limits)
    return Policy(blast_radius=radius, rate_budget_per_hour=0)


RACKS = {"r1": ["a1", "a2", "a3", "a4"], "r2": ["b1", "b2", "b3", "b4"]}


def known(harness: Harness, racks: dict[str, list[str]] = RACKS, minute: float = 0) -> None:
    """The instances seen healthy, each run labelled with its rack."""
    harness.signal(
        *(
            run(instance_id=i, result="PASSED", completed_at=iso(minute), labels={"rack": rack})
            for rack, instances in racks.items()
            for i in instances
        )
    )


def fail(harness: Harness, instances: list[str], minute: float = 1, **fields: Any) -> list[str]:
    """A failing run on each (carrying ``fields``); whether each opened."""
    harness.signal(*(run(instance_id=i, completed_at=iso(minute), **fields) for i in instances))
    return [
        "OPENED" if (s := harness.state("c1", i)) is not None and s.open else "BLOCKED"
        for i in instances
    ]


def reason(harness: Harness, instance: str) -> str:
    explanation = harness.command(CommandKind.EXPLAIN, instance_id=instance).explanation
    assert explanation is not None
    return explanation.decisions[0].reason


def reject(harness: Harness, instance: str, minute: float) -> None:
    state = harness.state("c1", instance)
    assert state is not None
    assert state.open is not None
    harness.command(
        CommandKind.REJECT,
        instance_id=instance,
        remediation_id=state.open.remediation.id,
        now=at(minute),
    )


def domain_events(harness: Harness) -> list[PolicyEvent]:
    return [e for e in harness.events() if e.domain is not None]


def safety_view(harness: Harness) -> SafetyView:
    view = harness.command(CommandKind.SAFETY, instance_id="-", route=Route.CLUSTER).safety
    assert view is not None
    return view


# -- trip and resume -------------------------------------------------------------------


def test_a_rack_trips_at_its_limit_while_another_rack_still_admits() -> None:
    harness = Harness(policy())
    known(harness)
    assert fail(harness, ["a1", "a2", "a3"]) == ["OPENED", "OPENED", "BLOCKED"]
    (tripped,) = harness.events()
    assert (tripped.kind, tripped.domain, tripped.instance_id) == (
        K.BLAST_RADIUS_TRIPPED,
        "rack=r1",
        "a3",
    )
    assert "blast radius tripped in rack=r1: 2 of its 4 instances" in tripped.reason
    # The other rack is not held back, nor is the cluster.
    assert fail(harness, ["b1", "b2"], minute=2) == ["OPENED", "OPENED"]
    # Another instance of the tripped rack is refused, with no second event.
    assert fail(harness, ["a4"], minute=3) == ["BLOCKED"]
    assert "blast radius in rack=r1: 2 of 4 instances unhealthy" in reason(harness, "a4")
    assert [e.kind for e in harness.events()] == [K.BLAST_RADIUS_TRIPPED]
    view = safety_view(harness)
    assert view.tripped_at is None  # the cluster itself never tripped


def test_a_tripped_rack_resumes_only_at_its_lower_mark_with_an_event() -> None:
    harness = Harness(policy(max_open=3))  # limit 3, resumes at int(3 * 0.5) = 1
    known(harness)
    assert fail(harness, ["a1", "a2", "a3", "a4"]) == ["OPENED"] * 3 + ["BLOCKED"]
    reject(harness, "a1", minute=2)  # 2 open: above the mark, still tripped
    assert fail(harness, ["a4"], minute=3) == ["BLOCKED"]
    assert "resumes at 1 or fewer" in reason(harness, "a4")
    reject(harness, "a2", minute=4)  # 1 open: resumed
    kinds = [(e.kind, e.domain) for e in domain_events(harness)]
    assert kinds == [(K.BLAST_RADIUS_TRIPPED, "rack=r1"), (K.BLAST_RADIUS_RESUMED, "rack=r1")]
    resumed = domain_events(harness)[1]
    assert resumed.instance_id is None
    assert "blast radius resumed in rack=r1: 1 of its 4 instances unhealthy" in resumed.reason
    assert fail(harness, ["a4"], minute=5) == ["OPENED"]


def test_an_instance_is_held_back_by_any_of_its_domains() -> None:
    harness = Harness(policy(keys=("rack", "ib_leaf"), max_open=1))
    harness.signal(
        *(
            run(instance_id=i, result="PASSED", completed_at=iso(0), labels=labels)
            for i, labels in [
                ("a1", {"rack": "r1", "ib_leaf": "leaf-1"}),
                ("b1", {"rack": "r2", "ib_leaf": "leaf-1"}),
                ("c1", {"rack": "r3", "ib_leaf": "leaf-2"}),
            ]
        )
    )
    # b1's rack has room, but it shares leaf-1 with a1.
    assert fail(harness, ["a1", "b1", "c1"]) == ["OPENED", "BLOCKED", "OPENED"]
    assert [e.domain for e in harness.events()] == ["ib_leaf=leaf-1"]


def test_a_proposal_past_two_domains_trips_both() -> None:
    harness = Harness(policy(keys=("rack", "ib_leaf"), max_open=1))
    both = {"rack": "r1", "ib_leaf": "leaf-1"}
    harness.signal(
        *(run(instance_id=i, result="PASSED", completed_at=iso(0), labels=both) for i in "xy")
    )
    assert fail(harness, ["x", "y"]) == ["OPENED", "BLOCKED"]
    assert sorted(e.domain or "" for e in harness.events()) == ["ib_leaf=leaf-1", "rack=r1"]
    view = safety_view(harness)
    assert [(d.domain, d.tripped_at) for d in view.domains] == [
        ("ib_leaf=leaf-1", T0),
        ("rack=r1", T0),
    ]


def test_an_instance_in_no_known_domain_is_limited_by_the_cluster_only() -> None:
    harness = Harness(policy(max_open=1))
    known(harness, {"r1": ["a1", "a2"]})
    known(harness, {"": ["n1", "n2"]})  # an empty value is no value
    assert fail(harness, ["a1", "a2"]) == ["OPENED", "BLOCKED"]
    assert fail(harness, ["n1", "n2"], minute=2) == ["OPENED", "OPENED"]
    assert harness.state("c1", "n1").domain == {}  # type: ignore[union-attr]


def test_the_asking_instance_counts_as_known_in_its_domain() -> None:
    harness = Harness(policy(max_open=10, max_percent=50))
    known(harness, {"r1": ["a1", "a2", "a3"]})
    # Four known in r1 (three healthy and the new one): 50 % admits two.
    outcomes = fail(harness, ["new", "a1", "a2"], labels={"rack": "r1"})
    assert outcomes == ["OPENED", "OPENED", "BLOCKED"]


def test_per_domain_limits_are_off_without_keys() -> None:
    harness = Harness(policy(keys=()))
    known(harness, {"r1": ["a1", "a2", "a3"]})
    assert fail(harness, ["a1", "a2", "a3"]) == ["OPENED"] * 3
    assert harness.state("c1", "a1").domain == {}  # type: ignore[union-attr]
    assert safety_view(harness).domains == []


def test_a_domain_the_policy_no_longer_limits_resumes_at_once() -> None:
    record = ClusterRecord(cluster_id="c1", tripped_domains={"rack=r1": at(1)})
    view = ClusterView(record=record, known=8, unhealthy=3, domain_unhealthy={"rack=r1": 3})
    _, still = safety.reconcile(view, policy(max_open=2), at(2))
    assert still == ()
    resumed, events = safety.reconcile(view, policy(keys=("ib_leaf",)), at(2))
    assert resumed.tripped_domains == {}
    assert [(e.kind, e.domain) for e in events] == [(K.BLAST_RADIUS_RESUMED, "rack=r1")]
    assert "no longer limits" in events[0].reason


# -- stable ids ------------------------------------------------------------------------


def proposal(instance: str, domains: tuple[str, ...]) -> Proposal:
    return Proposal(
        cluster_id="c1",
        instance_id=instance,
        remediation_id=f"rem-{instance}",
        rule="r",
        mode=RemediationMode.REBOOT_VM,
        at=at(1),
        domains=domains,
    )


def test_trip_and_resume_events_have_the_same_ids_when_worked_out_again() -> None:
    """A replay (or a new owner) decides from the same counts and republishes the same ids."""
    view = ClusterView(
        record=ClusterRecord(cluster_id="c1"),
        known=8,
        unhealthy=2,
        domain_known={"rack=r1": 4},
        domain_unhealthy={"rack=r1": 2},
        asking_domains=("rack=r1",),
    )
    first = safety.admit(view, proposal("a3", ("rack=r1",)), policy(), at(1))
    again = safety.admit(view, proposal("a3", ("rack=r1",)), policy(), at(1))
    assert not first.admitted
    assert first.record.tripped_domains == {"rack=r1": at(1)}
    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]

    fallen = ClusterView(record=first.record, known=8, unhealthy=1, domain_known={"rack=r1": 4})
    resumed = safety.reconcile(fallen, policy(), at(5))
    later = safety.reconcile(fallen, policy(), at(9))
    assert resumed[0].tripped_domains == {}
    assert [e.event_id for e in resumed[1]] == [e.event_id for e in later[1]]
    assert resumed[1][0].event_id not in {e.event_id for e in first.events}


def test_a_domain_trip_leaves_the_cluster_untripped_and_names_the_domain_in_the_reason() -> None:
    view = ClusterView(
        record=ClusterRecord(cluster_id="c1"),
        known=100,
        unhealthy=2,
        domain_known={"rack=r1": 4},
        domain_unhealthy={"rack=r1": 2},
    )
    refused = safety.admit(view, proposal("a3", ("rack=r1",)), policy(), at(1))
    assert refused.blocked is safety.BlockReason.DOMAIN
    assert refused.record.tripped_at is None
    assert "rack=r1" in refused.reason
    admitted = safety.admit(view, proposal("b1", ("rack=r2",)), policy(), at(1))
    assert admitted.admitted
    assert safety.admit(view, proposal("n1", ()), policy(), at(1)).admitted


# -- where the domain comes from -------------------------------------------------------


def alert(instance: str, minute: float, **annotations: str) -> HealthSignal:
    return event(
        instance_id=instance,
        alert_name="NpdKernelDeadlock",
        observed_at=iso(minute),
        annotations=annotations,
    )


def test_the_domain_comes_from_a_passive_events_annotations() -> None:
    """Alertmanager's labels arrive as annotations: a rack label names the domain."""
    harness = Harness(policy(max_open=1))
    harness.signal(alert("a1", 0, rack="r7", gpu="3"), alert("a2", 0, rack="r7"))
    assert harness.state("c1", "a1").domain == {"rack": "r7"}  # type: ignore[union-attr]
    assert harness.stored("c1", "a1").domain == {"rack": "r7"}  # type: ignore[union-attr]
    assert safety_view(harness).unhealthy_instances == ["a1"]
    assert harness.state("c1", "a2").open is None  # type: ignore[union-attr]
    assert [e.domain for e in harness.events()] == ["rack=r7"]


def test_the_domain_comes_from_the_mapping_file_when_signals_do_not_carry_it() -> None:
    mapping = {"a1": {"rack": "r1"}, "c1/a2": {"rack": "r1"}, "c2/a2": {"rack": "other"}}
    harness = Harness(policy(max_open=1), domains=mapping)
    assert fail(harness, ["a1", "a2"]) == ["OPENED", "BLOCKED"]
    assert harness.state("c1", "a2").domain == {"rack": "r1"}  # type: ignore[union-attr]
    view = safety_view(harness)
    assert [(d.domain, d.known_instances, d.unhealthy_instances) for d in view.domains] == [
        ("rack=r1", 2, ["a1"])
    ]


def test_a_signal_names_the_domain_over_the_file_and_a_late_one_changes_nothing() -> None:
    harness = Harness(policy(), domains={"a1": {"rack": "r1"}})
    harness.signal(run(instance_id="a1", result="PASSED", completed_at=iso(10)))
    assert harness.state("c1", "a1").domain == {"rack": "r1"}  # type: ignore[union-attr]
    moved = run(instance_id="a1", result="PASSED", completed_at=iso(20), labels={"rack": "r9"})
    harness.signal(moved)
    assert harness.state("c1", "a1").domain == {"rack": "r9"}  # type: ignore[union-attr]
    late = run(instance_id="a1", result="PASSED", completed_at=iso(15), labels={"rack": "r5"})
    harness.signal(late)
    assert harness.state("c1", "a1").domain == {"rack": "r9"}  # type: ignore[union-attr]
    # A newer signal that does not carry the key keeps what the signals said.
    harness.signal(run(instance_id="a1", result="PASSED", completed_at=iso(30)))
    assert harness.state("c1", "a1").domain == {"rack": "r9"}  # type: ignore[union-attr]
    model = harness.fleet.find(0, "c1")
    assert model is not None
    assert model.domain_known == {"rack=r9": 1}


def test_a_mapping_file_next_to_the_policy_file_is_read_toml_or_json(tmp_path: Path) -> None:
    (tmp_path / "racks.toml").write_text('"gpu-1" = { rack = "r12", ib_leaf = "leaf-3" }\n')
    (tmp_path / "racks.json").write_text('{"c1/gpu-2": {"rack": "r13"}}')
    for name, expected in [
        ("racks.toml", {"gpu-1": {"rack": "r12", "ib_leaf": "leaf-3"}}),
        ("racks.json", {"c1/gpu-2": {"rack": "r13"}}),
    ]:
        path = tmp_path / f"policy-{name}.toml"
        path.write_text(f'[blast_radius.domains]\nkeys = ["rack"]\nfile = "{name}"\n')
        loaded = load_policy_in_force(path)
        assert loaded.domains == expected
        assert loaded.policy.blast_radius.domains.keys == ["rack"]
        assert loaded.policy.blast_radius.max_open == 10  # the rest stays the defaults


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("missing.toml", "cannot read it"),
        ("bad.toml", "not valid TOML"),
        ("flat.json", "expected a table of strings"),
    ],
)
def test_a_bad_mapping_file_stops_start_up_with_one_line(
    tmp_path: Path, file: str, message: str
) -> None:
    (tmp_path / "bad.toml").write_text("gpu-1 = {")
    (tmp_path / "flat.json").write_text('{"gpu-1": "r12"}')
    path = tmp_path / "policy.toml"
    path.write_text(f'[blast_radius.domains]\nkeys = ["rack"]\nfile = "{file}"\n')
    with pytest.raises(PolicyError) as raised:
        load_policy_in_force(path)
    text = str(raised.value)
    assert "\n" not in text
    assert "blast_radius.domains.file" in text
    assert message in text


def test_a_worker_with_a_bad_mapping_file_does_not_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[blast_radius.domains]\nkeys = ["rack"]\nfile = "nope.toml"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings({"REMEDIATOR_POLICY_FILE": str(path)})
    assert "REMEDIATOR_POLICY_FILE" in str(raised.value)
    assert "nope.toml: cannot read it" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_policy_refuses_a_file_without_keys_and_a_key_with_an_equals_sign() -> None:
    with pytest.raises(PolicyError, match="a domains file needs keys"):
        parse_layered('[blast_radius.domains]\nfile = "racks.toml"\n')
    with pytest.raises(PolicyError, match=r"blast_radius\.domains\.keys\.0"):
        parse_layered('[blast_radius.domains]\nkeys = ["rack=r1"]\n')


def test_the_default_policy_limits_no_domain() -> None:
    assert parse_layered("").blast_radius.domains.keys == []


# -- derived counts --------------------------------------------------------------------


def test_the_counts_per_domain_follow_the_instances_records() -> None:
    model = ClusterModel("c1", ClusterRecord(cluster_id="c1"))
    base = InstanceState.empty("c1", "a1")
    model.put(base.model_copy(update={"domain": {"rack": "r1", "ib_leaf": "l1"}}))
    model.put(InstanceState.empty("c1", "a2").model_copy(update={"domain": {"rack": "r1"}}))
    assert model.domain_known == {"rack=r1": 2, "ib_leaf=l1": 1}
    model.put(base.model_copy(update={"domain": {"rack": "r2"}}))  # moved, left the leaf
    assert model.domain_known == {"rack=r1": 1, "rack=r2": 1}
    assert model.view("a1").asking_domains == ("rack=r2",)
    assert model.view("new").asking_domains == ()


def test_records_written_before_failure_domains_still_read() -> None:
    old = b'{"cluster_id": "c1", "instance_id": "i1"}'
    assert InstanceState.model_validate_json(old).domain == {}
    record = ClusterRecord.model_validate_json(b'{"cluster_id": "c1", "tripped_at": null}')
    assert record.tripped_domains == {}


def test_domain_names_are_key_equals_value_sorted_by_key() -> None:
    assert topology.names({"rack": "r12", "ib_leaf": "leaf-3"}) == ("ib_leaf=leaf-3", "rack=r12")
    assert topology.key_of("rack=r=12") == "rack"


def test_the_console_shows_each_failure_domain_of_the_safety_view() -> None:
    from remediator.console import table

    harness = Harness(policy(max_open=1))
    known(harness)
    fail(harness, ["a1", "a2"])
    text = table.safety(safety_view(harness).model_dump(mode="json"))
    assert "rack=r1: 1 open of 1 allowed, 4 known, tripped" in text
    assert "rack=r2: 0 open of 1 allowed, 4 known\n" in text


def test_a_full_rack_queues_its_own_proposals_without_holding_other_racks_back() -> None:
    """Queued admission per domain: the refused one in the full rack waits and opens when
    the rack resumes; another rack's proposal opens at once, not queued behind it."""
    harness = Harness(policy())  # limit 2 per rack
    known(harness)
    assert fail(harness, ["a1", "a2", "a3"]) == ["OPENED", "OPENED", "BLOCKED"]
    waiting = harness.state("c1", "a3").waiting  # type: ignore[union-attr]
    assert waiting is not None
    assert waiting.blocked == "domain_blast_radius"
    assert fail(harness, ["b1"], minute=2) == ["OPENED"]
    assert not [e for e in harness.events() if e.kind is K.QUEUE_ADMITTED]
    reject(harness, "a1", minute=3)  # 1 open in r1: resumes (mark 1), a3 opens
    admitted = [e for e in harness.events() if e.kind is K.QUEUE_ADMITTED]
    assert [e.instance_id for e in admitted] == ["a3"]
    assert harness.state("c1", "a3").open is not None  # type: ignore[union-attr]
