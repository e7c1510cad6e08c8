"""Who is calling, and what they may do: bearer tokens with roles.

Each token of ``REMEDIATOR_API_TOKENS`` (or ``REMEDIATOR_API_TOKENS_FILE``) belongs to a
principal and, since 0.5, a role. The roles nest, except ``webhook``, which stands alone so
that the token Alertmanager posts with can do nothing else:

======== ============================================================================
viewer   reads: remediations, explain, safety, the policy, clusters, the transition
         stream, the dashboard (read-only)
operator a viewer who may also create, approve, reject and cancel
admin    an operator who may also pause and resume a cluster, opt instances out and
         in, and lift holds
webhook  only ``POST /v1/alertmanager``
======== ============================================================================

An entry without a role (``principal=token``, the only form before 0.5) has every right,
so a deployment that upgrades keeps working; the start-up banner says which principals
have no role. A right the role lacks is a 403 ``PERMISSION_DENIED``.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web

from remediator.api.errors import ApiError


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    WEBHOOK = "webhook"
    #: An entry written without a role: every right, as before roles existed.
    UNRESTRICTED = "unrestricted"


class Right(enum.StrEnum):
    READ = "read"
    OPERATE = "operate"  # create, approve, reject, cancel
    ADMINISTER = "administer"  # pause/resume, opt-out/in, lift a hold
    WEBHOOK = "webhook"  # post Alertmanager notifications


RIGHTS: Mapping[Role, frozenset[Right]] = {
    Role.VIEWER: frozenset({Right.READ}),
    Role.OPERATOR: frozenset({Right.READ, Right.OPERATE}),
    Role.ADMIN: frozenset({Right.READ, Right.OPERATE, Right.ADMINISTER}),
    Role.WEBHOOK: frozenset({Right.WEBHOOK}),
    Role.UNRESTRICTED: frozenset(Right),
}

#: The roles a setting entry may name (``unrestricted`` is written by leaving it out).
NAMED_ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.WEBHOOK)


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the principal that records name, and its role."""

    principal: str
    role: Role

    def may(self, right: Right) -> bool:
        return right in RIGHTS[self.role]


def roles_with(right: Right) -> list[Role]:
    """The named roles that hold ``right`` (for the 403's message)."""
    return [role for role in NAMED_ROLES if right in RIGHTS[role]]


@dataclass(slots=True)
class CallNote:
    """What the audit trail learns about a call while a view handles it: the caller once
    authenticated, the body once accepted. The trail's middleware opens one per audited
    call (a context variable: the middleware and the view run in the same task)."""

    caller: Caller | None = None
    body: object | None = None


NOTE: ContextVar[CallNote | None] = ContextVar("remediator_call_note", default=None)


class Authenticator:
    """Finds the caller of a request from its bearer token, and checks a right."""

    def __init__(self, tokens: Mapping[str, Caller]) -> None:
        self._tokens = [(token.encode(), caller) for token, caller in tokens.items()]

    def caller(self, request: web.Request) -> Caller:
        """The caller, or a 401 ``UNAUTHENTICATED``."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                HTTPStatus.UNAUTHORIZED,
                "UNAUTHENTICATED",
                "missing credentials: send Authorization: Bearer <token>",
            )
        # aiohttp keeps undecodable header bytes as surrogates: compare the bytes as sent
        # (a plain encode() raised, and a non-UTF-8 token was a 500).
        presented = token.strip().encode("utf-8", "surrogateescape")
        found = None
        # Every candidate is compared, in constant time each: how long the answer takes
        # says nothing about which token came close.
        for candidate, caller in self._tokens:
            if hmac.compare_digest(candidate, presented):
                found = caller
        if found is None:
            raise ApiError(HTTPStatus.UNAUTHORIZED, "UNAUTHENTICATED", "invalid token")
        if (note := NOTE.get()) is not None:
            note.caller = found
        return found

    def require(self, request: web.Request, right: Right, action: str) -> Caller:
        """The caller if its role holds ``right``; else a 403 ``PERMISSION_DENIED``."""
        caller = self.caller(request)
        if not caller.may(right):
            needed = " or ".join(role.value for role in roles_with(right))
            raise ApiError(
                HTTPStatus.FORBIDDEN,
                "PERMISSION_DENIED",
                f"{caller.principal} has the role {caller.role.value}, which may not "
                f"{action}: that needs the role {needed}",
            )
        return caller
