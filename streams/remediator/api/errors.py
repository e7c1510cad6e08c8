"""API errors as the contract spells them: ``{"error": {"code", "status", "message"}}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import orjson
from aiohttp import web

from remediator.domain.replies import ErrorCode

log = logging.getLogger(__name__)

STATUS_FOR_CODE = {
    ErrorCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    ErrorCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorCode.FAILED_PRECONDITION: HTTPStatus.CONFLICT,
    ErrorCode.ALREADY_EXISTS: HTTPStatus.CONFLICT,
}


class ApiError(Exception):
    """An answer that is an error. ``status`` is the HTTP status, ``name`` the contract's."""

    def __init__(self, status: HTTPStatus, name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message

    @classmethod
    def invalid(cls, message: str) -> ApiError:
        return cls(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", message)

    @classmethod
    def from_code(cls, code: ErrorCode, message: str) -> ApiError:
        return cls(STATUS_FOR_CODE[code], code.value, message)


def error_response(
    status: HTTPStatus, name: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": int(status), "status": name, "message": message}}
    return web.Response(
        body=orjson.dumps(body),
        status=int(status),
        content_type="application/json",
        headers=headers,
    )


_HTTP_NAMES = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    401: "UNAUTHENTICATED",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def contract_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves in the contract's shape: ours, aiohttp's (404, 405, 413), and bugs."""
    try:
        return await handler(request)
    except ApiError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == HTTPStatus.UNAUTHORIZED else None
        return error_response(exc.status, exc.name, exc.message, headers)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(
            HTTPStatus.BAD_REQUEST,
            "INVALID_ARGUMENT",
            f"request body is larger than {exc.max_size} bytes"
            if hasattr(exc, "max_size")
            else "request body is too large",
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        status = HTTPStatus(exc.status)
        name = _HTTP_NAMES.get(exc.status, "INVALID_ARGUMENT" if exc.status < 500 else "INTERNAL")
        message = (
            f"no such resource: {request.method} {request.path}"
            if exc.status == 404
            else (exc.reason or status.phrase)
        )
        allow = exc.headers.get("Allow")  # RFC 9110: a 405 lists what is allowed
        return error_response(status, name, message, {"Allow": allow} if allow else None)
    except Exception:  # a bug: log it whole, answer without the stack trace
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL", "internal error")
