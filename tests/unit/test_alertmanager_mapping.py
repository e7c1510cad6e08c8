"""Alertmanager alerts become passive health-check events: ids, severities, labels, times."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from remediator.api.alertmanager_mapping import (
    DEFAULT_SEVERITY,
    AlertmanagerAlert,
    AlertmanagerWebhook,
    LabelNames,
    Unmappable,
    to_event,
)
from remediator.domain.ids import NAMESPACE
from remediator.domain.models import AlertStatus, PassiveHealthCheckEvent, Severity
from remediator.settings import ConfigError, load_settings

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
NAMES = LabelNames()


def alert(**overrides: Any) -> AlertmanagerAlert:
    raw: dict[str, Any] = {
        "status": "firing",
        "labels": {
            "alertname": "DmesgXidError",
            "cluster_id": "c1",
            "instance_id": "i1",
            "severity": "critical",
        },
        "annotations": {"summary": "GPU fell off the bus"},
        "startsAt": "2026-11-24T12:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "b2f4c6d8e0a1c3e5",
    }
    labels = overrides.pop("labels", None)
    if labels is not None:
        raw["labels"] = {**raw["labels"], **labels}
        raw["labels"] = {k: v for k, v in raw["labels"].items() if v is not None}
    raw.update(overrides)
    return AlertmanagerAlert.model_validate(raw)


# --- event ids ------------------------------------------------------------------------


def test_the_event_id_is_pinned_for_a_given_fingerprint_status_and_start() -> None:
    # Changing how ids are made would count every open alert again after an upgrade.
    expected = uuid.uuid5(
        NAMESPACE, "alertmanager/b2f4c6d8e0a1c3e5/FIRING/2026-11-24T12:00:00.123456Z"
    )
    assert expected == uuid.UUID("5a0ced4b-0c28-504d-9f5e-37a9bd1d6b66")
    assert to_event(alert(), NAMES).event_id == expected


def test_repeat_notifications_of_one_alert_map_to_one_event_id() -> None:
    first = to_event(alert(), NAMES)
    repeat = to_event(
        alert(annotations={"summary": "reworded"}, generatorURL="http://other:9090"), NAMES
    )
    assert repeat.event_id == first.event_id


def test_the_same_start_written_with_another_offset_is_the_same_occurrence() -> None:
    utc = to_event(alert(startsAt="2026-11-24T12:00:00Z"), NAMES)
    offset = to_event(alert(startsAt="2026-11-24T14:00:00+02:00"), NAMES)
    assert offset.event_id == utc.event_id


def test_a_new_occurrence_of_the_alert_gets_a_new_event_id() -> None:
    first = to_event(alert(), NAMES)
    again = to_event(alert(startsAt="2026-11-24T13:00:00Z"), NAMES)
    assert again.event_id != first.event_id


def test_the_resolution_is_another_event_of_the_same_occurrence() -> None:
    firing = to_event(alert(), NAMES)
    resolved = to_event(alert(status="resolved", endsAt="2026-11-24T12:03:00Z"), NAMES)
    assert resolved.event_id != firing.event_id
    later = to_event(alert(status="resolved", endsAt="2026-11-24T12:03:00.5Z"), NAMES)
    assert later.event_id == resolved.event_id


def test_other_fingerprints_are_other_alerts() -> None:
    assert (
        to_event(alert(fingerprint="aaaa"), NAMES).event_id
        != to_event(alert(fingerprint="bbbb"), NAMES).event_id
    )


def test_without_a_fingerprint_the_label_set_identifies_the_alert() -> None:
    labels = {"alertname": "X", "cluster_id": "c1", "instance_id": "i1", "gpu": "3"}

    def event(labels: dict[str, str]) -> PassiveHealthCheckEvent:
        return to_event(
            AlertmanagerAlert.model_validate(
                {"status": "firing", "labels": labels, "startsAt": "2026-11-24T12:00:00Z"}
            ),
            NAMES,
        )

    one = event(labels)
    assert event(dict(reversed(list(labels.items())))).event_id == one.event_id
    assert event({**labels, "gpu": "4"}).event_id != one.event_id


# --- fields -----------------------------------------------------------------------------


def test_a_firing_alert_maps_to_a_firing_event_observed_at_its_start() -> None:
    event = to_event(alert(labels={"instance_name": "gpu-node-1"}), NAMES)
    assert (event.cluster_id, event.instance_id, event.instance_name) == ("c1", "i1", "gpu-node-1")
    assert event.alert_name == "DmesgXidError"
    assert event.status is AlertStatus.FIRING
    assert event.severity is Severity.CRITICAL
    assert event.observed_at == datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)


def test_a_resolved_alert_is_observed_at_its_end() -> None:
    event = to_event(alert(status="resolved", endsAt="2026-11-24T12:04:30Z"), NAMES)
    assert event.status is AlertStatus.RESOLVED
    assert event.observed_at == datetime(2026, 11, 24, 12, 4, 30, tzinfo=UTC)


def test_instance_name_is_optional() -> None:
    assert to_event(alert(), NAMES).instance_name is None


def test_label_names_are_configurable() -> None:
    names = LabelNames(cluster="cluster", instance="node", instance_name="hostname")
    event = to_event(
        alert(
            labels={
                "cluster_id": None,
                "instance_id": None,
                "cluster": "prod-a",
                "node": "n-17",
                "hostname": "gpu-17",
            }
        ),
        names,
    )
    assert (event.cluster_id, event.instance_id) == ("prod-a", "n-17")
    assert event.instance_name == "gpu-17"
    assert event.annotations is not None
    assert not {"cluster", "node", "hostname"} & set(event.annotations)


def test_labels_become_annotations_and_annotations_win_a_clash() -> None:
    event = to_event(
        alert(
            labels={"xid": "79", "gpu": "3", "instance_name": "n1"},
            annotations={"gpu": "GPU 3 (bus 0000:3b:00.0)", "summary": "fell off the bus"},
        ),
        NAMES,
    )
    assert event.annotations == {
        "severity": "critical",
        "xid": "79",
        "gpu": "GPU 3 (bus 0000:3b:00.0)",
        "summary": "fell off the bus",
    }


@pytest.mark.parametrize(
    ("label", "severity"),
    [
        ("critical", Severity.CRITICAL),
        ("CRITICAL", Severity.CRITICAL),
        ("Page", Severity.CRITICAL),
        ("crit", Severity.CRITICAL),
        ("fatal", Severity.CRITICAL),
        ("warning", Severity.WARNING),
        ("Warn", Severity.WARNING),
        ("info", Severity.INFO),
        ("none", Severity.INFO),
        (" info ", Severity.INFO),
        ("sev2", DEFAULT_SEVERITY),
        ("", DEFAULT_SEVERITY),
        (None, DEFAULT_SEVERITY),
    ],
)
def test_severity_label_spellings(label: str | None, severity: Severity) -> None:
    assert to_event(alert(labels={"severity": label}), NAMES).severity is severity


def test_an_unknown_or_missing_severity_is_a_warning_with_the_raw_value_kept() -> None:
    assert DEFAULT_SEVERITY is Severity.WARNING
    event = to_event(alert(labels={"severity": "P1"}), NAMES)
    assert event.annotations is not None
    assert event.annotations["severity"] == "P1"


# --- unmappable -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"labels": {"instance_id": None}}, "missing label(s) instance_id"),
        ({"labels": {"cluster_id": " "}}, "missing label(s) cluster_id"),
        ({"labels": {"alertname": None, "cluster_id": None}}, "alertname, cluster_id"),
        ({"startsAt": "yesterday"}, "startsAt 'yesterday' is not an RFC 3339 timestamp"),
        ({"startsAt": "2026-11-24T12:00:00"}, "not an RFC 3339 timestamp with a zone"),
        ({"startsAt": None}, "startsAt is missing"),
        ({"startsAt": "0001-01-01T00:00:00Z"}, "startsAt is not set"),
        ({"status": "resolved"}, "endsAt is not set"),
        ({"status": "resolved", "endsAt": None}, "endsAt is missing"),
        ({"status": "pending"}, "status 'pending' is neither 'firing' nor 'resolved'"),
        ({"labels": {"instance_id": "rack/12"}}, "instance_id: not an id: no '/'"),
    ],
)
def test_unmappable_alerts_say_why_in_one_line(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unmappable) as caught:
        to_event(alert(**overrides), NAMES)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_label_reason_names_the_labels_the_alert_has() -> None:
    with pytest.raises(Unmappable, match=r"the alert has: alertname, cluster_id, node, severity"):
        to_event(alert(labels={"instance_id": None, "node": "n1"}), NAMES)


# --- the payload and the settings -------------------------------------------------------


def test_the_sample_notification_parses_and_maps() -> None:
    payload = AlertmanagerWebhook.model_validate_json(
        (DATA_DIR / "alertmanager-webhook.json").read_bytes()
    )
    firing, resolved = (to_event(a, NAMES) for a in payload.alerts)
    assert (firing.instance_id, firing.severity, firing.status) == (
        "inst-7f3a",
        Severity.CRITICAL,
        AlertStatus.FIRING,
    )
    assert firing.annotations is not None
    assert (firing.annotations["xid"], firing.annotations["gpu"]) == ("79", "2")
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.observed_at == datetime(2026, 11, 24, 11, 52, 30, tzinfo=UTC)


def test_the_payload_is_strict_about_json_types() -> None:
    with pytest.raises(ValueError, match=r"labels\.gpu"):
        AlertmanagerWebhook.model_validate(
            {"version": "4", "alerts": [{"status": "firing", "labels": {"gpu": 3}}]}
        )


def test_label_name_settings_default_and_are_read_from_the_environment() -> None:
    defaults = load_settings({})
    assert (
        defaults.alertmanager_cluster_label,
        defaults.alertmanager_instance_label,
        defaults.alertmanager_instance_name_label,
    ) == ("cluster_id", "instance_id", "instance_name")
    settings = load_settings(
        {
            "REMEDIATOR_ALERTMANAGER_CLUSTER_LABEL": "cluster",
            "REMEDIATOR_ALERTMANAGER_INSTANCE_LABEL": "node",
            "REMEDIATOR_ALERTMANAGER_INSTANCE_NAME_LABEL": "hostname",
        }
    )
    assert settings.alertmanager_instance_label == "node"


def test_a_label_setting_that_is_no_label_name_stops_the_worker_naming_it() -> None:
    with pytest.raises(ConfigError, match="REMEDIATOR_ALERTMANAGER_INSTANCE_LABEL"):
        load_settings({"REMEDIATOR_ALERTMANAGER_INSTANCE_LABEL": "instance-id"})
