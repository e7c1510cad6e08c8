"""The compute control plane's HTTP API (operations on instances), over httpx, with retries.

Failure model:
- *Transient* (connection refused or reset, timeouts, 5xx, 429, 408): retried forever with
  exponential backoff and full jitter, capped. A passing outage of the control plane delays
  a remediation; it never fails one. Retries are logged (first one and then every tenth) so
  an outage is visible without flooding the log.
- *Permanent* (any other 4xx, or an answer that is not the contract's JSON):
  :class:`ControlPlaneRejected`, which fails the step with the control plane's message.
  Retrying a request the control plane calls invalid would never succeed. A 401 or 403
  says the control plane refused our credentials (``REMEDIATOR_CONTROL_PLANE_TOKEN``, the
  client certificate): permanent too, with a message that says so, not a retry storm.

Every id in a URL is percent-encoded as one path segment (:func:`segment`), so an id can
never change which resource is addressed; credentials come from
:class:`~remediator.pipeline.credentials.ControlPlaneCredentials`.

``POST`` is safe to retry: the ``operation_id`` is the idempotency key, so a repeated post
returns the existing operation and repeats nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from remediator.domain.bounds import Text
from remediator.domain.models import Operation, OperationState
from remediator.metrics import Metrics
from remediator.pipeline.credentials import ControlPlaneCredentials

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 425, 429})
#: The control plane refused who we are: permanent, said in so many words.
REFUSED_CREDENTIALS = frozenset({401, 403})


class OperationStatus(BaseModel):
    """The control plane's view of one operation (extra fields ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    operation_id: str
    action: str
    state: OperationState
    error: Text | None = None  # clipped: it ends up in the remediation (domain/bounds.py)
    # Optional: the instance the operation acts on, when the control plane says (the
    # simulator does). The executor refuses an operation of another instance.
    cluster_id: str | None = None
    instance_id: str | None = None


class ControlPlaneRejected(Exception):
    """The control plane refused a request for good (a 4xx that is not transient)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * factor**n))``."""

    base: float = 0.5
    cap: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * self.factor ** min(attempt, 32))
        return rng.uniform(ceiling / 10, ceiling)


class ControlPlaneClient:
    def __init__(
        self,
        base_url: Callable[[], str],
        *,
        timeout: float = 10.0,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
        credentials: ControlPlaneCredentials | None = None,
    ) -> None:
        self._base_url = base_url
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        credentials = credentials or ControlPlaneCredentials()
        context = credentials.ssl_context
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            headers={"user-agent": "remediator-executor", **credentials.headers()},
            auth=httpx.BasicAuth(*credentials.basic_auth) if credentials.basic_auth else None,
            verify=context if context is not None else True,
        )
        #: Transient failures seen so far (for /healthz and tests).
        self.retries = 0
        self._metrics = metrics or Metrics()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def start(self, cluster_id: str, instance_id: str, op: Operation) -> OperationStatus:
        """Start ``op`` (idempotent: an existing operation is returned as it is)."""
        url = (
            f"{self._base_url()}/v1/clusters/{segment(cluster_id)}"
            f"/instances/{segment(instance_id)}/operations"
        )
        body = {
            "operation_id": op.operation_id,
            "action": op.action.value,
            "avoid_current_host": op.avoid_current_host,
        }
        what = f"start {op.action.value} {op.operation_id}"
        return await self._call("start", what, lambda: self._client.post(url, json=body))

    async def get(self, operation_id: str) -> OperationStatus | None:
        """The operation's status, or None if the control plane does not know it."""
        url = f"{self._base_url()}/v1/operations/{segment(operation_id)}"
        try:
            return await self._call(
                "poll", f"poll {operation_id}", lambda: self._client.get(url), not_found_ok=True
            )
        except _NotFound:
            return None

    async def _call(
        self,
        call: str,
        what: str,
        send: Callable[[], Awaitable[httpx.Response]],
        *,
        not_found_ok: bool = False,
    ) -> OperationStatus:
        attempt = 0
        while True:
            problem: str
            try:
                response = await send()
            except httpx.TransportError as exc:  # connect, read, write, timeouts, protocol
                problem = _transport_problem(exc)
                cause = "transport"
            else:
                status = response.status_code
                if status < 300:
                    try:
                        return _parse(what, response)
                    except ControlPlaneRejected:
                        self._metrics.control_plane_error(call, "unreadable")
                        raise
                if status == 404 and not_found_ok:
                    raise _NotFound
                if status in REFUSED_CREDENTIALS:
                    self._metrics.control_plane_error(call, str(status))
                    raise ControlPlaneRejected(
                        f"control plane refused the credentials ({status}): "
                        f"{_message(response)} (to {what})"
                    )
                if status < 500 and status not in TRANSIENT_STATUS:
                    self._metrics.control_plane_error(call, str(status))
                    raise ControlPlaneRejected(
                        f"control plane refused to {what}: HTTP {status} {_message(response)}"
                    )
                problem = f"HTTP {status} {_message(response)}"
                cause = str(status)
            self.retries += 1
            self._metrics.control_plane_retry(call, cause)
            delay = self._backoff.delay(attempt, self._rng)
            if attempt % 10 == 0:
                log.warning(
                    "control plane: %s failed (%s); retry %d in %.1fs",
                    what,
                    problem,
                    attempt + 1,
                    delay,
                )
            attempt += 1
            await self._sleep(delay)


class _NotFound(Exception):
    pass


def _transport_problem(exc: BaseException) -> str:
    """``ConnectError: ...``; for one that says nothing itself (httpx's ``ReadError('')``
    of a connection reset, such as a TLS server refusing the client's certificate), the
    first cause that does."""
    if str(exc):
        return f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not str(cause):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return type(exc).__name__
    return f"{type(exc).__name__} ({type(cause).__name__}: {cause})"


def segment(value: str) -> str:
    """``value`` as exactly one URL path segment: every reserved character
    percent-encoded (``/``, ``?``, ``#``, ``%``), and ``.`` or ``..`` too, which clients
    and proxies would otherwise resolve as "this" or "the parent" directory."""
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _parse(what: str, response: httpx.Response) -> OperationStatus:
    try:
        return OperationStatus.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ControlPlaneRejected(
            f"control plane answered {what} with an unreadable operation ({where}: {first['msg']})"
        ) from None


def _message(response: httpx.Response) -> str:
    """The error message of a control-plane answer, in one short line."""
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text.strip().replace("\n", " ")
        return text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:200]
        if isinstance(error, str):
            return error[:200]
    return str(body)[:200]
