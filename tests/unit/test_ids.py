"""Deterministic ids: the same input makes the same id, always (a replay relies on it)."""

from __future__ import annotations

import uuid

import pytest

from remediator.domain import ids


@pytest.mark.parametrize("name", ["", "automated/c1/i1/active:x", "policy/é/ünïcode/ß", "x" * 500])
def test_the_fast_uuid5_is_the_standard_one(name: str) -> None:
    assert ids.uuid5(name) == str(uuid.uuid5(ids.NAMESPACE, name))


def test_ids_of_0_3_are_unchanged() -> None:
    # Recorded with 0.3.0 (uuid.uuid5): a change would open a second remediation for a
    # signal replayed across an upgrade.
    assert (
        ids.automated_remediation_id("c1", "i1", "active:r1")
        == "f0c82e99-1fc9-58f9-9915-1e05a99de7d0"
    )


def test_operation_ids_are_bound_to_cluster_instance_remediation_step_and_action() -> None:
    parts = ("c1", "i1", "r1", 1, "REBOOT_VM")
    same = ids.operation_id(*parts)
    assert same == ids.operation_id(*parts)
    for changed in (
        ("c2", "i1", "r1", 1, "REBOOT_VM"),
        ("c1", "i2", "r1", 1, "REBOOT_VM"),
        ("c1", "i1", "r2", 1, "REBOOT_VM"),
        ("c1", "i1", "r1", 2, "REBOOT_VM"),
        ("c1", "i1", "r1", 1, "DELETE_VM"),
    ):
        assert ids.operation_id(*changed) != same, changed
    # Pinned, so that a change of form is deliberate (0.4's was "r1.step-1.REBOOT_VM"). The
    # ids are stored in the record when a remediation starts, so a change only reaches
    # remediations started after it (see ids.operation_id).
    assert same == "5eceda2f-f80f-5ced-b4f4-f0d39ac9de6b"
