"""The list endpoint's query parameters, read the way the provider's SDK sends them.

The SDK (``together`` 3.1.1) joins a list filter with commas (``state=PENDING,RUNNING``)
and sends an empty list as an empty value (``state=``); other clients repeat the parameter
(``state=PENDING&state=RUNNING``). Both forms, mixed, mean "any of these values", and an
empty value or item adds nothing. A value that is not one of the enum's is refused, naming the
allowed ones: a misspelt filter must not silently match nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import TypeVar

from remediator.api.errors import ApiError
from remediator.domain.bounds import echo
from remediator.domain.commands import Order, OrderField

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

E = TypeVar("E", bound=enum.StrEnum)


def enum_filter(raw: Sequence[str], kind: type[E], name: str) -> frozenset[E]:
    """The values of a filter given as ``raw``, every occurrence of the parameter."""
    chosen = set()
    for occurrence in raw:
        for value in occurrence.split(","):
            if not value:
                continue
            try:
                chosen.add(kind(value))
            except ValueError:
                allowed = ", ".join(e.value for e in kind)
                raise ApiError.invalid(f"{name} {echo(value)} is not one of: {allowed}") from None
    return frozenset(chosen)


def enum_filter_pattern(kind: type[enum.StrEnum]) -> str:
    """What :func:`enum_filter` accepts in one occurrence, as a regular expression (for
    the OpenAPI document): enum values and empty items, comma-separated."""
    one = "|".join(re.escape(e.value) for e in kind)
    return f"^(?:{one})?(?:,(?:{one})?)*$"


def order_by(raw: Sequence[str]) -> Order:
    """``order_by``: ``create_time`` or ``update_time``, then `` asc`` or `` desc``;
    absent or empty is the default, ``create_time desc``."""
    if len(raw) > 1:
        raise ApiError.invalid("order_by is given more than once")
    try:
        return Order.parse(raw[0] if raw else "")
    except ValueError as exc:
        raise ApiError.invalid(str(exc)) from None


#: What :func:`order_by` accepts, as a regular expression (for the OpenAPI document).
ORDER_BY_PATTERN = "^(?:(?:" + "|".join(f.value for f in OrderField) + ")(?: (?:asc|desc))?)?$"


def page_size(raw: str | None) -> int:
    """``page_size``: default when absent, empty or 0; capped at the maximum."""
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise ApiError.invalid(f"page_size {echo(raw)} is not an integer") from None
    if size < 0:
        raise ApiError.invalid("page_size must not be negative")
    return DEFAULT_PAGE_SIZE if size == 0 else min(size, MAX_PAGE_SIZE)
