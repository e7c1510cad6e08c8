"""Passive alerts linked to a remediation (``linked_alerts``, the provider's SDK 3.1.1).

Every passive alert that fires on an instance while one of its remediations is open (and
the one that opened it) is linked to that remediation, one entry per occurrence, with its
FIRING time; the matching RESOLVED event later sets ``resolved_at``. Each entry carries
the alert's annotations, and the typed reading the SDK shows: the GPU Xid errors named in
an ``xid`` annotation, with the driver's mnemonic for each code (NVIDIA's published Xid
catalogue), and the Slurm drain reason of ``SlurmNodeUnavailable``.

Pure: :func:`link` returns the remediation with the alert linked or resolved, or ``None``
when the event changes nothing (a repeat, a RESOLVED for nothing open).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from .models import (
    AlertStatus,
    LinkedAlert,
    LinkedAlertAnnotation,
    PassiveHealthCheckEvent,
    Remediation,
    SlurmNodeUnavailable,
    XidAnnotation,
    XidEvent,
)

#: Linked alerts kept on one remediation (the oldest, including the opener, first).
MAX_LINKED_ALERTS = 100

#: NVIDIA's Xid catalogue (driver mnemonics) for the codes GPU fleets meet most; an
#: unknown code keeps an empty mnemonic.
XID_MNEMONICS: Mapping[str, str] = {
    "8": "GPU stopped processing",
    "13": "Graphics Engine Exception",
    "31": "GPU memory page fault",
    "32": "Invalid or corrupted push buffer stream",
    "38": "Driver firmware error",
    "43": "GPU stopped processing",
    "45": "Preemptive cleanup, due to previous errors",
    "48": "Double Bit ECC Error",
    "56": "Display Engine error",
    "57": "Error programming video memory interface",
    "61": "Internal micro-controller breakpoint/warning",
    "62": "Internal micro-controller halt",
    "63": "ECC page retirement or row remapping recording event",
    "64": "ECC page retirement or row remapper recording failure",
    "68": "NVDEC0 Exception",
    "69": "Graphics Engine class error",
    "74": "NVLINK Error",
    "79": "GPU has fallen off the bus",
    "92": "High single-bit ECC error rate",
    "94": "Contained ECC error",
    "95": "Uncontained ECC error",
    "119": "GSP RPC Timeout",
    "120": "GSP Error",
    "121": "C2C Link corrected error",
    "140": "Unrecovered ECC Error",
}

_SEVERITY = {"INFO": "PHC_SEVERITY_INFO", "WARNING": "PHC_SEVERITY_WARNING"}
_CODES = re.compile(r"\d+")


def xid_events(annotations: Mapping[str, str]) -> XidAnnotation | None:
    """The Xid codes an ``xid`` annotation names (``"79"``, ``"79,48"``, ``"13 13 31"``)."""
    raw = annotations.get("xid")
    if raw is None:
        return None
    counts = Counter(_CODES.findall(raw))
    if not counts:
        return None
    return XidAnnotation(
        events=[
            XidEvent(xid_code=code, count=count, mnemonic=XID_MNEMONICS.get(code, ""))
            for code, count in counts.items()
        ]
    )


def linked_alert(event: PassiveHealthCheckEvent, remediation_id: str) -> LinkedAlert:
    """The SDK's ``LinkedAlert`` for one FIRING occurrence of a passive alert."""
    # Clipped already, as the event was read (domain/bounds.py).
    annotations = dict(event.annotations or {})
    target = event.instance_name or event.instance_id
    severity = _SEVERITY.get(event.severity.value, "PHC_SEVERITY_CRITICAL")
    slurm = None
    if event.alert_name == "SlurmNodeUnavailable":
        slurm = SlurmNodeUnavailable(reason=annotations.get("reason", ""))
    return LinkedAlert(
        passive_health_check_alert_id=str(event.event_id),
        alert_name=event.alert_name,
        severity=severity,
        cluster_id=event.cluster_id,
        instance_id=event.instance_id,
        target_vm=target,
        started_at=event.observed_at,
        annotations=annotations,
        annotation=LinkedAlertAnnotation(
            title=event.alert_name,
            description=annotations.get("description", ""),
            summary_line=annotations.get("summary")
            or f"{event.alert_name} ({event.severity.value}) on {target}",
            xid=xid_events(annotations),
            slurm_node_unavailable=slurm,
        ),
        node_remediation_intent_id=remediation_id,
    )


def link(remediation: Remediation, event: PassiveHealthCheckEvent) -> Remediation | None:
    """``remediation`` with ``event`` linked (FIRING) or resolving its alert (RESOLVED)."""
    alerts = remediation.linked_alerts
    if event.status is AlertStatus.FIRING:
        event_id = str(event.event_id)
        if len(alerts) >= MAX_LINKED_ALERTS or any(
            a.passive_health_check_alert_id == event_id for a in alerts
        ):
            return None
        entry = linked_alert(event, remediation.id)
        return remediation.model_copy(update={"linked_alerts": [*alerts, entry]})
    for index in range(len(alerts) - 1, -1, -1):
        alert = alerts[index]
        if (
            alert.alert_name == event.alert_name
            and alert.resolved_at is None
            and alert.started_at <= event.observed_at
        ):
            resolved = alert.model_copy(update={"resolved_at": event.observed_at})
            updated = [*alerts[:index], resolved, *alerts[index + 1 :]]
            return remediation.model_copy(update={"linked_alerts": updated})
    return None
