"""One notification POSTed to one target: retried with backoff and jitter, or given up.

What is retried: a transport error (connection refused, reset, a timeout) and the
answers that say "later": 408, 429 and every 5xx. What is not: any other status outside
2xx (a 4xx says the request itself is wrong, and a redirect is not followed: the
configured URL should be the final one); that notification is given up at once. After
``max_attempts`` attempts it is given up too. A given-up notification goes to the
dead-letter topic with the reason (:mod:`remediator.notify.service`).

The wait before attempt ``n + 1`` is drawn between half and all of
``min(backoff_max_seconds, backoff_initial_seconds * 2 ** (n - 1))`` ("equal jitter":
receivers coming back are not hit by every worker at once, and the wait still grows); a
``Retry-After`` of seconds on a 429 or 503 lengthens it, up to the same cap.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import httpx

from remediator.domain.notify_policy import NotifyTarget, shown_url

#: Statuses that mean "try again later".
RETRIED_STATUSES = frozenset({408, 429})

Verdict = Literal["delivered", "retry", "permanent"]


def verdict(status: int) -> Verdict:
    """What an HTTP status means for a notification."""
    if 200 <= status < 300:
        return "delivered"
    if status in RETRIED_STATUSES or status >= 500:
        return "retry"
    return "permanent"


def backoff(attempt: int, target: NotifyTarget, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): between half and all
    of the doubled, capped delay (``draw`` returns a number in [0, 1))."""
    exponent = min(attempt - 1, 60)  # 2 ** 60 seconds is well past any cap
    ceiling = min(target.backoff_max_seconds, target.backoff_initial_seconds * 2.0**exponent)
    return ceiling * (0.5 + 0.5 * draw())


def retry_after(value: str | None, cap: float) -> float | None:
    """A ``Retry-After`` header of seconds, capped; None when absent or a date."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), cap)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one notification ended."""

    delivered: bool
    attempts: int
    #: Why it was given up (one line); None when delivered.
    error: str | None = None
    #: Seconds from the first attempt to the answer that ended it.
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Request:
    """What to POST: the body and its headers (content type, signature)."""

    body: bytes
    headers: Mapping[str, str]


async def deliver(
    client: httpx.AsyncClient,
    target: NotifyTarget,
    request: Request,
    *,
    on_retry: Callable[[str], None] = lambda cause: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    draw: Callable[[], float] = random.random,
) -> Outcome:
    """POST ``request`` to ``target`` until it is accepted, refused for good, or
    ``max_attempts`` are spent. ``on_retry`` is told the cause of each retry."""
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        cause, wait = await _attempt(client, target, request)
        if cause is None:
            return Outcome(True, attempt, seconds=time.monotonic() - started)
        if wait is None or attempt >= target.max_attempts:
            tried = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
            return Outcome(False, attempt, f"{cause} ({tried})", seconds=time.monotonic() - started)
        on_retry(cause)
        await sleep(max(backoff(attempt, target, draw), wait))


async def _attempt(
    client: httpx.AsyncClient, target: NotifyTarget, request: Request
) -> tuple[str | None, float | None]:
    """(None, None) when delivered; else the cause and, when worth retrying, the least
    wait the receiver asked for (0.0 if it said nothing)."""
    try:
        response = await client.post(
            target.url,
            content=request.body,
            headers=dict(request.headers),
            timeout=target.timeout_seconds,
        )
    except httpx.TimeoutException:
        return f"timed out after {target.timeout_seconds:g} s", 0.0
    except httpx.TransportError as exc:
        return f"{type(exc).__name__}: {_one_line(exc)}", 0.0
    judged = verdict(response.status_code)
    if judged == "delivered":
        return None, None
    cause = f"HTTP {response.status_code}"
    if judged == "permanent":
        return cause, None
    later = retry_after(response.headers.get("retry-after"), target.backoff_max_seconds)
    return cause, later or 0.0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or "no detail"


class HideTargetPaths(logging.Filter):
    """httpx logs every request's URL (shown with REMEDIATOR_LOG_LEVEL=debug); a target's
    path and query can be its credential (a Slack webhook's is), so its lines show
    :func:`shown_url` instead. Attached to the ``httpx`` logger while the notifier runs."""

    def __init__(self, urls: Iterable[str]) -> None:
        super().__init__()
        self._shown = {str(httpx.URL(url)): shown_url(url) for url in urls}

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(self._hide(arg) for arg in record.args)
        return True

    def _hide(self, arg: object) -> object:
        if isinstance(arg, httpx.URL | str):
            text = str(arg)
            for url, shown in self._shown.items():
                if text.startswith(url):
                    return shown
        return arg
