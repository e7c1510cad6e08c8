"""The replay's report: what each policy decided, side by side, and where they disagree.

Counted per run: remediations opened (by rule and by mode), refusals by reason (the
``BlockReason`` labels), policy events by kind (blast-radius and budget trips among
them), holds for a human, auto-resolved remediations, expired recommendations, queued
and shadowed proposals. An instance *disagrees* when its story differs between the two
runs: another outcome for one of its signals, another rule, another remediation, mode or
state; the first 20 are listed with both explanations (the first point where the two
stories part, then what each did there).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from remediator.domain.models import PolicyEventKind, RemediationState

from .engine import Run

#: Disagreeing instances listed in full.
SHOWN = 20

#: What the replay assumes: said in every report.
MODEL = (
    "approvals and execution are modelled as shadow mode models them: nobody approves, "
    "nothing is executed; auto-approved remediations become PENDING and stay PENDING, "
    "recommendations stay PENDING_APPROVAL until they expire (on event time), nothing is "
    "verified; signals are applied in event-time order per cluster"
)


@dataclass
class Summary:
    """One run's counts."""

    signals: int
    opened: int
    opened_by_rule: dict[str, int]
    opened_by_mode: dict[str, int]
    refusals: dict[str, int]
    policy_events: dict[str, int]
    held_for_human: int
    auto_resolved: int
    expired: int
    queued: int
    shadowed: int
    #: (instance key, remediation id) of every remediation opened, in order.
    opened_remediations: list[tuple[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        document = dict(self.__dict__)
        document["opened_remediations"] = [
            {"instance": key, "remediation_id": rid} for key, rid in self.opened_remediations
        ]
        return document


def summarize(run: Run) -> Summary:
    opened = [t for t in run.transitions if t.from_state is None]
    events = Counter(e.kind.value for e in run.events)
    return Summary(
        signals=run.signals,
        opened=len(opened),
        opened_by_rule=_sorted(Counter(t.remediation.rule or "(manual)" for t in opened)),
        opened_by_mode=_sorted(Counter(_short(t.remediation.mode.value) for t in opened)),
        refusals=_sorted(run.refusals),
        policy_events=_sorted(events),
        held_for_human=events[PolicyEventKind.HELD_FOR_HUMAN.value],
        auto_resolved=sum(
            1 for t in run.transitions if t.to_state is RemediationState.AUTO_RESOLVED
        ),
        expired=events[PolicyEventKind.APPROVAL_EXPIRED.value],
        queued=run.outcomes.get("QUEUED", 0),
        shadowed=run.outcomes.get("SHADOWED", 0),
        opened_remediations=[
            (f"{t.remediation.cluster_id}/{t.remediation.instance_id}", t.remediation_id)
            for t in opened
        ],
    )


@dataclass(frozen=True)
class Disagreement:
    """One instance the two policies treat differently, with both explanations."""

    instance: str
    baseline: str
    candidate: str
    baseline_opened: int
    candidate_opened: int

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def disagreements(baseline: Run, candidate: Run) -> list[Disagreement]:
    """Every instance whose story differs, in instance order."""
    found = []
    for key in sorted(baseline.stories.keys() | candidate.stories.keys()):
        ours = baseline.stories.get(key, [])
        theirs = candidate.stories.get(key, [])
        if [fact for fact, _ in ours] == [fact for fact, _ in theirs]:
            continue
        at = _parting(ours, theirs)
        found.append(
            Disagreement(
                instance=key,
                baseline=ours[at][1] if at < len(ours) else "(nothing more)",
                candidate=theirs[at][1] if at < len(theirs) else "(nothing more)",
                baseline_opened=_opened(ours),
                candidate_opened=_opened(theirs),
            )
        )
    return found


def _parting(ours: list[tuple[tuple[str, ...], str]], theirs: list[Any]) -> int:
    for index, (mine, other) in enumerate(zip(ours, theirs, strict=False)):
        if mine[0] != other[0]:
            return index
    return min(len(ours), len(theirs))


def _opened(story: list[tuple[tuple[str, ...], str]]) -> int:
    return sum(1 for fact, _ in story if fact[0] == "transition" and fact[2] == "-")


@dataclass
class Report:
    """Everything the command prints."""

    source: str
    window: dict[str, str | None]
    signals: int
    malformed: int
    problems: list[str]
    baseline_policy: str
    candidate_policy: str
    baseline: Summary
    candidate: Summary
    disagreements: list[Disagreement]

    def as_json(self) -> dict[str, Any]:
        return {
            "model": MODEL,
            "input": {
                "source": self.source,
                "window": self.window,
                "signals": self.signals,
                "malformed": self.malformed,
                "problems": self.problems,
            },
            "baseline": {"policy": self.baseline_policy, **self.baseline.as_json()},
            "candidate": {"policy": self.candidate_policy, **self.candidate.as_json()},
            "disagreements": {
                "total": len(self.disagreements),
                "shown": [d.as_json() for d in self.disagreements[:SHOWN]],
            },
        }


def _sorted(counts: Any) -> dict[str, int]:
    return {key: counts[key] for key in sorted(counts)}


def _short(mode: str) -> str:
    return mode.removeprefix("REMEDIATION_MODE_")
