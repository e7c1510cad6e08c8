"""Change freezes: windows in which automated remediation holds still.

A policy's ``[[freeze]]`` entries each name clusters (or ``*``), optionally failure
domains (``rack=r12``), and a window: absolute (``start``/``end``, RFC 3339) or recurring
(``cron`` in a ``timezone``, plus ``duration_hours``). While one holds for an instance:

- no automated remediation opens there: the proposal waits in the cluster's admission
  queue with reason ``freeze`` (``safety.admit``) and opens once the freeze ends, within
  the blast radius and budget like any queued one;
- an approved remediation does not start (``pipeline/context.py``), unless the entry says
  ``allow_running = true``; one already being carried out finishes;
- a remediation created by hand needs an admin, with a reason (the API's role and the
  state owner check it): an operator can still act, but not casually.

Like every other rule it is decided on the cluster's event time (the newest signal's), so
a replay decides the same: a freeze starts with the first input at or after its start and
ends with the first at or after its end. ``FREEZE_STARTED`` / ``FREEZE_ENDED`` policy events
say so once per window, with ids derived from the window (:func:`reconcile`).

A :class:`Calendar` answers "which freezes hold at t" in amortized O(1): each entry
remembers the span its last answer holds for, so croniter (about 0.3 ms a call) runs once
per window boundary, not once per signal.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from .models import PolicyEvent, PolicyEventKind, format_timestamp

#: Overlapping recurrences (a duration longer than the cron's interval) are joined into one
#: window; beyond this many, the window is cut (a mistake, e.g. "* * * * *" for 48 hours).
_MAX_JOINED = 1000

FreezeName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,100}$")]
DomainName = Annotated[str, Field(pattern=r"^[^=\s]{1,100}=[^\s]{1,200}$")]


class Freeze(BaseModel):
    """One ``[[freeze]]`` entry of the policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: FreezeName = Field(description="Names the freeze in events, metrics and views.")
    clusters: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description='The clusters it holds; "*" for every cluster.',
    )
    domains: list[DomainName] = Field(
        default_factory=list,
        description='Only instances in one of these failure domains (e.g. "rack=r12", as '
        "blast_radius.domains names them); empty: the whole cluster.",
    )
    start: AwareDatetime | None = Field(
        default=None, description="An absolute window's start (RFC 3339, with its offset)."
    )
    end: AwareDatetime | None = Field(default=None, description="... and its end (exclusive).")
    cron: str | None = Field(
        default=None,
        description="A recurring window's starts, a 5-field cron expression (e.g. \"0 18 * * "
        'FRI"), read in timezone.',
    )
    duration_hours: float | None = Field(
        default=None, gt=0, le=24 * 366, description="How long each recurring window lasts."
    )
    timezone: str = Field(
        default="UTC", description='The cron\'s time zone (IANA name, e.g. "Europe/Berlin").'
    )
    reason: str = Field(min_length=1, max_length=500, description="Shown wherever it holds.")
    allow_running: bool = Field(
        default=False,
        description="Approved remediations still start during the freeze (only new "
        "automated ones wait); false: they wait too.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name)") from None
        return value

    @model_validator(mode="after")
    def _one_kind_of_window(self) -> Freeze:
        absolute = self.start is not None or self.end is not None
        recurring = self.cron is not None or self.duration_hours is not None
        if absolute == recurring:
            raise ValueError("a freeze has either start and end, or cron and duration_hours")
        if absolute and (self.start is None or self.end is None or self.end <= self.start):
            raise ValueError("a freeze's start and end are both needed, start before end")
        if recurring and (self.cron is None or self.duration_hours is None):
            raise ValueError("a recurring freeze needs both cron and duration_hours")
        if self.cron is not None and (
            len(self.cron.split()) != 5 or not croniter.is_valid(self.cron)
        ):
            raise ValueError(f"cron {self.cron!r} is not a 5-field cron expression")
        return self

    def holds_in(self, cluster_id: str) -> bool:
        return "*" in self.clusters or cluster_id in self.clusters

    def covers(self, domains: Sequence[str] | None) -> bool:
        """Whether it holds for an instance in ``domains`` (None: the whole cluster asks,
        so only an entry without domains covers it)."""
        if not self.domains:
            return True
        return domains is not None and any(d in self.domains for d in domains)

    def window_at(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The window holding at ``at`` (joined with overlapping ones), or None."""
        if self.start is not None and self.end is not None:
            return (self.start, self.end) if self.start <= at < self.end else None
        earlier = self._starts(at + timedelta(microseconds=1), backwards=True)
        begun = next(earlier)
        if at >= begun + self._duration:
            return None
        for _ in range(_MAX_JOINED):  # an earlier recurrence still running joins it
            before = next(earlier)
            if before + self._duration < begun:
                break
            begun = before
        return begun, self._joined_end(begun)

    def next_window(self, after: datetime) -> tuple[datetime, datetime] | None:
        """The first window starting after ``after``; None: no more."""
        if self.start is not None and self.end is not None:
            return (self.start, self.end) if self.start > after else None
        begun = next(self._starts(after))
        return begun, self._joined_end(begun)

    def windows(self, after: datetime, count: int) -> list[tuple[datetime, datetime]]:
        """The window holding at ``after`` if any, then the next ones: at most ``count``."""
        found: list[tuple[datetime, datetime]] = []
        window = self.window_at(after)
        cursor = after
        while len(found) < count:
            if window is None:
                window = self.next_window(cursor)
                if window is None:
                    break
            found.append(window)
            cursor = window[1] - timedelta(microseconds=1)
            window = None
        return found

    @property
    def _duration(self) -> timedelta:
        return timedelta(hours=self.duration_hours or 0)

    def _starts(self, base: datetime, *, backwards: bool = False) -> Iterator[datetime]:
        """The cron's fire times before ``base`` (newest first) or after it, in UTC.

        croniter runs on naive wall-clock times and zoneinfo places them: croniter's own
        time-zone arithmetic is an hour off after a daylight-saving change (5.0.1)."""
        zone = ZoneInfo(self.timezone)
        schedule = croniter(self.cron, base.astimezone(zone).replace(tzinfo=None))
        step = schedule.get_prev if backwards else schedule.get_next
        while True:
            yield step(datetime).replace(tzinfo=zone).astimezone(UTC)

    def _joined_end(self, begun: datetime) -> datetime:
        end = begun + self._duration
        following = self._starts(begun)
        for _ in range(_MAX_JOINED):
            nxt = next(following)
            if nxt >= end:
                break
            end = nxt + self._duration
        return end


@dataclass(frozen=True, slots=True)
class Holding:
    """A freeze holding at a moment: the entry and its window."""

    freeze: Freeze
    start: datetime
    end: datetime

    def describe(self) -> str:
        where = f" in {', '.join(self.freeze.domains)}" if self.freeze.domains else ""
        return (
            f"change freeze {self.freeze.name}{where} until {format_timestamp(self.end)}: "
            f"{self.freeze.reason}"
        )


@dataclass
class _Memo:
    """An entry's last answer and the span [since, until) it holds for."""

    since: datetime
    until: datetime
    holding: Holding | None


@dataclass
class Calendar:
    """The policy's freezes, asked at event times (see the module docstring)."""

    entries: tuple[Freeze, ...]
    _memo: dict[int, _Memo] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def upcoming(self, cluster_id: str, after: datetime) -> list[Holding]:
        """The next window of each entry holding in the cluster, soonest first."""
        found = []
        for entry in self.entries:
            window = entry.next_window(after) if entry.holds_in(cluster_id) else None
            if window is not None:
                found.append(Holding(entry, *window))
        return sorted(found, key=lambda h: (h.start, h.freeze.name))

    def holding(self, cluster_id: str, at: datetime) -> list[Holding]:
        """Every freeze holding in the cluster at ``at``, whatever its domains."""
        return [
            found
            for index, entry in enumerate(self.entries)
            if entry.holds_in(cluster_id) and (found := self._at(index, entry, at)) is not None
        ]

    def first(
        self,
        cluster_id: str,
        at: datetime,
        domains: Sequence[str] | None,
        *,
        starting: bool = False,
    ) -> Holding | None:
        """The first freeze holding for an instance in ``domains`` (None: the whole
        cluster) at ``at``; ``starting``: only one that holds approved remediations back."""
        if not self.entries:
            return None
        for found in self.holding(cluster_id, at):
            if found.freeze.covers(domains) and not (starting and found.freeze.allow_running):
                return found
        return None

    def _at(self, index: int, entry: Freeze, at: datetime) -> Holding | None:
        memo = self._memo.get(index)
        if memo is not None and memo.since <= at < memo.until:
            return memo.holding
        window = entry.window_at(at)
        if window is not None:
            memo = _Memo(window[0], window[1], Holding(entry, *window))
        else:
            upcoming = entry.next_window(at)
            until = upcoming[0] if upcoming is not None else datetime.max.replace(tzinfo=UTC)
            memo = _Memo(at, until, None)
        self._memo[index] = memo
        return memo.holding


def reconcile(
    cluster_id: str, noted: dict[str, datetime], holding: Sequence[Holding], now: datetime
) -> tuple[dict[str, datetime], tuple[PolicyEvent, ...]]:
    """Compare the freezes the cluster's record noted as holding (name -> window start)
    with those holding now: a FREEZE_STARTED event for each new window, a FREEZE_ENDED
    for each gone. Ids come from the window, so a replay publishes the same ones."""
    current = {h.freeze.name: h for h in holding}
    events: list[PolicyEvent] = []
    for name, begun in sorted(noted.items()):
        if name not in current or current[name].start != begun:
            reason = f"change freeze {name} ended (window from {format_timestamp(begun)})"
            kind = PolicyEventKind.FREEZE_ENDED
            events.append(_event(kind, cluster_id, name, begun, reason, now))
    for name, found in sorted(current.items()):
        if noted.get(name) != found.start:
            kind = PolicyEventKind.FREEZE_STARTED
            events.append(_event(kind, cluster_id, name, found.start, found.describe(), now))
    return {name: h.start for name, h in current.items()}, tuple(events)


def _event(
    kind: PolicyEventKind, cluster_id: str, name: str, begun: datetime, reason: str, now: datetime
) -> PolicyEvent:
    return PolicyEvent.of(
        kind,
        cluster_id,
        None,
        scope="-",
        cause=f"freeze/{name}/{format_timestamp(begun)}",
        reason=reason,
        at=now,
        freeze=name,
    )
