"""`remediator policy replay`: the engine drives the pipeline's handler in memory, the
report compares two policies, the command reads a JSON Lines file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import orjson
import pytest

from remediator.cli import main
from remediator.domain.correlate import CorrelationConfig
from remediator.domain.models import ActiveHealthCheckRun, PassiveHealthCheckEvent
from remediator.domain.policy import DEFAULT_POLICY, Policy, parse_layered
from remediator.replay.command import UsageError, parse_time
from remediator.replay.engine import Run, Timed, in_order, replay
from remediator.replay.report import disagreements, summarize
from remediator.replay.sources import Window, read_file
from tests.builders import T0, fleet_history, run
from tests.harness import Harness

SMALL_RADIUS = "[blast_radius]\nmax_open = 3\n"


def timed_history(**options: object) -> list[Timed]:
    signals = []
    for offset, (at, kind, payload) in enumerate(fleet_history(**options)):  # type: ignore[arg-type]
        model = ActiveHealthCheckRun if kind == "run" else PassiveHealthCheckEvent
        signals.append(Timed(at, model.model_validate(payload), kind, 0, offset))
    return signals


def replayed(policy: Policy, signals: list[Timed]) -> Run:
    return replay(in_order(signals), CorrelationConfig(policy=policy))


@pytest.fixture(scope="module")
def history() -> list[Timed]:
    return timed_history()


def test_the_replay_decides_what_the_pipeline_decides(history: list[Timed]) -> None:
    # The same signals applied one per batch by the pipeline's handlers, with no
    # execution slots: the replay publishes the same transitions and policy events.
    harness = Harness(DEFAULT_POLICY, max_running=0)
    for timed in in_order(history):
        harness.signal(timed.signal, now=timed.at)
    replayed_run = replayed(DEFAULT_POLICY, history)
    assert replayed_run.transitions == harness.transitions()
    assert replayed_run.events == harness.events()
    assert any(t.from_state is None for t in replayed_run.transitions)


def test_the_same_policy_twice_disagrees_nowhere(history: list[Timed]) -> None:
    first, second = replayed(DEFAULT_POLICY, history), replayed(DEFAULT_POLICY, history)
    assert disagreements(first, second) == []
    assert summarize(first) == summarize(second)
    assert summarize(first).opened > 0


def test_a_smaller_blast_radius_opens_fewer_and_lists_the_instances(
    history: list[Timed],
) -> None:
    small = parse_layered(SMALL_RADIUS, "small.toml")
    baseline, candidate = replayed(DEFAULT_POLICY, history), replayed(small, history)
    ours, theirs = summarize(baseline), summarize(candidate)
    assert theirs.opened < ours.opened
    assert theirs.policy_events.get("BLAST_RADIUS_TRIPPED", 0) > 0
    assert theirs.refusals.get("blast_radius", 0) > ours.refusals.get("blast_radius", 0)
    found = disagreements(baseline, candidate)
    assert found
    fewer = {d.instance for d in found if d.candidate_opened < d.baseline_opened}
    opened_by_baseline = {key for key, _ in ours.opened_remediations}
    opened_by_candidate = {key for key, _ in theirs.opened_remediations}
    assert fewer == opened_by_baseline - opened_by_candidate
    for item in found:
        assert item.baseline != item.candidate  # both explanations, and they differ


def test_signals_are_replayed_in_event_time_order() -> None:
    late = Timed(T0 + timedelta(minutes=1), run(instance_id="a"), "t", 0, 0)
    early = Timed(T0, run(instance_id="b"), "t", 1, 5)
    other = Timed(T0, run(cluster_id="c2"), "t", 0, 9)
    assert in_order([late, early, other]) == [other, early, late]  # ties: partition
    assert in_order([late, early, other], cluster="c2") == [other]


def test_a_jsonl_file_with_a_bad_line_is_read_and_the_line_counted(tmp_path: Path) -> None:
    path = tmp_path / "signals.jsonl"
    lines = [orjson.dumps(p) for _, _, p in fleet_history(count=40)]
    lines.insert(3, b"{not json")
    lines.insert(7, b'{"run_id": "x"}')
    lines.insert(9, b"")
    path.write_bytes(b"\n".join(lines) + b"\n")
    loaded = read_file(path, Window())
    assert loaded.malformed == 2
    assert len(loaded.signals) == 40
    assert loaded.problems[0].startswith("line 4: not valid JSON")
    one = read_file(path, Window(cluster="cl-us-west-2a"))
    assert 0 < len(one.signals) < 40
    assert one.filtered == 40 - len(one.signals)
    later = read_file(path, Window(since=T0 + timedelta(seconds=40)))
    assert len(later.signals) == 20


def write_history(path: Path, count: int = 800) -> None:
    lines = [orjson.dumps(p) for _, _, p in fleet_history(count=count)]
    path.write_bytes(b"\n".join([*lines, b"garbage"]) + b"\n")


def test_the_command_prints_json_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REMEDIATOR_POLICY_FILE", raising=False)
    history_file, candidate = tmp_path / "history.jsonl", tmp_path / "small.toml"
    write_history(history_file)
    candidate.write_text(SMALL_RADIUS)
    argv = ["policy", "replay", "--policy", str(candidate), "--input", str(history_file)]
    assert main([*argv, "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"model", "input", "baseline", "candidate", "disagreements"}
    assert "nobody approves, nothing is executed" in document["model"]
    assert document["input"]["signals"] == 800
    assert document["input"]["malformed"] == 1
    assert document["baseline"]["policy"].startswith("built-in")
    assert document["candidate"]["policy"].startswith(str(candidate))
    for side in ("baseline", "candidate"):
        summary = document[side]
        for key in ("opened_by_rule", "opened_by_mode", "refusals", "policy_events"):
            assert isinstance(summary[key], dict)
        for key in ("opened", "held_for_human", "auto_resolved", "expired", "queued"):
            assert isinstance(summary[key], int)
        assert len(summary["opened_remediations"]) == summary["opened"]
    assert document["candidate"]["opened"] < document["baseline"]["opened"]
    shown = document["disagreements"]["shown"]
    assert 0 < len(shown) <= 20
    assert document["disagreements"]["total"] >= len(shown)
    assert set(shown[0]) == {
        "instance",
        "baseline",
        "candidate",
        "baseline_opened",
        "candidate_opened",
    }

    assert main(argv) == 0  # the table
    table = capsys.readouterr().out
    assert "remediations opened" in table
    assert "instance(s) treated differently" in table
    assert "1 malformed input(s) skipped" in table


def test_against_the_running_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    history_file, running = tmp_path / "history.jsonl", tmp_path / "running.toml"
    write_history(history_file, count=300)
    running.write_text(SMALL_RADIUS)
    monkeypatch.setenv("REMEDIATOR_POLICY_FILE", str(running))
    argv = ["policy", "replay", "--policy", str(running), "--input", str(history_file)]
    assert main([*argv, "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["baseline"]["policy"] == document["candidate"]["policy"]
    assert document["disagreements"] == {"total": 0, "shown": []}
    assert "no instance is treated differently" in _table(argv, capsys)


def _table(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    candidate = tmp_path / "bad.toml"
    candidate.write_text("no_such_key = 1\n")
    history_file = tmp_path / "h.jsonl"
    history_file.write_text("")
    assert main(["policy", "replay", "--policy", str(candidate), "--input", str(history_file)]) == 2
    assert "no_such_key" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text("")
    argv = ["policy", "replay", "--policy", str(good), "--input", str(history_file)]
    assert main([*argv, "--from", "yesterday"]) == 2
    assert "--from 'yesterday'" in capsys.readouterr().err
    missing = ["policy", "replay", "--policy", str(good), "--input", str(tmp_path / "none")]
    assert main(missing) == 2
    assert "none: no such file" in capsys.readouterr().err


def test_times_are_rfc3339_or_an_age() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert parse_time("6h", "--from", now) == now - timedelta(hours=6)
    assert parse_time("90s", "--from", now) == now - timedelta(seconds=90)
    assert parse_time("2026-12-01T00:00:00Z", "--from") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_time("2026-12-01T00:00:00", "--to") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_time(None, "--to") is None
    with pytest.raises(UsageError):
        parse_time("soon", "--to")


def test_the_progress_bar_draws_only_on_a_terminal() -> None:
    from remediator.replay.command import Bar

    quiet = StringIO()
    bar = Bar(10, "replaying", quiet)
    for _ in range(10):
        bar.step()
    bar.done()
    assert quiet.getvalue() == ""

    class Terminal(StringIO):
        def isatty(self) -> bool:
            return True

    shown = Terminal()
    bar = Bar(4, "reading", shown)
    bar.advance(2)
    bar.done()
    assert "reading [" in shown.getvalue()
    assert " 50% 2/4" in shown.getvalue()


def test_an_unreachable_broker_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from remediator.kafka.embedded import free_port

    monkeypatch.setenv("REMEDIATOR_BROKER_CONNECT_TIMEOUT", "0.5")
    candidate = tmp_path / "candidate.toml"
    candidate.write_text("")
    broker = f"kafka://127.0.0.1:{free_port()}"
    assert main(["policy", "replay", "--policy", str(candidate), "--broker", broker]) == 1
    assert "policy replay: broker:" in capsys.readouterr().err


def test_a_candidate_freeze_shows_what_it_would_have_held_back(history: list[Timed]) -> None:
    start, end = T0 + timedelta(minutes=5), T0 + timedelta(minutes=15)
    frozen = parse_layered(
        f'[[freeze]]\nname = "trial"\nstart = {start.isoformat()}\nend = {end.isoformat()}\n'
        'reason = "what if"\n',
        "freeze.toml",
    )
    baseline, candidate = replayed(DEFAULT_POLICY, history), replayed(frozen, history)
    theirs = summarize(candidate)
    assert theirs.refusals.get("freeze", 0) > 0
    assert summarize(baseline).refusals.get("freeze", 0) == 0
    assert theirs.policy_events.get("FREEZE_STARTED") == 2  # one per cluster
    assert theirs.policy_events.get("FREEZE_ENDED") == 2
    assert disagreements(baseline, candidate)
    # Nothing opened inside the window under the candidate (those waiting opened at its end).
    opened_at = [t.occurred_at for t in candidate.transitions if t.from_state is None]
    assert not [at for at in opened_at if start <= at < end]
