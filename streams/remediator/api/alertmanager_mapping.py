"""Prometheus Alertmanager's webhook payload, and how one of its alerts becomes a signal.

Each alert becomes a :class:`PassiveHealthCheckEvent` (the passive input topic's payload,
``domain/models.py``).

Pure: no I/O, no clock. The webhook view (:mod:`remediator.api.alertmanager`) validates
the request with :class:`AlertmanagerWebhook` and calls :func:`to_event` per alert; an
alert that cannot be mapped raises :class:`Unmappable` with a one-line reason and goes to
the dead-letter topic, while the rest of the request goes through.

The rules kept here:

- ``cluster_id``, ``instance_id`` and ``instance_name`` come from labels whose names are
  configurable (:class:`LabelNames`); ``alert_name`` from ``alertname``. A missing or
  empty cluster, instance or alertname label makes the alert unmappable.
- ``severity`` from the ``severity`` label, case-insensitive (:data:`SEVERITIES`). A
  missing or unknown severity is WARNING: recorded and visible, never by itself the cause
  of a repair (the policy only opens remediations for CRITICAL alerts).
- ``observed_at`` is ``startsAt`` for a firing alert and ``endsAt`` for a resolved one.
  Go's zero time (``0001-01-01T00:00:00Z``, what Alertmanager sends as the ``endsAt`` of
  a firing alert) counts as not set.
- ``annotations`` are the alert's labels, except those mapped to fields above, with the
  alert's annotations on top (an annotation wins over a label of the same name). So a
  policy rule refining on ``xid`` matches whether monitoring put ``xid`` in a label or an
  annotation, and the raw ``severity`` spelling stays visible.
- ``event_id`` is a uuid5 of the alert's fingerprint, status and ``startsAt``: every
  notification of one alert occurrence (Alertmanager repeats them every
  ``repeat_interval``, and each instance of an HA pair sends its own) carries the same id,
  so the pipeline counts it once; its resolution is one more event, counted once too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from remediator.domain.bounds import clip, echo
from remediator.domain.ids import NAMESPACE
from remediator.domain.models import (
    AlertStatus,
    PassiveHealthCheckEvent,
    Severity,
    Timestamp,
    format_timestamp,
)
from remediator.pipeline.decode import describe

ALERT_NAME_LABEL = "alertname"
SEVERITY_LABEL = "severity"

#: Spellings of the ``severity`` label (lower-cased) and what they mean here. Anything
#: else, or no severity label at all, is :data:`DEFAULT_SEVERITY`.
SEVERITIES: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "crit": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "info": Severity.INFO,
    "informational": Severity.INFO,
    "notice": Severity.INFO,
    "none": Severity.INFO,
}
DEFAULT_SEVERITY = Severity.WARNING

_STATUSES = {"firing": AlertStatus.FIRING, "resolved": AlertStatus.RESOLVED}
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_MAX_LABELS_SHOWN = 10

_timestamp: TypeAdapter[datetime] = TypeAdapter(Timestamp)


class _Payload(BaseModel):
    # Strict: a number where a string belongs is a malformed request, not something to
    # coerce (the OpenAPI document says exactly what the model accepts). Fields that
    # Alertmanager may add later are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class AlertmanagerAlert(_Payload):
    """One alert of a webhook notification. Only its shape is checked on receipt: an alert
    whose values cannot be used (status, timestamps, the labels needed) is dead-lettered,
    and the rest of the notification still goes through."""

    # The values are checked by to_event, not here, for exactly that reason.

    status: str = Field(description="'firing' or 'resolved'.")
    labels: dict[str, str] = Field(description="The alert's identity: alertname, the instance, ...")
    annotations: dict[str, str] = Field(default_factory=dict, description="Descriptive text.")
    starts_at: str | None = Field(default=None, alias="startsAt", description="RFC 3339.")
    ends_at: str | None = Field(
        default=None,
        alias="endsAt",
        description="RFC 3339; Go's zero time (0001-01-01T00:00:00Z) while firing.",
    )
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str | None = Field(
        default=None, description="Alertmanager's hash of the label set."
    )


class AlertmanagerWebhook(_Payload):
    """The body Alertmanager POSTs to a ``webhook_config`` receiver (payload version 4)."""

    version: str = Field(description="'4' from every Alertmanager since 0.x.")
    group_key: str | None = Field(default=None, alias="groupKey")
    truncated_alerts: int = Field(
        default=0, ge=0, alias="truncatedAlerts", description="Alerts left out by max_alerts."
    )
    status: str | None = Field(default=None, description="Of the group: firing or resolved.")
    receiver: str | None = None
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str | None = Field(default=None, alias="externalURL")
    alerts: list[AlertmanagerAlert]


class AlertmanagerWebhookResponse(BaseModel):
    """The webhook's answer: what became of the notification's alerts."""

    model_config = ConfigDict(frozen=True)

    accepted: int = Field(description="Alerts produced as passive health-check events.")
    dead_lettered: int = Field(description="Alerts that could not be mapped, dead-lettered.")
    errors: list[str] = Field(
        default_factory=list, description="One line per dead-lettered alert: which and why."
    )


@dataclass(frozen=True)
class LabelNames:
    """Which labels hold the instance's identity (``REMEDIATOR_ALERTMANAGER_*_LABEL``)."""

    cluster: str = "cluster_id"
    instance: str = "instance_id"
    instance_name: str = "instance_name"


class Unmappable(ValueError):
    """An alert that cannot become a health-check event. ``str(exc)`` is one line."""


def severity_of(labels: dict[str, str]) -> Severity:
    """The ``severity`` label's meaning; :data:`DEFAULT_SEVERITY` when missing or unknown."""
    raw = labels.get(SEVERITY_LABEL, "")
    return SEVERITIES.get(raw.strip().lower(), DEFAULT_SEVERITY)


def event_id(fingerprint: str, status: AlertStatus, starts_at: datetime) -> uuid.UUID:
    """The event id of one alert occurrence (``startsAt``) in one status."""
    return uuid.uuid5(
        NAMESPACE, f"alertmanager/{fingerprint}/{status.value}/{format_timestamp(starts_at)}"
    )


def to_event(alert: AlertmanagerAlert, names: LabelNames) -> PassiveHealthCheckEvent:
    """The passive health-check event of ``alert``; :class:`Unmappable` if it has none."""
    status = _STATUSES.get(alert.status.strip().lower())
    if status is None:
        raise Unmappable(f"status {echo(alert.status)} is neither 'firing' nor 'resolved'")
    labels = alert.labels
    needed = (ALERT_NAME_LABEL, names.cluster, names.instance)
    missing = [name for name in needed if not labels.get(name, "").strip()]
    if missing:
        raise Unmappable(
            f"missing label(s) {', '.join(missing)} (the alert has: {_label_names(labels)})"
        )
    starts_at = _parse(alert.starts_at, "startsAt")
    observed_at = starts_at
    if status is AlertStatus.RESOLVED:
        observed_at = _parse(alert.ends_at, "endsAt")
    mapped = {ALERT_NAME_LABEL, names.cluster, names.instance, names.instance_name}
    annotations = {k: v for k, v in labels.items() if k not in mapped} | alert.annotations
    fingerprint = alert.fingerprint or _label_set(labels)
    try:
        return PassiveHealthCheckEvent.model_validate(
            {
                "event_id": event_id(fingerprint, status, starts_at),
                "cluster_id": labels[names.cluster],
                "instance_id": labels[names.instance],
                "instance_name": labels.get(names.instance_name) or None,
                "alert_name": labels[ALERT_NAME_LABEL],
                "severity": severity_of(labels),
                "status": status,
                "observed_at": observed_at,
                "annotations": annotations or None,
            }
        )
    except ValidationError as exc:
        raise Unmappable(describe(PassiveHealthCheckEvent, exc)) from None


def _parse(value: str | None, name: str) -> datetime:
    if value is None or not value.strip():
        raise Unmappable(f"{name} is missing")
    try:
        parsed = _timestamp.validate_python(value.strip())
    except ValidationError:
        raise Unmappable(f"{name} {echo(value)} is not an RFC 3339 timestamp with a zone") from None
    if parsed == _GO_ZERO_TIME:
        raise Unmappable(f"{name} is not set ({echo(value)})")
    return parsed


def _label_names(labels: dict[str, str]) -> str:
    shown = sorted(labels)[:_MAX_LABELS_SHOWN]
    more = len(labels) - len(shown)
    return (", ".join(shown) or "no labels") + (f" and {more} more" if more > 0 else "")


def _label_set(labels: dict[str, str]) -> str:
    """A stand-in for Alertmanager's fingerprint when a sender leaves it out: the sorted
    label set identifies the alert just as well (the fingerprint is a hash of it)."""
    return clip("{" + ",".join(f"{k}={v!r}" for k, v in sorted(labels.items())) + "}", 500)
