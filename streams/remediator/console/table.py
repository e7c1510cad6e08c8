"""API answers as text for a terminal: aligned tables and short detail views. Pure.

Everything works on the API's JSON (dicts), tolerating fields that are missing (an older
worker) or unknown (a newer one). Enum values are shown short (``REBOOT_VM`` for
``REMEDIATION_MODE_REBOOT_VM``, ``AUTOMATED`` for ``REMEDIATION_TRIGGER_AUTOMATED``);
times in UTC, to the second. ``-`` stands for "none".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NONE = "-"
EVIDENCE_WIDTH = 48
REASON_WIDTH = 60
MODE_PREFIX = "REMEDIATION_MODE_"
TRIGGER_PREFIX = "REMEDIATION_TRIGGER_"

Record = Mapping[str, Any]

REMEDIATION_COLUMNS = (
    "ID",
    "CLUSTER",
    "INSTANCE",
    "STATE",
    "MODE",
    "TRIGGER",
    "CREATED (UTC)",
    "EVIDENCE",
)


def render(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns left-aligned to their widest cell, two spaces apart, no trailing blanks."""
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def clip(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def short(value: Any, prefix: str) -> str:
    if not value:
        return NONE
    text = str(value)
    return text.removeprefix(prefix)


def when(value: Any) -> str:
    """``2026-11-24T12:00:41.545Z`` -> ``2026-11-24 12:00:41`` (the API's times are UTC)."""
    if not value:
        return NONE
    text = str(value).replace("T", " ").removesuffix("Z")
    date_time, dot, _fraction = text.partition(".")
    return date_time if dot else text


def evidence(record: Record) -> str:
    """What triggered the remediation, in a few words: the first health signal (its test or
    alert, an xid, the run or event id's first 8 characters) and how many came after it; for
    an operator's own remediation, its reason."""
    signals = record.get("signals") or []
    if signals:
        first = signals[0]
        kind = "run" if first.get("kind") == "ACTIVE_RUN" else "event"
        name = str(first.get("name") or "?")
        detail = _xid(record, str(first.get("id") or ""))
        if kind == "run" and first.get("status"):
            detail = str(first["status"])
        text = " ".join(p for p in (name, detail, f"{kind} {str(first.get('id', ''))[:8]}") if p)
        if len(signals) > 1:
            text += f" (+{len(signals) - 1})"
        return clip(text, EVIDENCE_WIDTH)
    if record.get("active_health_check_run_id"):
        return f"run {str(record['active_health_check_run_id'])[:8]}"
    if record.get("passive_health_check_event_id"):
        return f"event {str(record['passive_health_check_event_id'])[:8]}"
    reason = record.get("reason")
    return clip(f"manual: {reason}", EVIDENCE_WIDTH) if reason else NONE


def _xid(record: Record, event_id: str) -> str:
    for alert in record.get("linked_alerts") or []:
        if alert.get("passive_health_check_alert_id") == event_id:
            xid = (alert.get("annotations") or {}).get("xid")
            return f"xid {xid}" if xid else ""
    return ""


def remediation_row(record: Record) -> list[str]:
    return [
        str(record.get("id", NONE)),
        str(record.get("cluster_id", NONE)),
        str(record.get("instance_id", NONE)),
        str(record.get("state", NONE)),
        short(record.get("mode"), MODE_PREFIX),
        short(record.get("trigger"), TRIGGER_PREFIX),
        when(record.get("create_time")),
        evidence(record),
    ]


def remediations(records: Sequence[Record]) -> str:
    """The list view: one row per remediation."""
    if not records:
        return "no remediations"
    return render(REMEDIATION_COLUMNS, (remediation_row(r) for r in records))


def _pairs(pairs: Iterable[tuple[str, str]]) -> str:
    items = [(k, v) for k, v in pairs if v not in ("", NONE)]
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{(k + ':').ljust(width + 1)} {v}" for k, v in items)


def remediation(record: Record) -> str:
    """The detail view of one remediation: every field that is set, its signals and steps."""
    reviewed = record.get("reviewed_by")
    if reviewed:
        reviewed = f"{reviewed} at {when(record.get('review_time'))}"
    lines = [
        _pairs(
            [
                ("id", str(record.get("id", NONE))),
                ("cluster", str(record.get("cluster_id", NONE))),
                ("instance", _instance_label(record)),
                ("state", str(record.get("state", NONE))),
                ("mode", short(record.get("mode"), MODE_PREFIX)),
                ("trigger", short(record.get("trigger"), TRIGGER_PREFIX)),
                ("rule", str(record.get("rule") or NONE)),
                ("reason", str(record.get("reason") or NONE)),
                (
                    "requested by",
                    f"{record.get('requested_by', NONE)} at {when(record.get('create_time'))}",
                ),
                ("reviewed by", str(reviewed or NONE)),
                ("approvals", approvals(record)),
                ("comment", str(record.get("review_comment") or NONE)),
                ("started", when(record.get("start_time"))),
                ("ended", when(record.get("end_time"))),
                ("error", str(record.get("error_message") or NONE)),
                ("updated", when(record.get("update_time"))),
            ]
        )
    ]
    signals = record.get("signals") or []
    if signals:
        lines += ["", "signals:", _signals(signals)]
    operations = record.get("operations") or []
    if operations:
        lines += ["", "steps:", _steps(operations)]
    return "\n".join(lines)


def _signals(signals: Sequence[Record]) -> str:
    return render(
        ["AT (UTC)", "KIND", "NAME", "STATUS", "ID"],
        (
            [
                when(s.get("observed_at")),
                "run" if s.get("kind") == "ACTIVE_RUN" else "event",
                str(s.get("name", NONE)),
                str(s.get("status", NONE)),
                str(s.get("id", NONE)),
            ]
            for s in signals
        ),
    )


def _steps(operations: Sequence[Record]) -> str:
    return render(
        ["ACTION", "STATE", "STARTED (UTC)", "ENDED (UTC)", "ERROR"],
        (
            [
                str(o.get("action", NONE)),
                str(o.get("state", NONE)),
                when(o.get("start_time")),
                when(o.get("end_time")),
                clip(str(o.get("error") or NONE), REASON_WIDTH),
            ]
            for o in operations
        ),
    )


def approvals(record: Record) -> str:
    """Two-person approval in one line: who approved, and what is still needed."""
    given = record.get("approvals") or []
    required = record.get("approvals_required")
    if not required or not given:
        return NONE
    names = ", ".join(
        f"{a.get('principal')} ({short(a.get('mode'), MODE_PREFIX)}) at {when(a.get('at'))}"
        for a in given
    )
    missing = int(required) - len(given)
    if missing > 0 and record.get("state") == "PENDING_APPROVAL":
        return f"{names}; {missing} more needed, from someone else"
    return f"{names} ({len(given)} of {required})"


def _instance_label(record: Record) -> str:
    instance = str(record.get("instance_id", NONE))
    name = record.get("instance_name")
    return f"{instance} ({name})" if name and name != instance else instance


def explanation(answer: Record) -> str:
    """``explain``: why the instance's remediations are what they are."""
    opt_out = answer.get("opt_out")
    open_one = answer.get("open_remediation")
    debounce = answer.get("debounce") or {}
    lines = [
        _pairs(
            [
                ("cluster", str(answer.get("cluster_id", NONE))),
                ("instance", str(answer.get("instance_id", NONE))),
                (
                    "opted out",
                    f"by {opt_out.get('by')} at {when(opt_out.get('at'))}: {opt_out.get('reason')}"
                    if opt_out
                    else NONE,
                ),
                (
                    "open",
                    f"{open_one.get('id')} {open_one.get('state')} "
                    f"{short(open_one.get('mode'), MODE_PREFIX)}"
                    if open_one
                    else "none",
                ),
                ("approvals", approvals(open_one) if open_one else NONE),
                ("freeze", _freeze(answer["freeze"]) if answer.get("freeze") else NONE),
                ("cooldown until", when(answer.get("cooldown_until"))),
                ("verification", _verification(answer.get("verification"))),
                ("debounce", ", ".join(f"{k} {v}" for k, v in sorted(debounce.items())) or NONE),
                ("last signal", when(answer.get("last_signal_at"))),
            ]
        )
    ]
    decisions = answer.get("decisions") or []
    lines += ["", "decisions, newest first:" if decisions else "no decisions recorded"]
    if decisions:
        lines.append(
            render(
                ["AT (UTC)", "SIGNAL", "OUTCOME", "RULE", "REMEDIATION", "REASON"],
                (_decision_row(d) for d in decisions),
            )
        )
    recent = answer.get("recent") or []
    if recent:
        lines += ["", "recent closed remediations:", remediations(recent)]
    return "\n".join(lines)


def _verification(note: Record | None) -> str:
    """The check after the last SUCCEEDED remediation, in one line."""
    if not note:
        return NONE
    state = str(note.get("state", NONE))
    text = f"{state} {note.get('remediation_id')}"
    if state == "PENDING":
        text += f", health due by {when(note.get('deadline'))}"
    elif state == "VERIFIED":
        text += f" by {note.get('by')} at {when(note.get('at'))}"
    else:
        text += f" at {when(note.get('at'))}"
        if note.get("recovered_by"):
            text += f", healthy since {when(note.get('recovered_at'))}"
        else:
            text += ": the next failing signal escalates at once"
    return text


def _decision_row(decision: Record) -> list[str]:
    signal = decision.get("signal") or {}
    kind = "run" if signal.get("kind") == "ACTIVE_RUN" else "event"
    return [
        when(decision.get("at")),
        f"{signal.get('name', '?')} {signal.get('status', '')} {kind} "
        f"{str(signal.get('id', ''))[:8]}".replace("  ", " "),
        str(decision.get("outcome", NONE)),
        str(decision.get("rule") or NONE),
        str(decision.get("remediation_id") or NONE),
        clip(str(decision.get("reason") or NONE), REASON_WIDTH),
    ]


def _tripped(view: Record) -> str:
    return "since " + when(view["tripped_at"]) if view.get("tripped_at") else "no"


def _domain(domain: Record) -> str:
    """One failure domain of the safety view: its count, limit and whether it tripped."""
    unhealthy = domain.get("unhealthy_instances") or []
    tripped = f", tripped {when(domain['tripped_at'])}" if domain.get("tripped_at") else ""
    return (
        f"{domain.get('domain', '?')}: {len(unhealthy)} open of {domain.get('limit', '?')} "
        f"allowed, {domain.get('known_instances', '?')} known{tripped}"
    )


def _paused(value: Any) -> str:
    if not value:
        return "no"
    by = value.get("by") or value.get("paused_by") or "?"
    at = value.get("at") or value.get("paused_at")
    return clip(f"{value.get('reason', '')} ({by}, {when(at)})", REASON_WIDTH)


def _open_counts(counts: Any) -> str:
    if not isinstance(counts, Mapping):
        return NONE
    parts = [f"{state} {n}" for state, n in counts.items() if n]
    return ", ".join(parts) or "0"


def _of(used: Any, limit: Any) -> str:
    if used is None:
        return NONE
    return f"{used}/{limit}" if limit not in (None, 0) else f"{used}/no limit"


def clusters(items: Sequence[Record]) -> str:
    """``clusters list``: one row per cluster, with the fleet summaries a worker gives."""
    if not items:
        return "no clusters known yet"
    return render(
        ["CLUSTER", "INSTANCES", "OPEN", "BLAST RADIUS", "LAST HOUR", "TRIPPED", "PAUSED"],
        (
            [
                str(c.get("cluster_id", NONE)),
                str(c.get("known_instances", NONE)),
                _open_counts(c.get("open_remediations")),
                _of(c.get("blast_radius_open"), c.get("blast_radius_limit")),
                _of(c.get("opened_last_hour"), c.get("rate_budget_per_hour")),
                _tripped(c) if "tripped_at" in c else NONE,
                _paused(c.get("paused")) if "paused" in c else NONE,
            ]
            for c in items
        ),
    )


def safety(view: Record) -> str:
    """``clusters safety|pause|resume``: a cluster's safety state."""
    unhealthy = view.get("unhealthy_instances") or []
    return _pairs(
        [
            ("cluster", str(view.get("cluster_id", NONE))),
            ("paused", _paused(view.get("paused"))),
            ("frozen", "; ".join(_freeze(f) for f in view.get("freezes") or []) or "no"),
            (
                "blast radius",
                f"{len(unhealthy)} open of {view.get('limit', '?')} allowed"
                f" (resumes at {view.get('resume_at', '?')} once tripped)",
            ),
            ("tripped", _tripped(view)),
            (
                "opened last hour",
                _of(view.get("opened_last_hour", 0), view.get("rate_budget_per_hour")),
            ),
            ("known instances", str(view.get("known_instances", NONE))),
            ("unhealthy", ", ".join(unhealthy) or "none"),
            *(("failure domain", _domain(d)) for d in view.get("domains") or []),
            ("running", ", ".join(view.get("running") or []) or "none"),
            ("queued", ", ".join(view.get("queued") or []) or "none"),
            ("waiting", ", ".join(view.get("waiting") or []) or "none"),
            *(("next freeze", _freeze(f)) for f in (view.get("next_freezes") or [])[:3]),
            ("as of", when(view.get("as_of"))),
        ]
    )


def _freeze(freeze: Record) -> str:
    """A change freeze's window: its name, where, until when, why."""
    domains = freeze.get("domains") or []
    where = f" in {', '.join(domains)}" if domains else ""
    return (
        f"{freeze.get('name')}{where} {when(freeze.get('start'))} -> {when(freeze.get('end'))}: "
        f"{freeze.get('reason')}"
    )
