"""``remediator``: the command line.

``remediator worker`` runs the service. With ``REMEDIATOR_BROKER`` unset it starts an
embedded Tansu broker on loopback first, and stops it after the worker has shut down.
Configuration errors print one line naming the setting and exit with status 2.

The rest: ``publish`` and ``tail`` (kafka/topictools.py), ``control-plane``
(simulation/controlplane.py), ``simulate`` (simulation/fleet/), and the REST API's client,
``remediations``, ``explain`` and ``clusters`` (console/).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:  # imported where needed: the client commands start faster without it
    from .settings import Settings

EXIT_CONFIG = 2
EXIT_START = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "control-plane":  # its options are the simulator's, parsed there
        from .simulation import controlplane

        return controlplane.main(extra, prog=f"{parser.prog} control-plane")
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return _RUNNERS[args.command](args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediator",
        description="Links GPU-cluster health checks to node remediations.",
    )
    parser.add_argument("--version", action="version", version=f"remediator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _worker_command(commands)
    _topic_commands(commands)
    # Its options are the simulator's own, parsed there: importing it (aiohttp) here
    # would slow every other command down by a third of a second.
    commands.add_parser(
        "control-plane",
        help="run the simulated compute control plane on its own (for demos and tests)",
        add_help=False,
    )
    simulate = commands.add_parser(
        "simulate",
        help="feed a broker the health signals of a simulated fleet (for demos and tests)",
        description="Produce realistic health signals for N clusters x M instances: mostly "
        "passing test runs, some failures, alerts that resolve or flap, bursts. Exit status: "
        "0 done or stopped, 1 broker unreachable, 2 bad options.",
    )
    from .simulation.fleet import options as fleet_options

    fleet_options.add_arguments(simulate)
    from .console import commands as console
    from .console import policy as policy_commands

    console.add_commands(commands)
    policy_commands.add_commands(commands)
    return parser


def _worker_command(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run a worker (configured by REMEDIATOR_* environment variables)",
        description="Run a worker. Settings come from REMEDIATOR_* environment variables; "
        "see the documentation's Configuration page (make docs-serve).",
    )
    worker.add_argument(
        "--simulate",
        action="store_true",
        help="also feed it a simulated fleet (`remediator simulate` as a child process, "
        "for demos: `make run`)",
    )
    worker.add_argument(
        "--simulate-args",
        default="",
        metavar="ARGS",
        help='options for that simulator, e.g. "--clusters 5 --rate 10"',
    )


def _topic_commands(commands: Any) -> None:
    publish = commands.add_parser(
        "publish",
        help="publish JSON documents (one object, or JSON Lines) to a topic",
    )
    publish.add_argument("topic")
    publish.add_argument("file", nargs="?", default="-", help="input file, - for stdin")
    publish.add_argument("--broker", default=None, help=_BROKER_HELP)
    publish.add_argument(
        "--raw",
        action="store_true",
        help="send the whole input as one message, byte for byte (not parsed as JSON)",
    )
    keys = publish.add_mutually_exclusive_group()
    keys.add_argument("--key", help="the key of every message")
    keys.add_argument(
        "--key-field",
        default="instance_id",
        help="take each key from this field (default: %(default)s)",
    )
    tail = commands.add_parser("tail", help="print the messages of a topic, one JSON per line")
    tail.add_argument("topic")
    tail.add_argument("--broker", default=None, help=_BROKER_HELP)
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    tail.add_argument("--max", type=int, default=None, help="stop after this many messages")
    tail.add_argument(
        "--idle-timeout", type=float, default=None, help="stop after this many quiet seconds"
    )


def _run_worker_command(args: argparse.Namespace) -> int:
    return run_worker(simulate=args.simulate, simulate_args=args.simulate_args)


def _run_simulate(args: argparse.Namespace) -> int:
    from .simulation.fleet import runner as fleet_simulator

    return fleet_simulator.run(args)


def _run_console(args: argparse.Namespace) -> int:
    from .console import commands as console

    return _quiet_on_closed_pipe(lambda: console.run(args))


def _run_policy(args: argparse.Namespace) -> int:
    from .console import policy as policy_commands

    return int(policy_commands.run(args))


_BROKER_HELP = "bootstrap servers (default: $REMEDIATOR_BROKER, else kafka://127.0.0.1:9092)"


def _run_topic_tool(args: argparse.Namespace) -> int:
    from .kafka import topictools

    try:
        broker = topictools.connection(args.broker)
        if args.command == "publish":
            if args.raw:
                documents = [topictools.read_raw(args.file)]
            else:
                documents = topictools.read_input(args.file)
            key_field = None if args.key is not None else args.key_field
            sent = asyncio.run(
                topictools.publish(broker, args.topic, documents, args.key, key_field)
            )
            print(f"published {sent} message(s) to {args.topic}", file=sys.stderr)
            return 0
        asyncio.run(
            topictools.tail(
                broker,
                args.topic,
                from_beginning=args.from_beginning,
                max_messages=args.max,
                idle_timeout=args.idle_timeout,
                out=sys.stdout,
            )
        )
        return 0
    except topictools.ToolError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `remediator tail … | head`: the reader has had enough
        return _closed_pipe()
    except Exception as exc:  # noqa: BLE001 - a tool prints one line, not a traceback
        return _fail(f"{args.command}: {type(exc).__name__}: {exc}", EXIT_START)


def _quiet_on_closed_pipe(command: Callable[[], int]) -> int:
    try:
        return command()
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    # Python flushes stdout once more at exit, which would fail again and print a
    # warning: point it at /dev/null first. A reader that stops reading is no error.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"remediator: {message}", file=sys.stderr)
    return code


def run_worker(*, simulate: bool = False, simulate_args: str = "") -> int:
    # Imports here keep `remediator --help` fast and free of Faust's import-time noise.
    from .kafka.embedded import EmbeddedBroker, EmbeddedBrokerError, port_in_use
    from .settings import ConfigError, load_settings, unknown_variables

    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    simulator_argv: list[str] | None = None
    if simulate:
        from .simulation.fleet import options as fleet_options

        try:
            simulator_argv = fleet_options.check_extra(simulate_args)
        except ValueError as exc:
            return _fail(str(exc), EXIT_CONFIG)
    for name in unknown_variables():
        print(f"remediator: warning: {name} is not a known setting (ignored)", file=sys.stderr)
    if port_in_use(settings.web_host, settings.web_port):
        return _fail(
            f"REMEDIATOR_WEB_PORT: {settings.web_host}:{settings.web_port} is already in use",
            EXIT_CONFIG,
        )
    if (
        settings.control_plane_url is None
        and settings.simulator_port
        and port_in_use("127.0.0.1", settings.simulator_port)
    ):
        return _fail(
            f"REMEDIATOR_SIMULATOR_PORT: 127.0.0.1:{settings.simulator_port} is already in use",
            EXIT_CONFIG,
        )

    try:
        (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(
            f"REMEDIATOR_DATA_DIR: cannot create {settings.data_dir} ({exc.strerror})", EXIT_CONFIG
        )

    broker: EmbeddedBroker | None = None
    if settings.broker is None:
        broker = EmbeddedBroker(
            port=settings.embedded_broker_port, log_dir=settings.data_dir / "embedded-broker"
        )
        try:
            broker.start()
        except EmbeddedBrokerError as exc:
            return _fail(str(exc), EXIT_START)
        settings = settings.model_copy(update={"broker": broker.url})
    try:
        return _run_faust_worker(settings, embedded=broker is not None, simulate=simulator_argv)
    finally:
        if broker is not None:
            broker.stop()


def _run_faust_worker(settings: Settings, *, embedded: bool, simulate: list[str] | None) -> int:
    from . import logs
    from .app import create_app
    from .pipeline import rocks

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    failed = loop.run_until_complete(_prepare_broker(settings))
    if failed is not None:
        return _fail(failed, EXIT_START)
    # Our own handler and formats (see logs.py); Faust's would replace them.
    logs.configure(settings.log_level, settings.log_format)
    _print_banner(settings, embedded=embedded)
    datadir, _held = rocks.claim_datadir(settings.data_dir, settings.app_id)
    if datadir != settings.data_dir / settings.app_id:
        logging.getLogger("remediator").info(
            "another worker of %s uses %s: local tables in %s",
            settings.app_id,
            settings.data_dir / settings.app_id,
            datadir,
        )
    app = create_app(settings, datadir=datadir)
    # Local RocksDB files of changelogs the broker no longer has (the embedded broker's
    # topics live in memory only): removed before Faust recovers from them.
    loop.run_until_complete(
        rocks.discard_stale(app, settings.connection, settings.broker_connect_timeout)
    )
    worker = _worker_class()(
        app, loop=loop, loglevel=settings.log_level, quiet=True, override_logging=False
    )
    worker.spinner = None  # a terminal spinner; with our logging it only writes escapes
    fleet = _start_fleet_simulator(settings, simulate) if simulate is not None else None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 1
    finally:
        if fleet is not None:
            from .simulation.fleet import runner

            runner.stop_child(fleet)
    return 0  # pragma: no cover - execute_from_commandline always exits


async def _prepare_broker(settings: Settings) -> str | None:
    """Reach the broker and create the topics, before Faust (which would retry a refused
    credential, or wait for a missing topic, for ever). None, or the one line to print."""
    from .app import external_topic_names, internal_topics
    from .kafka.admin import (
        BrokerUnavailable,
        TopicSpec,
        check_connection,
        ensure_topics,
        missing_topics,
    )

    external = [TopicSpec(n, settings.partitions) for n in external_topic_names(settings)]
    try:
        await check_connection(settings.connection, settings.broker_connect_timeout)
        await ensure_topics(
            settings.connection,
            [*(external if settings.create_topics else []), *internal_topics(settings)],
            replication_factor=settings.replication_factor,
            timeout=settings.broker_connect_timeout,
        )
        if settings.create_topics:
            return None
        # A broker that auto-creates topics would make them with its own partition count.
        missing = await missing_topics(settings.connection, external_topic_names(settings))
    except BrokerUnavailable as exc:
        cause = str(exc)
        return cause if " topic " in cause else f"REMEDIATOR_BROKER: {cause}"
    if missing:
        return (
            f"topic(s) {', '.join(missing)} do not exist and REMEDIATOR_CREATE_TOPICS "
            "is false: create them, or let the worker (true)"
        )
    return None


def _worker_class() -> type[Any]:
    import faust

    class Worker(faust.Worker):
        async def _sentinel_task(self) -> None:
            # mode sleeps a whole second here, after every service has stopped, before it
            # closes the loop: a second off every stop and every rolling restart.
            await asyncio.sleep(0.05)

    return Worker


def _start_fleet_simulator(settings: Settings, extra: list[str]) -> subprocess.Popen[bytes]:
    """``worker --simulate``: a fleet simulator feeding this worker, sending once it is ready."""
    from .simulation.fleet import options, runner

    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::", "") else settings.web_host  # noqa: S104
    health = f"{settings.web_scheme}://{host}:{settings.web_port}/healthz"
    argv = options.child_argv(
        settings.broker or "",
        health,
        extra,
        json_logs=settings.log_format == "json",
        # Its own worker, whose certificate need not name the loopback address nor be
        # signed by a CA the child knows; the wait sends nothing secret.
        verify_health=settings.web_tls_certfile is None,
    )
    return runner.start_child(argv)


def _principals(settings: Settings) -> str:
    """``alice (admin), am (webhook)``: who may call the API, never their tokens."""
    callers = sorted({(c.principal, c.role.value) for c in settings.tokens.values()})
    if not callers:
        return "none (REMEDIATOR_API_TOKENS is empty: every API call is 401)"
    return ", ".join(f"{principal} ({role})" for principal, role in callers)


def _print_banner(settings: Settings, *, embedded: bool) -> None:
    where = "embedded Tansu broker (memory only)" if embedded else "broker"
    policy = settings.policy_in_force
    lines = [
        f"remediator {__version__} worker, app id {settings.app_id!r}",
        f"  {where}: {settings.broker}"
        + ("" if embedded else f" ({settings.broker_security.describe()})"),
        f"  REST API: {settings.web_scheme}://{settings.web_host}:{settings.web_port}"
        "/v1/compute (OpenAPI at /openapi.json, health at /healthz, metrics at /metrics)"
        + ("" if settings.web_tls_certfile is None else f"; TLS: {settings.web_tls_certfile}"),
        f"  API principals: {_principals(settings)}",
        "  control plane: "
        + (
            _control_plane(settings)
            or "simulated, http://127.0.0.1:"
            + (str(settings.simulator_port) if settings.simulator_port else "<free port, logged>")
            + " (bearer token required on /v1; switches at /_sim/config)"
        ),
        f"  policy: {policy.source} (sha256 {policy.sha256[:12]}, GET /v1/compute/policy shows it)",
        f"  at most {settings.max_running_per_cluster} remediation(s) RUNNING per cluster",
        f"  feed health checks to: {settings.topic_active_runs}, {settings.topic_passive_events}",
        f"  transitions on: {settings.topic_transitions}; "
        f"dead letters on: {settings.topic_dead_letter}",
    ]
    if settings.log_format == "json":  # one object per line, even for the banner
        logging.getLogger("remediator").info("\n".join(lines))
    else:
        print("\n".join(lines), flush=True)


def _control_plane(settings: Settings) -> str | None:
    """The configured control plane's URL, fit to print (no user:password@), with what
    the executor presents and trusts (never the token); None when simulated."""
    from .pipeline.credentials import redact_url

    if settings.control_plane_url is None:
        return None
    credentials = settings.control_plane_credentials.describe()
    return f"{redact_url(settings.control_plane_url)} ({credentials})"


#: Each subcommand's runner (``control-plane`` parses its own options: see ``main``).
_RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "worker": _run_worker_command,
    "publish": _run_topic_tool,
    "tail": _run_topic_tool,
    "simulate": _run_simulate,
    "remediations": _run_console,
    "explain": _run_console,
    "clusters": _run_console,
    "policy": _run_policy,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
