"""How the worker logs: readable text by default, or one JSON object per line.

Faust, mode, aiokafka, httpx and aiohttp log a great deal at INFO that an operator does
not need (start-up tables of topics and partitions, "Starting..." per service, one line
per HTTP request, the 404 of a step looked up before it is posted), and so do mode's
"[^--Service]: Starting..." lines of every service, ours included. Those lines are
demoted to DEBUG: shown with ``REMEDIATOR_LOG_LEVEL=debug``, hidden otherwise. Their
warnings and errors stay as they are.

Log calls name the remediation, cluster and instance they are about with
``extra=about(...)``; the JSON format carries them as fields, so a log pipeline can
follow one remediation through the worker.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson
from aiohttp.http_exceptions import BadHttpMessage

LogFormat = Literal["text", "json"]

#: Loggers whose INFO lines are framework chatter (prefixes of logger names).
FRAMEWORK = ("faust", "mode", "aiokafka", "httpx", "httpcore", "aiohttp", "kafka")

#: The context fields a log record may carry (see :func:`about`).
FIELDS = ("remediation_id", "cluster_id", "instance_id")

#: What every LogRecord has: anything else in its ``__dict__`` came from ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def about(
    cluster_id: str | None = None,
    instance_id: str | None = None,
    remediation_id: str | None = None,
) -> dict[str, str]:
    """The ``extra`` of a log call about one remediation, instance or cluster."""
    fields = {
        "cluster_id": cluster_id,
        "instance_id": instance_id,
        "remediation_id": remediation_id,
    }
    return {k: v for k, v in fields.items() if v}


class DemoteFramework(logging.Filter):
    """Turn the frameworks' INFO lines into DEBUG ones, and drop them unless the
    configured level shows DEBUG."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if _retried_by_aiokafka(record):
            # Apache Kafka answers "coordinator not available" while it loads a new
            # group's coordinator (a second at a group's first start); aiokafka logs it
            # as an ERROR and retries. /healthz says "joining" for as long as it lasts.
            # Likewise a new partition whose leader is not serving offsets yet.
            record.levelno, record.levelname = logging.INFO, "INFO"
        if _cancelled_in_a_crash(record):
            # Every service a crash stops says so with a traceback of its cancellation;
            # the crash itself is logged once, with its cause.
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = record.exc_text = None
            return self.level <= logging.DEBUG
        if record.levelno != logging.INFO or not (
            record.name.startswith(FRAMEWORK) or _service_lifecycle(record)
        ):
            return True
        if self.level > logging.DEBUG:
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_ECHOED = re.compile(r":\s*(?:bytearray\()?b['\"]")


class QuietBadRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (an over-long request line or header, bytes
    that are not HTTP) as an ERROR with a traceback, though the client got its 400 and
    nothing in the worker went wrong: make it one INFO line of ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "aiohttp.server" or not record.exc_info:
            return True
        exc = record.exc_info[1]
        if not isinstance(exc, BadHttpMessage):
            return True
        reason = str(getattr(exc, "message", "") or exc).strip().splitlines()[0]
        reason = _ECHOED.split(reason)[0]  # not the client's bytes back into our log
        record.name, record.levelno, record.levelname = "remediator.api", logging.INFO, "INFO"
        record.msg, record.args = "refused a malformed HTTP request (400): %s", (reason[:200],)
        record.exc_info = record.exc_text = None
        return True


#: aiokafka's lines about conditions it retries by itself (see DemoteFramework).
_RETRIED = ("GroupCoordinatorNotAvailableError", "Marking the coordinator dead")
#: aiokafka's ERROR when a new partition's leader does not answer ListOffsets yet (Apache
#: Kafka, a tenth of a second after the topic was created): retried after a backoff.
_RETRIED_OFFSETS = ("Failed fetch offsets from", "NotLeaderForPartitionError")


def _retried_by_aiokafka(record: logging.LogRecord) -> bool:
    if not record.name.startswith("aiokafka") or record.levelno < logging.WARNING:
        return False
    text = record.getMessage()
    return any(marker in text for marker in _RETRIED) or all(
        marker in text for marker in _RETRIED_OFFSETS
    )


def _cancelled_in_a_crash(record: logging.LogRecord) -> bool:
    """mode's "[^--Service]: Crashed reason=CancelledError()" of services a crash stopped."""
    return (
        isinstance(record.msg, str)
        and "Crashed reason=" in record.msg
        and isinstance(record.args, tuple)
        and bool(record.args)
        and isinstance(record.args[0], asyncio.CancelledError)
    )


def _service_lifecycle(record: logging.LogRecord) -> bool:
    """mode's per-service lines ("[^--Executor]: Starting..."), whichever module logs them."""
    return isinstance(record.msg, str) and record.msg.startswith("[^")


class TextFormatter(logging.Formatter):
    """``2026-11-25 15:11:30.686 INFO  remediator.pipeline: opened remediation …``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
        line = (
            f"{stamp}.{int(record.msecs):03d} {record.levelname:<7} {record.name}: "
            f"{record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the
    context fields when the call named them, and ``exception`` with its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(level: str, fmt: LogFormat, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in ``fmt``, at ``level`` and above."""
    numeric = logging.getLevelName(level.upper())
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(QuietBadRequests())
    handler.addFilter(DemoteFramework(numeric))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
