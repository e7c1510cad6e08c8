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


def fleet_history(
    *,
    count: int = 800,
    clusters: int = 2,
    instances: int = 30,
    seed: int = 7,
    start: datetime = T0,
    step_seconds: float = 2.0,
    failure_rate: float = 0.1,
    burst_rate: float = 0.01,
) -> list[tuple[datetime, str, dict[str, Any]]]:
    """A simulated fleet's signals (``remediation.simulation.fleet``), one every
    ``step_seconds`` of simulated time from ``start``, with ids fixed by the seed: each
    as (event time, ``run`` or ``event``, payload)."""
    import itertools
    from datetime import timedelta

    from remediator.simulation.fleet.generator import FleetConfig, FleetSimulator

    numbers = itertools.count()
    config = FleetConfig(clusters, instances, failure_rate, burst_rate, seed)
    simulator = FleetSimulator(
        config, ids=lambda: str(uuid.UUID(int=(seed << 64) + next(numbers), version=4))
    )
    history = []
    for index in range(count):
        at = start + timedelta(seconds=index * step_seconds)
        signal = simulator.next(at)
        history.append((at, signal.kind, signal.payload))
    return history
