"""Opaque page tokens: the position after the last record of a page, tied to the filters."""

from __future__ import annotations

import base64
import binascii
import hashlib

import orjson
from pydantic import ValidationError

from remediator.api.errors import ApiError
from remediator.domain.commands import Cursor
from remediator.domain.models import Remediation


def fingerprint(scope: str, filters: list[str]) -> str:
    return hashlib.sha256("\x00".join([scope, *sorted(filters)]).encode()).hexdigest()[:16]


def encode(last: Remediation, scope_fingerprint: str) -> str:
    cursor = Cursor(create_time=last.create_time, id=last.id)
    raw = orjson.dumps({"c": cursor.model_dump(mode="json"), "f": scope_fingerprint})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, scope_fingerprint: str) -> Cursor:
    """The cursor in ``token``; 400 INVALID_ARGUMENT if it is not one of ours for this list."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = orjson.loads(raw)
        cursor = Cursor.model_validate(document["c"])
        same_list = document["f"] == scope_fingerprint
    except (binascii.Error, ValueError, TypeError, KeyError, ValidationError):
        raise ApiError.invalid("page_token is not valid") from None
    if not same_list:
        raise ApiError.invalid("page_token belongs to a different list (path or filters changed)")
    return cursor
