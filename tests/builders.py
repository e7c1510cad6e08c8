"""Builders of valid health signals for tests, parsed by the real models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from remediator.domain.models import ActiveHealthCheckRun, PassiveHealthCheckEvent

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def run_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "run_id": str(uuid.uuid4()),
        "cluster_id": "c1",
        "instance_id": "i1",
        "instance_name": "gpu-node-1",
        "test": "DCGM_DIAG",
        "result": "FAILED",
        "started_at": "2026-11-24T11:58:00Z",
        "completed_at": "2026-11-24T12:00:00Z",
        "message": "diag level 3 failed on GPU 2",
    }
    payload.update(overrides)
    return payload


def event_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "cluster_id": "c1",
        "instance_id": "i1",
        "instance_name": "gpu-node-1",
        "alert_name": "DmesgGpuFallenOffBus",
        "severity": "CRITICAL",
        "status": "FIRING",
        "observed_at": "2026-11-24T12:00:00Z",
        "annotations": {"gpu": "3"},
    }
    payload.update(overrides)
    return payload


def run(**overrides: Any) -> ActiveHealthCheckRun:
    return ActiveHealthCheckRun.model_validate(run_payload(**overrides))


def event(**overrides: Any) -> PassiveHealthCheckEvent:
    return PassiveHealthCheckEvent.model_validate(event_payload(**overrides))
