"""``remediator policy replay``: what a candidate policy would have done with past signals.

Reads the signals (the input topics by time, or ``--input FILE``), replays them under the
baseline policy (``--against``: the running one by default) and under the candidate, in
memory (``engine``), and prints the two side by side (``report``). Nothing is written
anywhere. Exit status: 0; 1 when the broker cannot be read; 2 for bad options, a policy
file that cannot be used or bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # imported when run: `remediator --help` need not load the pipeline
    from .report import Report, Summary
    from .sources import Loaded, Window

EXIT_BROKER = 1
EXIT_USAGE = 2

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class UsageError(Exception):
    """A bad option, policy file or setting (one line)."""


def add_command(actions: Any) -> None:
    replay_parser = actions.add_parser(
        "replay",
        help="replay past signals under a candidate policy and the running one, side by side",
        description="Replay the input topics (or a JSON Lines file of signals) under a "
        "candidate policy and a baseline policy, in memory, and compare what each opens, "
        "refuses and holds. Nothing is written anywhere. Approvals and execution are "
        "modelled as shadow mode models them: nobody approves, nothing is executed. "
        "Exit status: 0; 1 broker unreachable; 2 bad options, policy or settings.",
    )
    replay_parser.add_argument("--policy", type=Path, required=True, help="candidate (TOML)")
    replay_parser.add_argument(
        "--against",
        default="current",
        metavar="current|FILE",
        help="the baseline: current (REMEDIATOR_POLICY_FILE, else the default policy) or a "
        "policy file (default: %(default)s)",
    )
    replay_parser.add_argument(
        "--from", dest="since", metavar="T", help="RFC 3339 time, or an age such as 6h, 2d"
    )
    replay_parser.add_argument("--to", dest="until", metavar="T", help="as --from (default: now)")
    replay_parser.add_argument("--cluster", help="only this cluster's signals")
    replay_parser.add_argument(
        "--input", type=Path, help="a JSON Lines file of signals instead of the broker"
    )
    replay_parser.add_argument(
        "--broker", default=None, help="bootstrap servers (default: $REMEDIATOR_BROKER)"
    )
    replay_parser.add_argument("--output", choices=["table", "json"], default="table")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    import orjson

    from .sources import SourceError

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        report = build(args, err)
    except UsageError as exc:
        err.write(f"remediator: policy replay: {exc}\n")
        return EXIT_USAGE
    except SourceError as exc:
        err.write(f"remediator: policy replay: {exc}\n")
        return EXIT_BROKER
    if args.output == "json":
        out.write(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(render(report) + "\n")
    return 0


def build(args: argparse.Namespace, err: TextIO) -> Report:
    """Read, replay twice, compare."""
    from remediator.domain.correlate import CorrelationConfig
    from remediator.domain.policy import PolicyError, load_policy_in_force
    from remediator.settings import ConfigError, load_settings

    from .engine import in_order, replay
    from .report import Report, disagreements, summarize
    from .sources import Window

    window = Window(parse_time(args.since, "--from"), parse_time(args.until, "--to"), args.cluster)
    try:
        settings = load_settings()
        candidate = load_policy_in_force(args.policy)
        against = settings.policy_file if args.against == "current" else Path(args.against)
        baseline = load_policy_in_force(against)
    except (PolicyError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    loaded = _load(args, settings, window, err)
    signals = in_order(loaded.signals)
    bar = Bar(2 * len(signals), "replaying", err)
    runs = []
    for loaded_policy in (baseline, candidate):
        config = CorrelationConfig(
            dedup_ttl=timedelta(seconds=settings.dedup_ttl_seconds),
            dedup_max_ids=settings.dedup_max_ids,
            policy=loaded_policy.policy,
            domains=loaded_policy.domains,
        )
        runs.append(replay(signals, config, on_signal_done=bar.step))
    bar.done()
    return Report(
        source=str(args.input) if args.input is not None else "broker",
        window=_window_json(window),
        signals=len(signals),
        malformed=loaded.malformed,
        problems=loaded.problems,
        baseline_policy=f"{baseline.source} (sha256 {baseline.sha256[:12]})",
        candidate_policy=f"{candidate.source} (sha256 {candidate.sha256[:12]})",
        baseline=summarize(runs[0]),
        candidate=summarize(runs[1]),
        disagreements=disagreements(runs[0], runs[1]),
    )


def _load(args: argparse.Namespace, settings: Any, window: Window, err: TextIO) -> Loaded:
    from .sources import SourceError, count_lines, read_file, read_topics

    if args.input is not None:
        if not args.input.is_file():
            raise UsageError(f"--input {args.input}: no such file")
        bar = Bar(count_lines(args.input), "reading", err)
        loaded = read_file(args.input, window, bar.advance)
        bar.done()
        return loaded
    from remediator.kafka import topictools
    from remediator.kafka.admin import BrokerUnavailable, check_connection

    try:
        connection = topictools.connection(args.broker)
    except topictools.ToolError as exc:
        raise UsageError(str(exc)) from None
    topics = (settings.topic_active_runs, settings.topic_passive_events)
    bar = Bar(0, "reading", err)

    async def read() -> Loaded:
        try:
            await check_connection(connection, topictools.connect_timeout())
        except BrokerUnavailable as exc:
            raise SourceError(f"broker: {exc}") from None
        try:
            return await read_topics(connection, topics, window, bar.reached)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback
            raise SourceError(f"broker: {type(exc).__name__}: {exc}") from None

    loaded = asyncio.run(read())
    bar.done()
    return loaded


def parse_time(text: str | None, option: str, now: datetime | None = None) -> datetime | None:
    """RFC 3339 (no offset: UTC), or an age (``90s``, ``30m``, ``6h``, ``2d``) before now."""
    if text is None:
        return None
    ago = _AGO.match(text.strip())
    if ago is not None:
        amount, unit = ago.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: float(amount)})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected RFC 3339 or an age like 6h") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _window_json(window: Window) -> dict[str, str | None]:
    return {
        "from": window.since.isoformat() if window.since else None,
        "to": window.until.isoformat() if window.until else None,
        "cluster": window.cluster,
    }


class Bar:
    """A progress bar on ``stream``, only when it is a terminal; at most ten redraws a
    second."""

    def __init__(self, total: int, label: str, stream: TextIO) -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self.count = 0
        self.shown = 0.0
        self.live = stream.isatty()

    def step(self) -> None:
        self.advance(1)

    def advance(self, count: int) -> None:
        self.reached(self.count + count, self.total)

    def reached(self, count: int, total: int) -> None:
        self.count, self.total = count, total
        if not self.live or time.monotonic() - self.shown < 0.1:
            return
        self.shown = time.monotonic()
        share = count / total if total else 0.0
        filled = int(share * 30)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} {count}/{total}"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.live and self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def render(report: Report) -> str:
    """The report as text: the counts side by side, then the disagreeing instances."""
    from .report import MODEL, SHOWN

    window = report.window
    where = f"{window['from'] or 'the beginning'} to {window['to'] or 'the end'}"
    lines = [
        f"policy replay of {report.signals} signal(s) from {report.source}, {where}, "
        f"{'cluster ' + window['cluster'] if window['cluster'] else 'all clusters'}",
        f"  baseline:  {report.baseline_policy}",
        f"  candidate: {report.candidate_policy}",
        *textwrap.wrap(f"model: {MODEL}", 88, initial_indent="  ", subsequent_indent="    "),
    ]
    if report.malformed:
        lines.append(f"  {report.malformed} malformed input(s) skipped, e.g. {report.problems[0]}")
    lines += ["", *_table(_rows(report.baseline, report.candidate))]
    shown = report.disagreements[:SHOWN]
    lines += ["", _disagreement_title(len(report.disagreements), len(shown))]
    for item in shown:
        lines += [
            f"  {item.instance}: opened {item.baseline_opened} vs {item.candidate_opened}",
            f"    baseline:  {item.baseline}",
            f"    candidate: {item.candidate}",
        ]
    return "\n".join(lines)


def _disagreement_title(total: int, shown: int) -> str:
    if not total:
        return "no instance is treated differently"
    return f"{total} instance(s) treated differently" + (
        f" (the first {shown})" if shown < total else ""
    )


def _rows(base: Summary, cand: Summary) -> list[tuple[str, str, str]]:
    rows = [
        ("", "baseline", "candidate"),
        ("remediations opened", str(base.opened), str(cand.opened)),
    ]
    for title, ours, theirs in (
        ("  rule", base.opened_by_rule, cand.opened_by_rule),
        ("  mode", base.opened_by_mode, cand.opened_by_mode),
        ("refused", base.refusals, cand.refusals),
        ("policy events", base.policy_events, cand.policy_events),
    ):
        rows += [
            (f"{title} {k}", str(ours.get(k, 0)), str(theirs.get(k, 0)))
            for k in sorted(ours.keys() | theirs.keys())
        ]
    for label, name in (
        ("held for a human", "held_for_human"),
        ("auto-resolved", "auto_resolved"),
        ("expired (approval)", "expired"),
        ("queued", "queued"),
        ("shadowed", "shadowed"),
    ):
        rows.append((label, str(getattr(base, name)), str(getattr(cand, name))))
    return rows


def _table(rows: Sequence[tuple[str, str, str]]) -> list[str]:
    first = max(len(r[0]) for r in rows)
    second = max(len(r[1]) for r in rows)
    return [f"  {a:<{first}}  {b:>{second}}  {c:>9}" for a, b, c in rows]
