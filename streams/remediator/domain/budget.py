"""Keeping a remediation record under its size budget, without measuring it every time.

A remediation gathers signals and linked alerts while it is open, and every change
publishes the whole record; with every string clipped (``domain/bounds.py``) an item is a
few KiB at most, but a hundred of them are still more than Kafka takes. So a record over
:data:`~remediator.domain.bounds.MAX_REMEDIATION_BYTES` drops its oldest correlated
signals and linked alerts (never the first of each, the opening signal and alert, nor the
newest) down to :data:`~remediator.domain.bounds.TRIM_TO_BYTES`, and counts them in
``signals_dropped`` and ``linked_alerts_dropped`` (alerts go first: they are the bulk).

Signals are applied by the thousand per second, and a record is serialized whole only
when it may be near the budget: the instance's state keeps an upper bound of the open
record's size (``InstanceState.open_bytes``), grown by each change by what the change
added (the exact bytes of each appended signal or alert, of each text field it set, a
fixed allowance for timestamps and states). Only when that bound passes the budget is
the record measured, and trimmed if it really is over. The bound lives in the same value
as the record, so a replay after a crash decides exactly as the first run did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import orjson
from pydantic import BaseModel

from .bounds import MAX_REMEDIATION_BYTES, TRIM_TO_BYTES
from .models import Remediation, dump_json

M = TypeVar("M", bound=BaseModel)

#: What a change may add besides the items and text fields counted below: timestamps
#: (update, review, start, end, an alert's resolved_at), a longer state or mode name.
CHANGE_ALLOWANCE = 512
#: The text fields a change may set (their new value is counted whole).
_TEXT_FIELDS = (
    "instance_name",
    "reason",
    "active_health_check_run_id",
    "passive_health_check_event_id",
    "requested_by",
    "reviewed_by",
    "review_comment",
    "error_message",
    "rule",
)


def item_bytes(item: BaseModel) -> int:
    """The bytes one list item takes in the record (its JSON and a comma)."""
    return len(item.__pydantic_serializer__.to_json(item)) + 1


def measure(record: Remediation) -> int:
    return len(dump_json(record))


def grown(size: int | None, before: Remediation, after: Remediation) -> int | None:
    """An upper bound of ``after``'s size, given one (``size``) of ``before``'s; None
    when ``size`` is (a state written before sizes were kept: :func:`fit` measures)."""
    if size is None:
        return None
    size += CHANGE_ALLOWANCE
    size += _appended(before.signals, after.signals)
    size += _appended(before.linked_alerts, after.linked_alerts)
    if after.operations is not before.operations:
        size += sum(item_bytes(op) for op in after.operations)
    for name in _TEXT_FIELDS:
        value = getattr(after, name)
        if value is not None and value is not getattr(before, name):
            size += len(orjson.dumps(value))
    return size


def _appended(before: Sequence[BaseModel], after: Sequence[BaseModel]) -> int:
    # Items are only ever appended, or replaced in place (an alert resolved: the
    # allowance covers its resolved_at).
    if after is before:
        return 0
    return sum(item_bytes(item) for item in after[len(before) :])


def fit(record: Remediation, size: int | None) -> tuple[Remediation, int]:
    """``record`` within the budget, and an upper bound of its size to keep with it.

    ``size`` is such a bound already (see :func:`grown`), or None to measure."""
    if size is not None and size <= MAX_REMEDIATION_BYTES:
        return record, size
    exact = measure(record)
    if exact <= MAX_REMEDIATION_BYTES:
        return record, exact
    trimmed = trim(record, exact - TRIM_TO_BYTES)
    return trimmed, measure(trimmed)


def trim(record: Remediation, excess: int) -> Remediation:
    """``record`` without its oldest linked alerts, then if that is not enough its oldest
    signals (the first and the last of each list always kept), worth at least
    ``excess`` bytes or as many as there are; the counts dropped are added to it.

    Alerts go first: they hold the annotations, the bulk of a record, while the signal
    references are the short audit trail the policy reads (the opener, the alerts that
    failed it)."""
    alerts, dropped_alerts, freed = _drop_oldest(record.linked_alerts, excess)
    signals, dropped_signals, _ = _drop_oldest(record.signals, excess - freed)
    if not (dropped_alerts or dropped_signals):
        return record  # nothing left to drop: the sender's limit is the last resort
    return record.model_copy(
        update={
            "signals": signals,
            "linked_alerts": alerts,
            "signals_dropped": record.signals_dropped + dropped_signals,
            "linked_alerts_dropped": record.linked_alerts_dropped + dropped_alerts,
        }
    )


def _drop_oldest(items: list[M], excess: int) -> tuple[list[M], int, int]:
    """``items`` without the oldest after the first (in the order they were added) worth
    ``excess`` bytes, the newest kept; how many went and how many bytes that freed."""
    freed, end = 0, 1
    while end < len(items) - 1 and freed < excess:
        freed += item_bytes(items[end])
        end += 1
    if end == 1:
        return items, 0, 0
    return [items[0], *items[end:]], end - 1, freed
