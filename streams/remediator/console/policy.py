"""``remediator policy check FILE``, ``policy explain FILE --alert …`` and ``policy replay``.

Offline: they read a policy file as a worker would (layered over the defaults), print what
is in force, and say what the policy decides for sample signals, so a change can be tried
before a worker loads it. Exit status: 0, or 2 when the file cannot be used (with the
worker's one-line reason). ``policy replay`` (``remediator/replay/``) replays past signals
under a candidate policy beside the running one.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

EXIT_BAD_FILE = 2
_WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def add_commands(commands: Any) -> None:
    policy = commands.add_parser(
        "policy",
        help="check a policy file, or explain its decision for one signal (offline)",
        description="Read a policy file as a worker would (over the defaults) and say what "
        "it decides. Exit status: 0, or 2 when the file cannot be used.",
    )
    actions = policy.add_subparsers(dest="policy_command", required=True)
    check = actions.add_parser(
        "check",
        help="print the effective policy and its decision for a sample of signals",
        description="Print the effective policy (the file over the defaults) and the "
        "decision for one sample signal per rule, a passing run and an unknown alert.",
    )
    check.add_argument("file", type=Path, help="the policy file (TOML)")
    check.add_argument("--output", choices=["text", "json"], default="text")
    explain = actions.add_parser(
        "explain",
        help="which rule and mode a policy gives one signal",
        description="Which rule and mode the policy gives one signal: an alert (with its "
        "annotations and severity) or an active test's result.",
    )
    explain.add_argument("file", type=Path, help="the policy file (TOML)")
    what = explain.add_mutually_exclusive_group(required=True)
    what.add_argument("--alert", help="a passive alert's name, e.g. DmesgXidError")
    what.add_argument("--test", help="an active test's name, e.g. DCGM_DIAG")
    explain.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an annotation of the alert (repeatable), e.g. xid=79",
    )
    explain.add_argument("--severity", default="CRITICAL", choices=["INFO", "WARNING", "CRITICAL"])
    explain.add_argument("--status", default="FIRING", choices=["FIRING", "RESOLVED"])
    explain.add_argument("--result", default="FAILED", choices=["PASSED", "FAILED", "SKIPPED"])
    from remediator.replay import command as replay_command

    replay_command.add_command(actions)
    policy.set_defaults(policy_handler=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from remediator.domain.policy import PolicyError, load_policy_in_force

    out = out or sys.stdout
    if args.policy_command == "replay":
        from remediator.replay import command as replay_command

        return replay_command.run(args, out)
    try:
        loaded = load_policy_in_force(args.file)
    except PolicyError as exc:
        sys.stderr.write(f"remediator: policy: {exc}\n")
        return EXIT_BAD_FILE
    if args.policy_command == "check":
        from remediator.domain.notify_policy import NotifyError, read_secrets

        try:
            read_secrets(loaded.policy.notify, args.file)  # read as a worker would; not shown
        except NotifyError as exc:
            sys.stderr.write(f"remediator: policy: {args.file}: {exc}\n")
            return EXIT_BAD_FILE
        return _check(loaded, args.output, out)
    try:
        signal = _signal(args)
    except ValueError as exc:
        sys.stderr.write(f"remediator: policy explain: {exc}\n")
        return EXIT_BAD_FILE
    out.write(_decision(signal, loaded.policy) + "\n")
    return 0


def _check(loaded: Any, output: str, out: TextIO) -> int:
    from remediator.domain.models import format_timestamp

    policy = loaded.policy
    now = datetime.now(UTC)
    samples = [(label, _decision(signal, policy)) for label, signal in _samples(policy)]
    if output == "json":
        document = {
            "source": loaded.source,
            "sha256": loaded.sha256,
            "policy": policy.model_dump(mode="json"),
            "samples": [{"signal": label, "decision": text} for label, text in samples],
            "freeze_windows": {
                entry.name: [
                    {"start": format_timestamp(start), "end": format_timestamp(end)}
                    for start, end in entry.windows(now, NEXT_WINDOWS)
                ]
                for entry in policy.freeze
            },
        }
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    lines = [
        *_summary(loaded),
        f"  rules, first match wins ({len(policy.rules)}):",
        *(_rule_line(rule) for rule in policy.rules),
        *(_cluster_line(cluster_id, c) for cluster_id, c in sorted(policy.clusters.items())),
        *_freeze_lines(policy, now),
        *_notify_lines(policy),
        "  sample decisions:",
        *(f"    {label:<44} -> {text}" for label, text in samples),
    ]
    out.write("\n".join(lines) + "\n")
    return 0


def _short(mode: Any) -> str:
    return str(mode.value).removeprefix("REMEDIATION_MODE_")


def _summary(loaded: Any) -> list[str]:
    """The settings of the policy as a whole, a line or two each."""
    policy = loaded.policy
    radius = policy.blast_radius
    unknown = f"open {_short(policy.fallback_mode)}" if policy.fallback == "open" else "record only"
    two = ", ".join(_short(m) for m in policy.two_person_modes) or "none"
    lines = [
        f"policy {loaded.source} (sha256 {loaded.sha256[:12]}), over the defaults",
        f"  cooldown {policy.cooldown_minutes:g} min, auto-resolve within "
        f"{policy.auto_resolve_within_minutes:g} min, escalation window "
        f"{policy.escalation_window_hours:g} h, verify within "
        f"{policy.verify_within_minutes:g} min (0: off), shadow "
        f"{'on' if policy.shadow else 'off'}",
        f"  blast radius: at most max({radius.min_allowed}, min({radius.max_open}, "
        f"{radius.max_percent:g}% of known)) open; budget {policy.rate_budget_per_hour}/h "
        f"per cluster (0: none); unknown failing signals: {unknown}",
        f"  two-person approval: {two}; manual creates "
        + ("need a second person too" if policy.two_person_manual else "are PENDING at once"),
    ]
    domains = radius.domains
    if domains.keys:
        mapping = (
            f"; mapping file {domains.file} ({len(loaded.domains)} instances)"
            if domains.file
            else ""
        )
        lines.append(
            f"  per failure domain ({', '.join(domains.keys)}): at most "
            f"max({domains.min_allowed}, min({domains.max_open}, {domains.max_percent:g}% of "
            f"the domain's known)) open{mapping}"
        )
    return lines


#: How many coming windows ``policy check`` lists per change freeze.
NEXT_WINDOWS = 3


def _freeze_lines(policy: Any, now: datetime) -> list[str]:
    """Each change freeze and its next windows (the one holding now first), in UTC."""
    if not policy.freeze:
        return ["  change freezes: none"]
    lines = [f"  change freezes ({len(policy.freeze)}), next windows from now, UTC:"]
    for entry in policy.freeze:
        where = ", ".join(entry.clusters)
        if entry.domains:
            where += f" in {', '.join(entry.domains)}"
        when = "once"
        if entry.cron:
            when = f"cron {entry.cron!r} for {entry.duration_hours:g} h in {entry.timezone}"
        running = "; approved ones still start" if entry.allow_running else ""
        lines.append(f"    {entry.name:<28} {where}: {entry.reason} ({when}{running})")
        windows = entry.windows(now, NEXT_WINDOWS)
        for start, end in windows:
            holding = "  <- holding now" if start <= now < end else ""
            lines.append(f"      {_utc(start)} -> {_utc(end)}{holding}")
        if not windows:
            lines.append("      (over: no window from now on)")
    return lines


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M %a")


def _rule_line(rule: Any) -> str:
    matches = ", ".join([*rule.alerts, *rule.tests]) or "-"
    if rule.annotations:
        matches += " with " + ", ".join(f"{k}={v}" for k, v in rule.annotations.items())
    does = "record only" if rule.action == "record" else (_short(rule.mode) if rule.mode else "?")
    extra = f", after {rule.debounce_count} signals" if rule.debounce_count > 1 else ""
    return f"    {rule.name:<28} {does:<16} {matches}{extra}"


def _cluster_line(cluster_id: str, cluster: Any) -> str:
    approve = ", ".join(cluster.auto_approve) or "none"
    line = f"  cluster {cluster_id}: auto-approve {approve}" + (
        ", shadow" if cluster.shadow else ""
    )
    if cluster.two_person_modes is not None:
        line += ", two-person: " + (
            ", ".join(_short(m) for m in cluster.two_person_modes) or "none"
        )
    return line


def _notify_lines(policy: Any) -> list[str]:
    """The notification targets: where (without the URL's path: it may be a secret),
    on what, and whether signed (never the secret)."""
    from remediator.domain.notify_policy import shown_url

    if not policy.notify:
        return ["  notify: no targets"]
    lines = [f"  notify ({len(policy.notify)} target(s)):"]
    for target in policy.notify:
        clusters = ", ".join(target.clusters) if target.clusters else "all clusters"
        signed = f"signed ({target.header}, secret from {target.secret_file})"
        lines.append(
            f"    {target.name:<28} {target.format:<12} {shown_url(target.url)} on "
            f"{', '.join(target.on)}; {clusters}; "
            f"{signed if target.secret_file else 'unsigned'}; up to "
            f"{target.max_attempts} attempts, backoff {target.backoff_initial_seconds:g}-"
            f"{target.backoff_max_seconds:g} s"
        )
    return lines


def _samples(policy: Any) -> list[tuple[str, Any]]:
    """One signal per rule (its first alert or test, with its annotations), then a passing
    run and an alert no rule names."""
    samples: list[tuple[str, Any]] = []
    for rule in policy.rules:
        if rule.alerts:
            notes = ", ".join(f"{k}={v}" for k, v in rule.annotations.items())
            label = f"alert {rule.alerts[0]} CRITICAL" + (f" ({notes})" if notes else "")
            samples.append((label, _alert(rule.alerts[0], dict(rule.annotations))))
        elif rule.tests:
            samples.append((f"test {rule.tests[0]} FAILED", _run(rule.tests[0], "FAILED")))
    samples.append(("test DCGM_DIAG PASSED", _run("DCGM_DIAG", "PASSED")))
    samples.append(("alert SomethingNoRuleNames CRITICAL", _alert("SomethingNoRuleNames", {})))
    return samples


def _decision(signal: Any, policy: Any) -> str:
    from remediator.domain.policy import Action, classify

    verdict = classify(signal, policy)
    if verdict.action is Action.OPEN and verdict.mode is not None:
        mode = verdict.mode.value.removeprefix("REMEDIATION_MODE_")
        return f"rule {verdict.rule}: open {mode} ({verdict.reason})"
    if verdict.action is Action.RECORD_ONLY:
        return f"rule {verdict.rule}: record only ({verdict.reason})"
    return f"healthy ({verdict.reason})"


def _signal(args: argparse.Namespace) -> Any:
    if args.test:
        if args.annotation:
            raise ValueError("--annotation is for alerts")
        return _run(args.test, args.result)
    annotations = {}
    for item in args.annotation:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--annotation {item!r}: expected KEY=VALUE")
        annotations[key] = value
    return _alert(args.alert, annotations, args.severity, args.status)


def _alert(
    name: str, annotations: dict[str, str], severity: str = "CRITICAL", status: str = "FIRING"
) -> Any:
    from remediator.domain.models import PassiveHealthCheckEvent

    return PassiveHealthCheckEvent.model_validate(
        {
            "event_id": "00000000-0000-4000-8000-000000000000",
            "cluster_id": "c",
            "instance_id": "i",
            "alert_name": name,
            "severity": severity,
            "status": status,
            "observed_at": _WHEN,
            "annotations": annotations,
        }
    )


def _run(test: str, result: str) -> Any:
    from remediator.domain.models import ActiveHealthCheckRun

    return ActiveHealthCheckRun.model_validate(
        {
            "run_id": "00000000-0000-4000-8000-000000000000",
            "cluster_id": "c",
            "instance_id": "i",
            "test": test,
            "result": result,
            "started_at": _WHEN,
            "completed_at": _WHEN,
        }
    )
