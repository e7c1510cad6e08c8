"""A simulated compute control plane: a real HTTP server speaking the control plane's API.

The executor drives remediations by calling the provider's control plane. This module is a
stand-in for it, good enough for tests, demos and trying the service out on a laptop:

- ``POST /v1/clusters/{cluster_id}/instances/{instance_id}/operations`` with
  ``{"operation_id", "action", "avoid_current_host"?}`` starts an operation (201, state
  ``RUNNING``). The ``operation_id`` is the idempotency key: the same id again answers 200 with
  the existing operation and repeats nothing; the same id for another cluster, instance or
  action is a 409 ``CONFLICT``. A bad body is a 400 ``INVALID_ARGUMENT``.
- ``GET /v1/operations/{operation_id}`` answers the operation (404 ``NOT_FOUND`` if unknown),
  with the ``cluster_id`` and ``instance_id`` it acts on (an addition: optional fields).

Path parameters are percent-decoded (aiohttp's ``match_info``): ids that the executor
encodes as one path segment each (``/``, ``%``, ``?``, spaces, ``..``) arrive as they were.

Credentials, for trying the executor's (``REMEDIATOR_CONTROL_PLANE_TOKEN``, ``_CAFILE``,
``_CERTFILE``, ``_KEYFILE``): with a ``token``, every ``/v1`` request must carry
``Authorization: Bearer <token>``; served over TLS with a client CA
(:func:`tls_context`), every ``/v1`` request must come with a client certificate signed by
it. Otherwise the answer is a 401 ``UNAUTHENTICATED`` with a JSON error saying which,
counted in ``GET /_sim/log``'s ``refused``. The control endpoints below stay open.

Operations complete lazily, by time: one created at ``t`` is ``RUNNING`` until ``t`` plus the
latency of its action, then ``DONE`` or ``FAILED``. Whether it fails is decided when it is
created: by the first matching failure rule (``failures``), otherwise by a seeded random draw
against ``failure_rate``. There are no background tasks; time comes from an injectable
``clock`` so tests can move it by hand.

Fault switches make the ``/v1`` endpoints misbehave the way a real control plane does:
``fault="5xx"`` answers 503 ``UNAVAILABLE`` without doing anything; ``fault="hang"`` never
answers (until the client gives up or the server stops). ``fault_requests`` limits a fault
to the next N ``/v1`` requests and ``fault_seconds`` to a time span; then it switches itself
back to ``"none"``. Setting ``fault`` describes the whole fault: limits that are not given
with it are cleared.

Control endpoints, never subject to faults: ``GET``/``PUT /_sim/config`` (read, or update
partially: unknown keys or bad values are a 400), ``GET /_sim/log`` (every operations POST
that reached the handler, ``replay`` true when the id already existed; ``refused``: how many
``/v1`` requests were refused for their credentials), ``GET
/_sim/operations``, ``POST /_sim/reset`` (back to the configuration given at construction)
and ``GET /healthz``.

Standalone::

    python -m remediator.simulation.controlplane --port 7070 --latency DELETE_VM=0.5 \
        --failure-rate 0.1
    remediator control-plane --token-file tok --tls-certfile cp.pem --tls-client-cafile ca.pem
    curl -X PUT localhost:7070/_sim/config -d '{"fault": "5xx", "fault_requests": 3}'

From tests::

    sim = ControlPlaneSimulator(SimulatorConfig(seed=1), clock=fake_clock)
    url = await sim.start(port=0)         # real loopback HTTP; url is "http://127.0.0.1:PORT"
    sim.configure(fault="5xx", fault_requests=2)
    ...
    assert [entry.action for entry in sim.performed()] == [StepAction.DELETE_VM]
    await sim.stop()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import random
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from remediator.domain.models import OperationState, StepAction

__all__ = [
    "DEFAULT_LATENCY",
    "ConfigUpdate",
    "ControlPlaneSimulator",
    "FailureRule",
    "Fault",
    "LogEntry",
    "Operation",
    "OperationRequest",
    "OperationState",
    "SimulatorConfig",
    "StepAction",
    "add_arguments",
    "main",
    "run",
    "tls_context",
]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_START = 1
EXIT_CONFIG = 2
#: How often a hanging request checks whether its client is still there.
HANG_POLL_SECONDS = 0.1


Fault = Literal["none", "5xx", "hang"]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]

DEFAULT_LATENCY: Mapping[StepAction, float] = MappingProxyType(
    {
        StepAction.REBOOT_VM: 3.0,
        StepAction.DELETE_VM: 2.0,
        StepAction.PROVISION_VM: 5.0,
        StepAction.CORDON_HOST: 1.0,
        StepAction.POWER_CYCLE_HOST: 4.0,
        StepAction.UNCORDON_HOST: 1.0,
    }
)


class FailureRule(BaseModel):
    """A new operation matching every given field fails with ``error``.

    ``times`` counts down with each operation the rule fails; a used-up rule is dropped.
    """

    model_config = ConfigDict(extra="forbid")

    action: StepAction | None = None
    cluster_id: str | None = None
    instance_id: str | None = None
    error: str = Field(min_length=1)
    times: int | None = Field(default=None, ge=1)

    def matches(self, action: StepAction, cluster_id: str, instance_id: str) -> bool:
        return (
            (self.action is None or self.action == action)
            and (self.cluster_id is None or self.cluster_id == cluster_id)
            and (self.instance_id is None or self.instance_id == instance_id)
        )


class SimulatorConfig(BaseModel):
    """How the simulator behaves. ``latency`` always holds every action."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency: dict[StepAction, Seconds] = Field(default_factory=lambda: dict(DEFAULT_LATENCY))
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int | None = None
    fault: Fault = "none"
    fault_requests: int | None = Field(default=None, ge=1)
    fault_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    failures: list[FailureRule] = Field(default_factory=list)

    @field_validator("latency")
    @classmethod
    def _fill_latency(cls, value: dict[StepAction, float]) -> dict[StepAction, float]:
        return {**DEFAULT_LATENCY, **value}


class ConfigUpdate(BaseModel):
    """A partial :class:`SimulatorConfig`: only the fields given are changed.

    ``latency`` updates only the actions it names; ``seed`` (even unchanged, or null for
    fresh entropy) re-seeds the random generator; ``fault`` without ``fault_requests`` or
    ``fault_seconds`` clears those limits.
    """

    model_config = ConfigDict(extra="forbid")

    # Defaults only stand for "not given" (see model_fields_set); null is allowed only where
    # it means something.
    latency: dict[StepAction, Seconds] = Field(default_factory=dict)
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int | None = None
    fault: Fault = "none"
    fault_requests: int | None = Field(default=None, ge=1)
    fault_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    failures: list[FailureRule] = Field(default_factory=list)


class OperationRequest(BaseModel):
    """The body of ``POST .../operations`` (strict: no coercion, no unknown fields)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    operation_id: str = Field(min_length=1, max_length=512)
    action: StepAction
    avoid_current_host: bool = False


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Operation:
    """One operation. Its state is computed from the clock whenever it is read."""

    operation_id: str
    action: StepAction
    cluster_id: str
    instance_id: str
    avoid_current_host: bool
    created_at: datetime
    #: When it started and how long it runs, by the simulator's clock.
    started: float
    latency: float
    #: Decided at creation: the error it will fail with, or None if it will succeed.
    failure: str | None
    clock: Callable[[], float] = field(repr=False, compare=False)

    @property
    def state(self) -> OperationState:
        if self.clock() < self.started + self.latency:
            return OperationState.RUNNING
        return OperationState.DONE if self.failure is None else OperationState.FAILED

    @property
    def error(self) -> str | None:
        return self.failure if self.state is OperationState.FAILED else None

    def to_json(self) -> dict[str, Any]:
        state = self.state
        body: dict[str, Any] = {
            "operation_id": self.operation_id,
            "action": self.action.value,
            "state": state.value,
            "cluster_id": self.cluster_id,
            "instance_id": self.instance_id,
            "avoid_current_host": self.avoid_current_host,
            "created_at": _iso(self.created_at),
        }
        if state is OperationState.FAILED:
            body["error"] = self.failure
        return body


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One operations POST that reached the handler. ``replay``: the id already existed."""

    seq: int
    received_at: datetime
    cluster_id: str
    instance_id: str
    operation_id: str
    action: StepAction
    avoid_current_host: bool
    replay: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "received_at": _iso(self.received_at),
            "cluster_id": self.cluster_id,
            "instance_id": self.instance_id,
            "operation_id": self.operation_id,
            "action": self.action.value,
            "avoid_current_host": self.avoid_current_host,
            "replay": self.replay,
        }


_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "INVALID_ARGUMENT",
    503: "UNAVAILABLE",
}


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def tls_context(
    certfile: Path, keyfile: Path | None = None, client_cafile: Path | None = None
) -> ssl.SSLContext:
    """A server context for :meth:`ControlPlaneSimulator.start`. With ``client_cafile``,
    clients may present a certificate signed by it, and a ``/v1`` request without one is
    answered 401 (as nginx's ``ssl_verify_client`` answers 400): a readable refusal,
    where a handshake that requires one ends, on TLS 1.3, in a bare connection reset. A
    certificate that is presented but not trusted still fails the handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if client_cafile is not None:
        context.load_verify_locations(cafile=client_cafile)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _describe(exc: ValidationError) -> str:
    """A validation error as one readable line."""
    parts = []
    for problem in exc.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlPlaneSimulator:
    """The simulated control plane; see the module docstring.

    ``clock`` (seconds, monotonic) drives latencies and ``fault_seconds``; ``wall_clock``
    only stamps ``created_at`` and ``received_at``.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
        token: str | None = None,
    ) -> None:
        self._initial = (config or SimulatorConfig()).model_copy(deep=True)
        self._token = token
        #: Whether /v1 requests need a client certificate (set by :meth:`start`).
        self._client_certificates = False
        #: /v1 requests refused for their credentials (token or client certificate).
        self.refused = 0
        self._clock = clock
        self._wall_clock = wall_clock
        self.config: SimulatorConfig = self._initial.model_copy(deep=True)
        self.operations: dict[str, Operation] = {}
        self.log: list[LogEntry] = []
        self.url: str | None = None
        self._rng = random.Random(self.config.seed)  # noqa: S311 - simulation, not secrets
        self._fault_since = clock()
        self._hanging: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None

    # -- configuration -------------------------------------------------------------------

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Apply a partial update (see :class:`ConfigUpdate`) and return the new config.

        Raises :class:`pydantic.ValidationError` for unknown keys or bad values.
        """
        return self._apply(ConfigUpdate.model_validate(changes))

    def _apply(self, update: ConfigUpdate) -> SimulatorConfig:
        given = update.model_fields_set
        data = self.config.model_dump()
        for name, value in update.model_dump(include=given).items():
            data[name] = {**data["latency"], **value} if name == "latency" else value
        if "fault" in given:
            for limit in ("fault_requests", "fault_seconds"):
                if limit not in given:
                    data[limit] = None
        new = SimulatorConfig.model_validate(data)
        self.config = new
        if "seed" in given:
            self._rng = random.Random(new.seed)  # noqa: S311
        if given & {"fault", "fault_requests", "fault_seconds"}:
            self._fault_since = self._clock()
        log.info("simulator configured: %s", update.model_dump_json(include=given))
        return new

    def reset(self) -> None:
        """Forget every operation and log entry; back to the configuration of construction."""
        self.config = self._initial.model_copy(deep=True)
        self.operations.clear()
        self.log.clear()
        self.refused = 0
        self._rng = random.Random(self.config.seed)  # noqa: S311
        self._fault_since = self._clock()
        log.info("simulator reset")

    def performed(self) -> list[LogEntry]:
        """The log entries that started an operation (``replay`` False), in order."""
        return [entry for entry in self.log if not entry.replay]

    # -- faults --------------------------------------------------------------------------

    def _end_fault(self, why: str) -> None:
        log.info("simulated fault %r over (%s)", self.config.fault, why)
        self.config.fault = "none"
        self.config.fault_requests = None
        self.config.fault_seconds = None

    def _take_fault(self) -> Fault:
        """The fault that applies to this /v1 request, counting it against the limits."""
        config = self.config
        if config.fault == "none":
            return "none"
        if (
            config.fault_seconds is not None
            and self._clock() - self._fault_since >= config.fault_seconds
        ):
            self._end_fault(f"{config.fault_seconds:g} s passed")
            return "none"
        fault = config.fault
        if config.fault_requests is not None:
            if config.fault_requests <= 1:
                self._end_fault("request limit reached")
            else:
                config.fault_requests -= 1
        return fault

    def _expire_fault(self) -> None:
        config = self.config
        if (
            config.fault != "none"
            and config.fault_seconds is not None
            and self._clock() - self._fault_since >= config.fault_seconds
        ):
            self._end_fault(f"{config.fault_seconds:g} s passed")

    async def _hang(self, request: web.Request) -> None:
        """Wait until the client goes away or the server stops (then this is cancelled)."""
        task = asyncio.current_task()
        if task is not None:
            self._hanging.add(task)
        try:
            # aiohttp tells a handler about a vanished client only by cancelling it, and only
            # when the runner was made with handler_cancellation=True: poll, to work anywhere.
            while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(HANG_POLL_SECONDS)
        finally:
            if task is not None:
                self._hanging.discard(task)

    def _cancel_hanging(self) -> None:
        for task in list(self._hanging):
            task.cancel()

    # -- operations ----------------------------------------------------------------------

    def _decide_failure(self, action: StepAction, cluster_id: str, instance_id: str) -> str | None:
        rules = self.config.failures
        for index, rule in enumerate(rules):
            if not rule.matches(action, cluster_id, instance_id):
                continue
            if rule.times is not None:
                if rule.times <= 1:
                    del rules[index]
                else:
                    rule.times -= 1
            return rule.error
        if self._rng.random() < self.config.failure_rate:
            return (
                f"simulated failure: {action.value} on cluster {cluster_id} instance {instance_id}"
            )
        return None

    def _create(self, request: OperationRequest, cluster_id: str, instance_id: str) -> Operation:
        failure = self._decide_failure(request.action, cluster_id, instance_id)
        op = Operation(
            operation_id=request.operation_id,
            action=request.action,
            cluster_id=cluster_id,
            instance_id=instance_id,
            avoid_current_host=request.avoid_current_host,
            created_at=self._wall_clock(),
            started=self._clock(),
            latency=self.config.latency[request.action],
            failure=failure,
            clock=self._clock,
        )
        self.operations[op.operation_id] = op
        log.info(
            "performing %s on cluster %s instance %s (operation %s%s): %s after %g s",
            op.action.value,
            cluster_id,
            instance_id,
            op.operation_id,
            ", avoiding the current host" if op.avoid_current_host else "",
            "DONE" if failure is None else f"FAILED with {failure!r}",
            op.latency,
        )
        return op

    # -- HTTP ----------------------------------------------------------------------------

    async def _post_operation(self, request: web.Request) -> web.Response:
        cluster_id = request.match_info["cluster_id"]
        instance_id = request.match_info["instance_id"]
        try:
            body = OperationRequest.model_validate_json(await request.read())
        except ValidationError as exc:
            return _error(400, "INVALID_ARGUMENT", _describe(exc))
        existing = self.operations.get(body.operation_id)
        self.log.append(
            LogEntry(
                seq=len(self.log) + 1,
                received_at=self._wall_clock(),
                cluster_id=cluster_id,
                instance_id=instance_id,
                operation_id=body.operation_id,
                action=body.action,
                avoid_current_host=body.avoid_current_host,
                replay=existing is not None,
            )
        )
        if existing is None:
            return web.json_response(
                self._create(body, cluster_id, instance_id).to_json(), status=201
            )
        if (existing.cluster_id, existing.instance_id, existing.action) != (
            cluster_id,
            instance_id,
            body.action,
        ):
            return _error(
                409,
                "CONFLICT",
                f"operation_id {body.operation_id!r} is already used for "
                f"{existing.action.value} on cluster {existing.cluster_id} "
                f"instance {existing.instance_id}",
            )
        return web.json_response(existing.to_json(), status=200)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """A 401 for a /v1 request without the credentials this simulator wants."""
        if self._client_certificates:
            transport = request.transport
            if transport is None or not transport.get_extra_info("peercert"):
                return _error(401, "UNAUTHENTICATED", "a client certificate is required")
        if self._token is not None:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            # aiohttp keeps undecodable header bytes as surrogates: compare bytes as sent.
            given = presented.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, self._token.encode()):
                return _error(
                    401,
                    "UNAUTHENTICATED",
                    "missing or invalid bearer token",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return None

    async def _get_operation(self, request: web.Request) -> web.Response:
        operation_id = request.match_info["operation_id"]
        op = self.operations.get(operation_id)
        if op is None:
            return _error(404, "NOT_FOUND", f"no operation {operation_id!r}")
        return web.json_response(op.to_json())

    async def _get_config(self, request: web.Request) -> web.Response:
        self._expire_fault()
        return web.json_response(self.config.model_dump(mode="json"))

    async def _put_config(self, request: web.Request) -> web.Response:
        try:
            update = ConfigUpdate.model_validate_json(await request.read())
        except ValidationError as exc:
            return _error(400, "INVALID_ARGUMENT", _describe(exc))
        return web.json_response(self._apply(update).model_dump(mode="json"))

    async def _get_log(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": [entry.to_json() for entry in self.log], "refused": self.refused}
        )

    async def _get_operations(self, request: web.Request) -> web.Response:
        return web.json_response({"operations": [op.to_json() for op in self.operations.values()]})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.config.model_dump(mode="json"))

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def web_app(self) -> web.Application:
        """The aiohttp application (usable with any runner; :meth:`start` uses its own)."""

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            try:
                if request.path.startswith("/v1/"):
                    refusal = self._refusal(request)
                    if refusal is not None:
                        self.refused += 1
                        log.info("refused %s %s: unauthenticated", request.method, request.path)
                        return refusal
                    fault = self._take_fault()
                    if fault == "5xx":
                        log.debug("simulated outage: 503 for %s %s", request.method, request.path)
                        return _error(503, "UNAVAILABLE", "simulated outage")
                    if fault == "hang":
                        log.debug("simulated hang: %s %s", request.method, request.path)
                        await self._hang(request)
                        # The client went away: drop the connection as aiohttp does itself.
                        raise asyncio.CancelledError
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return _error(exc.status, _CODES.get(exc.status, "UNKNOWN"), exc.reason)

        async def on_shutdown(app: web.Application) -> None:
            self._cancel_hanging()

        app = web.Application(middlewares=[middleware])
        app.on_shutdown.append(on_shutdown)
        app.router.add_post(
            "/v1/clusters/{cluster_id}/instances/{instance_id}/operations", self._post_operation
        )
        app.router.add_get("/v1/operations/{operation_id}", self._get_operation)
        app.router.add_get("/_sim/config", self._get_config)
        app.router.add_put("/_sim/config", self._put_config)
        app.router.add_get("/_sim/log", self._get_log)
        app.router.add_get("/_sim/operations", self._get_operations)
        app.router.add_post("/_sim/reset", self._reset)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Serve on ``host:port`` (0: any free port); return the base URL. With
        ``ssl_context`` (see :func:`tls_context`), over HTTPS; a context that asks for client
        certificates makes a /v1 request without one a 401."""
        if self._runner is not None:
            raise RuntimeError(f"simulator already serving on {self.url}")
        runner = web.AppRunner(self.web_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound = int(runner.addresses[0][1])
        self._runner = runner
        self._client_certificates = (
            ssl_context is not None and ssl_context.verify_mode is not ssl.CERT_NONE
        )
        scheme = "http" if ssl_context is None else "https"
        self.url = f"{scheme}://[{host}]:{bound}" if ":" in host else f"{scheme}://{host}:{bound}"
        log.debug("control-plane simulator serving on %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Stop serving. Hanging requests are dropped, so this returns promptly."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._cancel_hanging()
        await runner.cleanup()
        self.url = None


# -- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's command-line options (for ``remediator control-plane`` and ``-m``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=7070, help="port to listen on (%(default)s)")
    parser.add_argument(
        "--latency",
        action="append",
        default=[],
        metavar="ACTION=SECONDS",
        help="how long an action runs (repeatable); defaults: "
        + ", ".join(f"{action.value}={seconds:g}" for action, seconds in DEFAULT_LATENCY.items()),
    )
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.0,
        help="share of operations that fail, 0 to 1 (%(default)s)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the failure draws")
    parser.add_argument(
        "--fault",
        choices=["none", "5xx", "hang"],
        default="none",
        help="start with this fault on the /v1 endpoints (%(default)s)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="require Authorization: Bearer <the file's content, stripped> on /v1 (401 "
        "otherwise; REMEDIATOR_CONTROL_PLANE_TOKEN is what the worker sends)",
    )
    parser.add_argument(
        "--tls-certfile",
        type=Path,
        default=None,
        metavar="PEM",
        help="serve HTTPS with this certificate (and its key, unless --tls-keyfile)",
    )
    parser.add_argument("--tls-keyfile", type=Path, default=None, metavar="PEM")
    parser.add_argument(
        "--tls-client-cafile",
        type=Path,
        default=None,
        metavar="PEM",
        help="require a client certificate signed by this CA on /v1 (mutual TLS; 401 without one)",
    )


def _parse_latency(items: Sequence[str]) -> dict[StepAction, float]:
    latency: dict[StepAction, float] = {}
    choices = ", ".join(action.value for action in StepAction)
    for item in items:
        name, sep, seconds = item.partition("=")
        try:
            action = StepAction(name.strip().upper())
            value = float(seconds)
        except ValueError:
            raise ValueError(
                f"--latency {item!r}: expected ACTION=SECONDS with ACTION one of {choices}"
            ) from None
        if not sep or not 0 <= value < float("inf"):
            raise ValueError(f"--latency {item!r}: SECONDS must be a number >= 0")
        latency[action] = value
    return latency


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The configuration the options describe; ValueError (one line) if they are bad."""
    latency = _parse_latency(args.latency)
    if not 0.0 <= args.failure_rate <= 1.0:
        raise ValueError(f"--failure-rate {args.failure_rate}: must be between 0 and 1")
    try:
        return SimulatorConfig(
            latency=latency, failure_rate=args.failure_rate, seed=args.seed, fault=args.fault
        )
    except ValidationError as exc:
        raise ValueError(_describe(exc)) from None


def token_from_args(args: argparse.Namespace) -> str | None:
    """The token ``--token-file`` holds; ValueError (one line, never the token) if none."""
    path: Path | None = getattr(args, "token_file", None)
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8"
        raise ValueError(f"--token-file: cannot read {path} ({reason})") from None
    if not token:
        raise ValueError(f"--token-file: {path} is empty")
    return token


def tls_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server context the ``--tls-*`` options describe; ValueError (one line)."""
    certfile: Path | None = getattr(args, "tls_certfile", None)
    keyfile: Path | None = getattr(args, "tls_keyfile", None)
    client_cafile: Path | None = getattr(args, "tls_client_cafile", None)
    if certfile is None:
        if keyfile is not None or client_cafile is not None:
            raise ValueError("--tls-keyfile and --tls-client-cafile need --tls-certfile")
        return None
    try:
        return tls_context(certfile, keyfile, client_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"--tls-*: cannot load the certificates ({exc})") from None


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM. 0 when stopped, 2 for bad options, 1 if it can't start."""
    try:
        config = config_from_args(args)
        token = token_from_args(args)
        context = tls_from_args(args)
    except ValueError as exc:
        sys.stderr.write(f"control-plane simulator: {exc}\n")
        return EXIT_CONFIG
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sim = ControlPlaneSimulator(config, token=token)
    return asyncio.run(_serve(sim, args.host, args.port, context))


async def _serve(
    sim: ControlPlaneSimulator, host: str, port: int, context: ssl.SSLContext | None = None
) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    try:
        try:
            url = await sim.start(host, port, ssl_context=context)
        except OSError as exc:
            sys.stderr.write(f"control-plane simulator: cannot listen on {host}:{port}: {exc}\n")
            return EXIT_START
        sys.stderr.write(f"control-plane simulator listening on {url}\n")
        sys.stderr.flush()
        try:
            await stopping.wait()
        finally:
            await sim.stop()
        return EXIT_OK
    finally:
        for signum in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m remediator.simulation.controlplane"
) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the simulated compute control plane as an "
        "HTTP server. Its /_sim/config endpoint switches latency, failures and outages at "
        "run time.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
