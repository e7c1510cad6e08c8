"""``remediator remediations|explain|clusters``: the API from the command line.

Every leaf command takes ``--url`` (``$REMEDIATOR_URL``, default http://127.0.0.1:6066),
``--token`` (``$REMEDIATOR_TOKEN``), ``--cafile`` (``$REMEDIATOR_API_CAFILE``: the CA of
an https worker), ``--output table|json`` and ``--timeout``. Tables go to stdout; errors
are one line on stderr. Exit status: 0 done, 1 the API refused (its ``error.message`` is
printed), 2 usage error (an unusable CA file too), 3 no answer (unreachable, timed out, an
untrusted certificate, or not the remediator API).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remediator.console import table
from remediator.domain.models import RemediationMode, RemediationState, RemediationTrigger

if TYPE_CHECKING:  # httpx is imported when a command runs, not to build the parser
    from remediator.console.client import JSON, RemediatorClient

DEFAULT_URL = "http://127.0.0.1:6066"

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

EXIT_CODES_HELP = (
    "exit status: 0 done, 1 the API refused (its message on stderr), 2 usage error, "
    "3 the API could not be reached or did not answer"
)

Handler = Callable[["RemediatorClient", argparse.Namespace], int]


class Usage(Exception):
    """Arguments that cannot work together; reported like argparse's own errors."""


# --- enum values: the API's, or the same without their prefix, in any case --------------


def _normalizer(values: Iterable[str], prefix: str) -> Callable[[str], list[str]]:
    known = {v.upper(): v for v in values}

    def normalize(raw: str) -> list[str]:
        # Comma-joined lists are split here, so that each value is expanded on its own.
        out = []
        for item in raw.split(","):
            key = item.strip().upper()
            if key:
                # An unknown value goes as given: the API refuses it naming the allowed ones.
                out.append(known.get(key) or known.get(prefix + key) or item.strip())
        return out

    return normalize


_states = _normalizer((s.value for s in RemediationState), "")
_modes = _normalizer((m.value for m in RemediationMode), table.MODE_PREFIX)
_triggers = _normalizer((t.value for t in RemediationTrigger), table.TRIGGER_PREFIX)


def _one_mode(raw: str | None) -> str | None:
    if raw is None:
        return None
    values = _modes(raw)
    return values[0] if len(values) == 1 else raw


# --- the parsers ---------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("API connection and output")
    group.add_argument(
        "--url",
        default=None,
        help=f"the worker's address (default: $REMEDIATOR_URL, else {DEFAULT_URL})",
    )
    group.add_argument(
        "--token", default=None, help="the API bearer token (default: $REMEDIATOR_TOKEN)"
    )
    group.add_argument(
        "--cafile",
        default=None,
        metavar="PEM",
        help="for an https URL: the CA(s) that signed the worker's certificate "
        "(default: $REMEDIATOR_API_CAFILE, else the usual CAs)",
    )
    group.add_argument(
        "--output",
        "-o",
        choices=["table", "json"],
        default="table",
        help="a readable table (default), or the API's JSON answer",
    )
    group.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for an answer (%(default)s)"
    )
    return common


def _leaf(
    parent: Any, name: str, handler: Handler, common: argparse.ArgumentParser, help: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = parent.add_parser(
        name,
        parents=[common],
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=EXIT_CODES_HELP,
    )
    parser.set_defaults(console_handler=handler, console_parser=parser)
    return parser


def _target(parser: argparse.ArgumentParser, *, with_id: bool = True) -> None:
    if with_id:
        parser.add_argument("id", help="the remediation's id")
    parser.add_argument("--cluster", "-c", required=True, help="its cluster id")
    parser.add_argument("--instance", "-i", required=True, help="its instance id")


def add_commands(commands: Any) -> None:
    """Add ``remediations``, ``explain`` and ``clusters`` to the ``remediator`` parser's
    subcommands (an ``argparse`` subparsers action)."""
    common = _common()
    _remediation_commands(commands, common)
    explain = _leaf(
        commands,
        "explain",
        _explain,
        common,
        "explain an instance: its open remediation, the policy's recent decisions, cooldown",
    )
    _target(explain, with_id=False)
    _cluster_commands(commands, common)


def _remediation_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    remediations = commands.add_parser(
        "remediations",
        help="list, show, create, approve, reject and cancel remediations (REST API client)",
        description="Remediations through a worker's REST API.",
        epilog=EXIT_CODES_HELP,
    )
    actions = remediations.add_subparsers(dest="action", required=True, metavar="ACTION")

    _list_arguments(_leaf(actions, "list", _list, common, "list remediations, newest first"))
    get = _leaf(actions, "get", _get, common, "show one remediation with its signals and steps")
    _target(get)
    create = _leaf(
        actions, "create", _create, common, "create a manual remediation (PENDING at once)"
    )
    _target(create, with_id=False)
    create.add_argument("--mode", "-m", help="how to remediate (API default: VM_ONLY)")
    create.add_argument("--reason", "-r", help="why, for the record")
    create.add_argument(
        "--id", dest="remediation_id", help="your id for it: repeating the call creates nothing"
    )
    approve = _leaf(actions, "approve", _approve, common, "approve a PENDING_APPROVAL remediation")
    _target(approve)
    approve.add_argument("--mode", "-m", help="carry it out with this mode instead")
    approve.add_argument("--comment", help="the review comment")
    reject = _leaf(actions, "reject", _reject, common, "reject a PENDING_APPROVAL remediation")
    _target(reject)
    reject.add_argument("--comment", help="the review comment")
    cancel = _leaf(actions, "cancel", _cancel, common, "cancel a remediation that has not started")
    _target(cancel)


def _list_arguments(listing: argparse.ArgumentParser) -> None:
    listing.add_argument(
        "--cluster", "-c", help="only this cluster (default: every cluster of the fleet)"
    )
    listing.add_argument("--instance", "-i", help="only this instance (needs --cluster)")
    listing.add_argument(
        "--state",
        action="append",
        default=[],
        help="only this state (repeatable or comma-joined), e.g. PENDING_APPROVAL",
    )
    listing.add_argument(
        "--mode",
        action="append",
        default=[],
        help="only this mode (repeatable), e.g. REBOOT_VM or REMEDIATION_MODE_REBOOT_VM",
    )
    listing.add_argument(
        "--trigger", action="append", default=[], help="AUTOMATED or MANUAL (repeatable)"
    )
    listing.add_argument(
        "--order-by",
        help="create_time or update_time, then asc or desc (default: create_time desc)",
    )
    listing.add_argument("--page-size", type=int, help="records per page (API default 50, max 500)")
    listing.add_argument("--page-token", help="continue from this page token")
    listing.add_argument("--all-pages", action="store_true", help="follow every page to the end")


def _cluster_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    clusters = commands.add_parser(
        "clusters",
        help="list clusters; show, pause and resume a cluster's automated remediation",
        description="Clusters through a worker's REST API.",
        epilog=EXIT_CODES_HELP,
    )
    cluster_actions = clusters.add_subparsers(dest="action", required=True, metavar="ACTION")
    _leaf(cluster_actions, "list", _clusters, common, "every cluster the service knows")
    safety = _leaf(
        cluster_actions,
        "safety",
        _safety,
        common,
        "a cluster's safety state: pause, blast radius, budget, running and queued",
    )
    safety.add_argument("cluster", help="the cluster id")
    pause = _leaf(
        cluster_actions,
        "pause",
        _pause,
        common,
        "pause automated remediation in a cluster (manual ones still run)",
    )
    pause.add_argument("cluster", help="the cluster id")
    pause.add_argument("--reason", "-r", required=True, help="why, for the next operator")
    resume = _leaf(
        cluster_actions, "resume", _resume, common, "resume automated remediation in a cluster"
    )
    resume.add_argument("cluster", help="the cluster id")


# --- running a command ----------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` were parsed for; returns the exit status."""
    from remediator.console.client import ApiError, ClientError, RemediatorClient, Unreachable

    url = args.url or os.environ.get("REMEDIATOR_URL") or DEFAULT_URL
    token = args.token if args.token is not None else os.environ.get("REMEDIATOR_TOKEN")
    cafile = args.cafile or os.environ.get("REMEDIATOR_API_CAFILE") or None
    handler: Handler = args.console_handler
    try:
        client = RemediatorClient(
            url, token, timeout=args.timeout, cafile=Path(cafile) if cafile else None
        )
    except ClientError as exc:  # the CA file cannot be used
        _error(f"{'--cafile' if args.cafile else 'REMEDIATOR_API_CAFILE'}: {exc}")
        return EXIT_USAGE
    try:
        with client:
            return handler(client, args)
    except Usage as exc:
        args.console_parser.error(str(exc))  # exits with 2
        return EXIT_USAGE  # pragma: no cover
    except ApiError as exc:
        detail = f" ({exc.status} {exc.name})" if exc.name else f" ({exc.status})"
        hint = " (give --token or set REMEDIATOR_TOKEN)" if exc.status == 401 and not token else ""
        _error(f"{exc.message}{detail}{hint}")
        return EXIT_API
    except Unreachable as exc:
        _error(str(exc))
        return EXIT_UNREACHABLE


def _error(message: str) -> None:
    sys.stderr.write(f"remediator: {message}\n")


def _emit(args: argparse.Namespace, answer: JSON, as_table: Callable[[JSON], str]) -> int:
    import orjson

    if args.output == "json":
        sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(as_table(answer) + "\n")
    sys.stdout.flush()
    return EXIT_OK


def _one_row(record: JSON) -> str:
    return table.remediations([record])


def _list(client: RemediatorClient, args: argparse.Namespace) -> int:
    if args.instance and not args.cluster:
        raise Usage("--instance needs --cluster (instance ids are per cluster)")
    query: dict[str, Any] = {
        "cluster": args.cluster,
        "instance": args.instance,
        "states": [v for raw in args.state for v in _states(raw)],
        "modes": [v for raw in args.mode for v in _modes(raw)],
        "triggers": [v for raw in args.trigger for v in _triggers(raw)],
        "order_by": args.order_by,
        "page_size": args.page_size,
        "page_token": args.page_token,
    }
    if args.all_pages:
        records = [r for page in client.iter_pages(**query) for r in page["remediations"]]
        answer: JSON = {"remediations": records, "has_next": False, "next_page_token": ""}
    else:
        answer = client.list_remediations(**query)
    code = _emit(args, answer, lambda a: table.remediations(a.get("remediations") or []))
    if args.output == "table" and answer.get("has_next"):
        _error(f"more remediations: --all-pages, or --page-token {answer.get('next_page_token')}")
    return code


def _get(client: RemediatorClient, args: argparse.Namespace) -> int:
    return _emit(args, client.get(args.cluster, args.instance, args.id), table.remediation)


def _create(client: RemediatorClient, args: argparse.Namespace) -> int:
    answer = client.create(
        args.cluster,
        args.instance,
        mode=_one_mode(args.mode),
        reason=args.reason,
        remediation_id=args.remediation_id,
    )
    return _emit(args, answer, _one_row)


def _approve(client: RemediatorClient, args: argparse.Namespace) -> int:
    answer = client.approve(
        args.cluster, args.instance, args.id, mode=_one_mode(args.mode), comment=args.comment
    )
    return _emit(args, answer, _one_row)


def _reject(client: RemediatorClient, args: argparse.Namespace) -> int:
    answer = client.reject(args.cluster, args.instance, args.id, comment=args.comment)
    return _emit(args, answer, _one_row)


def _cancel(client: RemediatorClient, args: argparse.Namespace) -> int:
    return _emit(args, client.cancel(args.cluster, args.instance, args.id), _one_row)


def _explain(client: RemediatorClient, args: argparse.Namespace) -> int:
    return _emit(args, client.explain(args.cluster, args.instance), table.explanation)


def _clusters(client: RemediatorClient, args: argparse.Namespace) -> int:
    return _emit(args, client.clusters(), lambda a: table.clusters(a.get("clusters") or []))


def _safety(client: RemediatorClient, args: argparse.Namespace) -> int:
    return _emit(args, client.safety(args.cluster), table.safety)


def _pause(client: RemediatorClient, args: argparse.Namespace) -> int:
    return _emit(args, client.pause(args.cluster, args.reason), table.safety)


def _resume(client: RemediatorClient, args: argparse.Namespace) -> int:
    return _emit(args, client.resume(args.cluster), table.safety)
