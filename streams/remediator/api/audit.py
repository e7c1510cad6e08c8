"""The audit trail: every mutating API call, done or refused, on ``remediator-audit``.

A middleware inside the error middleware (it sees the :class:`ApiError` a view raised,
before it becomes a response) writes one :class:`AuditRecord` per call to a named route:
who (principal and role, None when the credentials were missing or unknown), what
(action, method, path, target ids, the mode asked for), the outcome (OK, REFUSED for a
4xx, FAILED for a 5xx), the status and the error's name and message.

The record is sent before the answer leaves and its acknowledgement awaited (bounded by
the API's timeout): a client that got an answer can find its call in the trail. If the
broker does not acknowledge in time, the call's answer stands (the action was taken or
refused already) and the record is logged whole at ERROR instead, so it is not lost from
sight; ``remediator_audit_records_total{result="unacknowledged"}`` counts those.

Keyed ``{cluster_id}/{instance_id}`` like the transitions (or the cluster id, or nothing),
so one instance's trail is in one partition, in order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from http import HTTPStatus
from typing import Any

import faust
import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from remediator.api.auth import NOTE, CallNote
from remediator.api.errors import ApiError, Handler
from remediator.domain.commands import Command, CommandKind
from remediator.domain.models import (
    AuditNote,
    AuditOutcome,
    AuditRecord,
    Identifier,
    RemediationMode,
    dump_json,
)

log = logging.getLogger(__name__)

#: The routes audited (their names are the actions): every one that changes something.
AUDITED = frozenset(
    {
        "remediation.create",
        "remediation.approve",
        "remediation.reject",
        "remediation.cancel",
        "instance.opt_out",
        "instance.opt_in",
        "instance.lift_hold",
        "cluster.pause",
        "cluster.resume",
        "alertmanager.post",
    }
)

_MAX_PATH = 512
_identifier: TypeAdapter[str] = TypeAdapter(Identifier)


class AuditTrail:
    """The middleware, and the topic it writes to (attached once the app declares it)."""

    def __init__(
        self,
        *,
        worker: str,
        clock: Callable[[], datetime],
        timeout: float,
        count: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.worker = worker
        self.clock = clock
        self.timeout = timeout
        self.count = count
        self.topic: faust.TopicT | None = None
        #: Tells the instance's owner about a call, for its timeline (set with the topic).
        self.tell: Callable[[Command], Awaitable[None]] | None = None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        action = request.match_info.route.name
        if action not in AUDITED:
            return await handler(request)
        note = CallNote()
        reset = NOTE.set(note)
        try:
            response = await handler(request)
        except ApiError as exc:
            await self.write(request, note, action, exc.status, exc.name, exc.message)
            raise
        except web.HTTPException as exc:  # aiohttp's own refusals (a body too large)
            status = HTTPStatus(exc.status)
            await self.write(request, note, action, status, "INVALID_ARGUMENT", exc.text)
            raise
        except Exception:  # a bug: the error middleware answers 500
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            await self.write(request, note, action, status, "INTERNAL", None)
            raise
        finally:
            NOTE.reset(reset)
        await self.write(request, note, action, HTTPStatus(response.status), None, None, response)
        return response

    async def write(
        self,
        request: web.Request,
        note: CallNote,
        action: str,
        status: HTTPStatus,
        error: str | None,
        message: str | None,
        response: web.StreamResponse | None = None,
    ) -> None:
        record = self.record(request, note, action, status, error, message, response)
        key = _key(record)
        if self.topic is None:  # pragma: no cover - attached before the web server starts
            log.error("audit (no topic yet): %s", dump_json(record).decode())
            return
        await asyncio.gather(self._publish(record, key), self._note(record))

    async def _note(self, record: AuditRecord) -> None:
        """The call in short to the instance's owner, for its timeline: only calls by a
        known caller (a stranger's 401s must not push real entries out of the bound)."""
        if self.tell is None or record.principal is None:
            return
        if record.cluster_id is None or record.instance_id in (None, "-"):
            return
        command = Command(
            command_id=f"audit/{record.audit_id}",
            kind=CommandKind.AUDIT,
            cluster_id=record.cluster_id,
            instance_id=record.instance_id,
            principal=record.principal,
            issued_at=record.occurred_at,
            audit=AuditNote.of(record),
        )
        try:
            await asyncio.wait_for(self.tell(command), self.timeout)
        except Exception as exc:  # noqa: BLE001 - the timeline only; the topic has it
            log.warning(
                "audit note for %s/%s not sent: %s", record.cluster_id, record.instance_id, exc
            )

    async def _publish(self, record: AuditRecord, key: bytes | None) -> None:
        assert self.topic is not None  # noqa: S101 - checked by write
        try:
            ack = await self.topic.send(key=key, value=dump_json(record))
            await asyncio.wait_for(asyncio.shield(ack), self.timeout)
        except Exception as exc:  # noqa: BLE001 - the call's answer stands; keep the record
            self.count("unacknowledged")
            log.error(
                "audit record not acknowledged (%s: %s): %s",
                type(exc).__name__,
                exc,
                dump_json(record).decode(),
            )
            return
        self.count("written")

    def record(
        self,
        request: web.Request,
        note: CallNote,
        action: str,
        status: HTTPStatus,
        error: str | None,
        message: str | None,
        response: web.StreamResponse | None,
    ) -> AuditRecord:
        caller = note.caller
        match = request.match_info
        outcome = (
            AuditOutcome.OK
            if status < HTTPStatus.BAD_REQUEST
            else AuditOutcome.REFUSED
            if status < HTTPStatus.INTERNAL_SERVER_ERROR
            else AuditOutcome.FAILED
        )
        return AuditRecord(
            audit_id=str(uuid.uuid4()),
            occurred_at=self.clock(),
            principal=caller.principal if caller else None,
            role=caller.role.value if caller else None,
            action=action,
            method=request.method,
            path=request.path[:_MAX_PATH],
            cluster_id=_id(match.get("cluster_id")),
            instance_id=_id(match.get("instance_id")),
            remediation_id=_id(match.get("remediation_id"))
            or _answered_id(response)
            or _id(request.query.get("remediation_id") or request.query.get("request_id")),
            mode=_asked_mode(note.body),
            outcome=outcome,
            status=int(status),
            error=error,
            message=message,
            worker=self.worker,
        )


def _id(value: str | None) -> str | None:
    """An id as the path gave it, if it is a valid one (a refused call may carry anything)."""
    if value is None:
        return None
    try:
        return _identifier.validate_python(value)
    except ValidationError:
        return None


def _answered_id(response: web.StreamResponse | None) -> str | None:
    """The id of the remediation the answer carries (a create without a client id)."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return None
    try:
        body: Any = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return None
    return _id(body.get("id")) if isinstance(body, dict) else None


def _asked_mode(body: object | None) -> RemediationMode | None:
    """The ``mode`` of the body the view accepted, if it has one."""
    mode = getattr(body, "mode", None)
    return mode if isinstance(mode, RemediationMode) else None


def _key(record: AuditRecord) -> bytes | None:
    if record.cluster_id and record.instance_id and record.instance_id != "-":
        return f"{record.cluster_id}/{record.instance_id}".encode()
    return record.cluster_id.encode() if record.cluster_id else None
