"""API errors as the contract spells them: ``{"error": {"code", "status", "message"}}``.

Two additions for the provider's SDK and CLI (``together`` 3.1.1), which this API must
serve unchanged:

- ``x-should-retry: false`` on every 4xx. They are final answers; without the header the
  SDK asks again after a 409 (twice, about 2.5 s per conflict), as it would for a lock
  timeout.
- ``error.type``, a class of error in the SDK's vocabulary (``invalid_request_error``,
  ``authentication_error``, ``service_unavailable_error``, ``server_error``), and, at the
  top level, the same error as a ``google.rpc.Status`` (``code``: the gRPC code number,
  ``message``). The CLI reads an error body as ``{"error": {"message", "type", "code":
  str}}`` or else as ``{"code": int, "message"}``; the contract fixes ``error.code`` as the
  HTTP status, an integer, so only the second form can parse, and the CLI then prints the
  message instead of "Failed" and the raw body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import orjson
from aiohttp import web

from remediator.domain.bounds import clip
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


#: The gRPC code of each status name (google.rpc.Code), for the top-level ``code``.
GRPC_CODES = {
    "INVALID_ARGUMENT": 3,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "FAILED_PRECONDITION": 9,
    "METHOD_NOT_ALLOWED": 12,  # UNIMPLEMENTED: what gRPC gateways answer a 405 with
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
    "PERMISSION_DENIED": 7,
}


def error_type(status: HTTPStatus) -> str:
    """``error.type``: the class of error, in the words the provider's SDK uses."""
    if status == HTTPStatus.UNAUTHORIZED:
        return "authentication_error"
    if status == HTTPStatus.FORBIDDEN:
        return "permission_error"
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        return "service_unavailable_error"
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return "server_error"
    # The SDK treats this one as final; every 4xx here is (bad input, unknown id, conflict).
    return "invalid_request_error"


#: The longest error message answered (a backstop: messages quote input through
#: ``bounds.echo`` already).
MAX_MESSAGE_CHARS = 2000


def error_response(
    status: HTTPStatus, name: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    message = clip(message, MAX_MESSAGE_CHARS)
    body = {
        "error": {
            "code": int(status),
            "status": name,
            "message": message,
            "type": error_type(status),
        },
        "code": GRPC_CODES.get(name, 2),  # 2: UNKNOWN
        "message": message,
    }
    all_headers = dict(headers or {})
    if status < HTTPStatus.INTERNAL_SERVER_ERROR:
        # Final: asking again gets the same answer. (503 is left to the client's retry.)
        all_headers["x-should-retry"] = "false"
    return web.Response(
        body=orjson.dumps(body),
        status=int(status),
        content_type="application/json",
        headers=all_headers,
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
