"""Bytes off the input topics into health signals, or into a dead letter that says why.

Pure functions, no Faust: the agents call them, the unit tests call them directly.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

from pydantic import BaseModel, ValidationError

from remediator.domain.models import (
    IDENTIFIER_PATTERN,
    IDENTIFIER_RULE,
    ActiveHealthCheckRun,
    DeadLetter,
    HealthSignal,
    PassiveHealthCheckEvent,
)

_MAX_SHOWN_INPUT = 60
_MAX_ERRORS_SHOWN = 5
#: A dead letter keeps at most this much of the payload (and of the key), with the
#: payload's full size and SHA-256: the dead-letter record itself always fits.
MAX_KEPT_PAYLOAD = 64 * 1024
_MAX_KEPT_KEY = 1024


class InvalidInput(ValueError):
    """Input that cannot be used. ``str(exc)`` is one readable line."""


def decode_signal(
    model: type[ActiveHealthCheckRun] | type[PassiveHealthCheckEvent], raw: bytes | None
) -> HealthSignal:
    """Parse one input message; raise :class:`InvalidInput` with a one-line reason."""
    if raw is None or not raw.strip():
        raise InvalidInput(f"{model.__name__}: empty message")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(describe(model, exc)) from None


def describe(model: type[BaseModel], exc: ValidationError) -> str:
    """A pydantic error as one line: ``Model: field: problem (got 'x'); ...``."""
    parts = []
    errors = exc.errors(include_url=False)
    for error in errors[:_MAX_ERRORS_SHOWN]:
        loc = ".".join(str(p) for p in error["loc"])
        message = error["msg"]
        if error["type"] == "json_invalid":
            message = f"not valid JSON ({error.get('ctx', {}).get('error', message)})"
        elif error["type"] not in ("missing",) and "input" in error and loc:
            if error.get("ctx", {}).get("pattern") == IDENTIFIER_PATTERN:
                message = f"not {IDENTIFIER_RULE}"  # the regex itself helps no reader
            shown = repr(error["input"])
            if len(shown) > _MAX_SHOWN_INPUT:
                shown = shown[: _MAX_SHOWN_INPUT - 3] + "..."
            message = f"{message} (got {shown})"
        parts.append(f"{loc}: {message}" if loc else message)
    if len(errors) > _MAX_ERRORS_SHOWN:
        parts.append(f"and {len(errors) - _MAX_ERRORS_SHOWN} more")
    line = f"{model.__name__}: " + "; ".join(parts)
    return " ".join(line.split())  # one line, whatever the input held


def dead_letter(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    payload: bytes | None,
    error: str,
    received_at: datetime,
    keep: int = MAX_KEPT_PAYLOAD,
) -> DeadLetter:
    """The dead letter for one unusable message; bytes that are not UTF-8 go as base64.

    The payload is kept up to ``keep`` bytes, with its full size and SHA-256, so that an
    oversized input still leaves a dead letter that fits."""
    raw = payload or b""
    kept = raw[:keep]
    text, encoding = _as_text(kept)
    key_text = None
    if key is not None:
        key_text = key[:_MAX_KEPT_KEY].decode("utf-8", errors="backslashreplace")
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=key_text,
        payload=text,
        payload_encoding=encoding,
        error=" ".join(error.split()),
        received_at=received_at,
        payload_size=len(raw),
        payload_sha256=hashlib.sha256(raw).hexdigest(),
        payload_truncated=len(kept) < len(raw),
    )


def check_size(raw: bytes | None, limit: int) -> None:
    """Raise :class:`InvalidInput` for a message larger than ``limit`` bytes."""
    size = len(raw or b"")
    if size > limit:
        raise InvalidInput(
            f"message of {size} bytes is larger than the limit of {limit} bytes "
            "(REMEDIATOR_MAX_INPUT_BYTES)"
        )


def _as_text(payload: bytes) -> tuple[str, None] | tuple[str, str]:
    try:
        return payload.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"
