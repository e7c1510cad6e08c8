"""The checked-in JSON Schema files match the models, and sample payloads parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediator.domain.models import ActiveHealthCheckRun, PassiveHealthCheckEvent
from remediator.reference import schemas

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("name", sorted(schemas.MODELS))
def test_checked_in_schema_matches_the_model(name: str) -> None:
    path = SCHEMA_DIR / f"{name}.json"
    assert path.exists(), f"{path} is missing: run `make schemas` and commit the result"
    assert path.read_text(encoding="utf-8") == schemas.render(name), (
        f"{path.name} is out of date with the models: run `make schemas` and commit the result"
    )


def test_no_stray_schema_files() -> None:
    expected = {f"{name}.json" for name in schemas.MODELS}
    present = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert present == expected | {"openapi.json"}


def test_checked_in_openapi_document_matches_the_api() -> None:
    from remediator.api import openapi

    path = SCHEMA_DIR / "openapi.json"
    assert path.read_text(encoding="utf-8") == openapi.render(), (
        "schemas/openapi.json is out of date with the API: run `make schemas` and commit the result"
    )


def test_openapi_document_covers_every_contract_endpoint() -> None:
    from remediator.api import openapi

    paths = openapi.build()["paths"]
    base = "/v1/compute/clusters/{cluster_id}/instances/{instance_id}/remediations"
    assert set(paths[base]) == {"get", "post"}
    assert set(paths[base + "/{remediation_id}"]) == {"get"}
    for action in ("approve", "reject", "cancel"):
        assert set(paths[f"{base}/{{remediation_id}}/{action}"]) == {"post"}
    assert "/healthz" in paths
    assert "/openapi.json" in paths


@pytest.mark.parametrize("name", sorted(schemas.MODELS))
def test_schema_has_a_versioned_id(name: str) -> None:
    document = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    assert document["$id"] == f"{schemas.BASE_ID}/{name}.json"


def test_sample_payloads_parse_with_the_real_models() -> None:
    run = ActiveHealthCheckRun.model_validate_json(
        (DATA_DIR / "active-run-failed.json").read_bytes()
    )
    event = PassiveHealthCheckEvent.model_validate_json(
        (DATA_DIR / "passive-event-firing.json").read_bytes()
    )
    assert run.result == "FAILED"
    assert event.annotations == {"xid": "79", "gpu": "2"}
