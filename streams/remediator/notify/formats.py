"""What a receiver gets: the notice read off a record, its body in each format, its signature.

A *notice* is one record of the transitions or policy-events topic that a target may
want: a transition INTO a state (a record's update that keeps its state is not one), or
a policy event. Records are read as plain JSON objects, not through the models, so that
a kind this worker does not know yet (an event added by a newer worker) is still told.

- ``cloudevents``: structured-mode CloudEvents 1.0 (``application/cloudevents+json``),
  ``id`` the transition's or event's id, so that a receiver drops the repeats that
  at-least-once delivery makes; ``data`` the record as published.
- ``slack``: an incoming-webhook message, ``text`` (the fallback and notification line)
  and ``blocks``, with a link to the instance's (or cluster's) dashboard page.

The signature is ``sha256=<hex HMAC-SHA256 of the exact body bytes>`` with the target's
secret; see docs/notifications.md for a receiver's check.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import orjson

#: Which topic a notice came from (the CloudEvents type's second part).
Source = Literal["transition", "policy"]
TRANSITION: Source = "transition"
POLICY_EVENT: Source = "policy"
CLOUDEVENTS_TYPE = "application/cloudevents+json"
JSON_TYPE = "application/json"
_MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Notice:
    """One record worth telling about."""

    source: Source
    id: str
    #: The state entered (a transition) or the event's kind (a policy event).
    trigger: str
    cluster_id: str | None
    instance_id: str | None
    occurred_at: str | None
    record: dict[str, Any]

    @property
    def subject(self) -> str:
        """``cluster/instance``, or the cluster alone for a cluster's own event."""
        where = [p for p in (self.cluster_id, self.instance_id) if p]
        return "/".join(where) or "-"


def notice_of(source: Source, raw: bytes | None) -> Notice | None:
    """The notice a record makes; None when it makes none (an update that keeps the
    state, or a record that is not a JSON object with the fields needed)."""
    try:
        record = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    if source == TRANSITION:
        return _transition(record)
    event_id, kind = record.get("event_id"), record.get("kind")
    if not isinstance(event_id, str) or not isinstance(kind, str):
        return None
    return Notice(
        POLICY_EVENT,
        event_id,
        kind,
        _text(record.get("cluster_id")),
        _text(record.get("instance_id")),
        _text(record.get("occurred_at")),
        record,
    )


def _transition(record: dict[str, Any]) -> Notice | None:
    transition_id, to_state = record.get("transition_id"), record.get("to_state")
    if not isinstance(transition_id, str) or not isinstance(to_state, str):
        return None
    if record.get("from_state") == to_state:
        return None  # an update of an open record (a signal attached), not a change
    remediation = record.get("remediation")
    remediation = remediation if isinstance(remediation, dict) else {}
    return Notice(
        TRANSITION,
        transition_id,
        to_state,
        _text(remediation.get("cluster_id")),
        _text(remediation.get("instance_id")),
        _text(record.get("occurred_at")),
        record,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def cloudevent(notice: Notice, source: str) -> bytes:
    """The structured-mode CloudEvents 1.0 body of ``notice``; ``source`` e.g.
    ``remediator/<app id>``."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": notice.id,
        "source": source,
        "type": f"com.remediator.{notice.source}.{notice.trigger}",
        "subject": notice.subject,
        "datacontenttype": JSON_TYPE,
        "data": notice.record,
    }
    if notice.occurred_at is not None:
        event["time"] = notice.occurred_at
    return orjson.dumps(event)


def dashboard_link(base_url: str, notice: Notice) -> str:
    """The dashboard page of the notice's instance, or of its cluster."""
    base = base_url.rstrip("/") + "/dashboard/#/"
    if notice.cluster_id and notice.instance_id:
        return f"{base}instance/{quote(notice.cluster_id, safe='')}/" + quote(
            notice.instance_id, safe=""
        )
    if notice.cluster_id:
        return f"{base}cluster/{quote(notice.cluster_id, safe='')}"
    return base


def slack_message(notice: Notice, base_url: str) -> bytes:
    """A Slack incoming-webhook message: one line of text, and blocks with the details
    (instance, mode, state or kind, reason) and a link to the dashboard."""
    record = notice.record
    remediation = record.get("remediation") if notice.source == TRANSITION else None
    about = remediation if isinstance(remediation, dict) else record
    mode = _text(about.get("mode"))
    name = _text(about.get("instance_name"))
    reason = (_text(record.get("reason")) or "").strip()
    if len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 1] + "…"
    what = "remediation" if notice.source == TRANSITION else "policy event"
    where = notice.subject + (f" ({name})" if name and name != notice.instance_id else "")
    short_mode = mode.removeprefix("REMEDIATION_MODE_") if mode else None
    text = f"{notice.trigger}: {where}" + (f", {short_mode}" if short_mode else "")
    text += f": {reason}" if reason else ""
    link = dashboard_link(base_url, notice)
    fields = [
        f"*{what.capitalize()}:* {notice.trigger}",
        f"*Instance:* {where}" if notice.instance_id else f"*Cluster:* {where}",
    ]
    if short_mode:
        fields.append(f"*Mode:* {short_mode}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_escape(text)}*"}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": _escape(f)} for f in fields],
        },
    ]
    if reason:
        reason_block = {"type": "mrkdwn", "text": f"*Reason:* {_escape(reason)}"}
        blocks.append({"type": "section", "text": reason_block})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{link}|Open in the dashboard>"}],
        }
    )
    return orjson.dumps({"text": f"{text} ({link})", "blocks": blocks})


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def signature(secret: bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of the body, hex."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
