"""``remediator``: the command line.

``remediator worker`` runs the service. With ``REMEDIATOR_BROKER`` unset it starts an
embedded Tansu broker on loopback first, and stops it after the worker has shut down.
Configuration errors print one line naming the setting and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .settings import Settings

EXIT_CONFIG = 2
EXIT_START = 1
EMBEDDED_SESSION_TIMEOUT = 3.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="remediator",
        description="Links GPU-cluster health checks to node remediations.",
    )
    parser.add_argument("--version", action="version", version=f"remediator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "worker",
        help="run a worker (configured by REMEDIATOR_* environment variables)",
        description="Run a worker. Settings come from REMEDIATOR_* environment variables; "
        "see the README.",
    )
    args = parser.parse_args(argv)
    if args.command == "worker":
        return run_worker()
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return EXIT_CONFIG  # pragma: no cover


def _fail(message: str, code: int) -> int:
    print(f"remediator: {message}", file=sys.stderr)
    return code


def run_worker() -> int:
    # Imports here keep `remediator --help` fast and free of Faust's import-time noise.
    from .embedded import EmbeddedBroker, EmbeddedBrokerError, port_in_use
    from .settings import ConfigError, load_settings, unknown_variables

    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    for name in unknown_variables():
        print(f"remediator: warning: {name} is not a known setting (ignored)", file=sys.stderr)
    if port_in_use(settings.web_host, settings.web_port):
        return _fail(
            f"REMEDIATOR_WEB_PORT: {settings.web_host}:{settings.web_port} is already in use",
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
        update: dict[str, object] = {"broker": broker.url}
        if settings.broker_session_timeout is None:
            # Tansu holds a group join for about half the session timeout: keep it short
            # so that a local start or restart takes seconds, not half a minute.
            update["broker_session_timeout"] = EMBEDDED_SESSION_TIMEOUT
        settings = settings.model_copy(update=update)
    try:
        return _run_faust_worker(settings, embedded=broker is not None)
    finally:
        if broker is not None:
            broker.stop()


def _run_faust_worker(settings: Settings, *, embedded: bool) -> int:
    import faust

    from .admin import BrokerUnavailable, ensure_topics
    from .app import create_app, external_topic_names

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if settings.create_topics:
        try:
            loop.run_until_complete(
                ensure_topics(
                    settings.bootstrap_servers,
                    external_topic_names(settings),
                    partitions=settings.partitions,
                    replication_factor=settings.replication_factor,
                )
            )
        except BrokerUnavailable as exc:
            return _fail(f"REMEDIATOR_BROKER: {exc}", EXIT_START)
    _print_banner(settings, embedded=embedded)
    app = create_app(settings)
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level, quiet=True)
    logging.captureWarnings(True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 1
    return 0  # pragma: no cover - execute_from_commandline always exits


def _print_banner(settings: Settings, *, embedded: bool) -> None:
    where = "embedded Tansu broker (memory only)" if embedded else "broker"
    lines = [
        f"remediator {__version__} worker, app id {settings.app_id!r}",
        f"  {where}: {settings.broker}",
        f"  REST API: http://{settings.web_host}:{settings.web_port}/healthz",
        f"  feed health checks to: {settings.topic_active_runs}, {settings.topic_passive_events}",
        f"  transitions on: {settings.topic_transitions}; "
        f"dead letters on: {settings.topic_dead_letter}",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
