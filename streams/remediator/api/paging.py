"""Opaque page tokens: the position after the last record of a page, bound to its list.

A token carries the cursor and a fingerprint of the list it came from: the path, the
filters and the order. Used on any other list it is refused (400), never silently read
in another order, where its position would mean something else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import orjson
from pydantic import ValidationError

from remediator.api.errors import ApiError
from remediator.domain.commands import DEFAULT_ORDER, Cursor, Order
from remediator.domain.models import Remediation


def fingerprint(scope: str, filters: list[str], order: Order = DEFAULT_ORDER) -> str:
    """The list's identity: ``scope`` (its path), its filters (any order), its order.

    The default order adds nothing, so tokens of lists from before ``order_by`` existed
    stay valid, and ``order_by=create_time desc`` is the same list as no ``order_by``.
    """
    parts = sorted(filters) if order == DEFAULT_ORDER else [*sorted(filters), f"order_by={order}"]
    return hashlib.sha256("\x00".join([scope, *parts]).encode()).hexdigest()[:16]


def encode(last: Remediation, scope_fingerprint: str, order: Order = DEFAULT_ORDER) -> str:
    cursor = order.cursor(last)
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
        raise ApiError.invalid(
            "page_token belongs to a different list (path, filters or order_by changed)"
        )
    return cursor
