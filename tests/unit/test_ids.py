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
