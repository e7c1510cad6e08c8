"""The REST views. Thin: authenticate, validate, build a command, ask its owner, answer.

No view touches a table. Every read and every change goes to the agent that owns the
instance's partition through the :class:`Gateway`, whichever worker took the request, so
two workers answer the same way and concurrent changes are applied one after the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from remediator import __version__
from remediator.api import paging, query
from remediator.api.auth import NOTE, Authenticator, Caller, Right
from remediator.api.errors import ApiError
from remediator.api.models import (
    ApproveBody,
    CancelBody,
    ClusterSafetyResponse,
    CreateRemediationBody,
    ListClustersResponse,
    ListRemediationsResponse,
    PolicyResponse,
    ReasonBody,
    RejectBody,
    RemediationId,
    WhoamiAPIKey,
    WhoamiOrganization,
    WhoamiProject,
    WhoamiResponse,
)
from remediator.domain import ids
from remediator.domain.bounds import echo
from remediator.domain.commands import EVERYWHERE, Command, CommandKind, merge_pages
from remediator.domain.models import (
    Identifier,
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)
from remediator.domain.policy import PolicyInForce, load_policy_in_force
from remediator.domain.replies import Reply
from remediator.pipeline.gateway import Gateway, GatewayTimeout, new_command_id
from remediator.pipeline.messages import Route

BASE = "/v1/compute"
INSTANCE = BASE + "/clusters/{cluster_id}/instances/{instance_id}"
COLLECTION = INSTANCE + "/remediations"
RESOURCE = COLLECTION + "/{remediation_id}"
CLUSTERS = BASE + "/clusters"
POLICY = BASE + "/policy"
CLUSTER = CLUSTERS + "/{cluster_id}"
#: Outside the base path, where the provider's SDK asks it (``client.whoami()``).
WHOAMI = "/v3/whoami"
#: The path's wildcard: every instance of a cluster, or (as cluster_id, with instance_id
#: ``-`` too) every cluster, when listing.
ALL_INSTANCES = "-"

B = TypeVar("B", bound=BaseModel)

_identifier: TypeAdapter[str] = TypeAdapter(Identifier)
_remediation_id: TypeAdapter[str] = TypeAdapter(RemediationId)


def _check(adapter: TypeAdapter[str], name: str, value: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        raise ApiError.invalid(f"{name} {echo(value)} is not valid") from None


class Api:
    """Request handling, independent of the web framework's routing."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        tokens: Mapping[str, Caller],
        clock: Callable[[], datetime],
        unready: Callable[[], str | None],
        owned: Callable[[], list[int]],
        app_id: str,
        openapi: Callable[[], bytes],
        executing: Callable[[], list[str]] = list,
        policy: PolicyInForce | None = None,
    ) -> None:
        self.gateway = gateway
        self.auth = Authenticator(tokens)
        self.clock = clock
        self.unready = unready
        self.owned = owned
        self.app_id = app_id
        self.openapi = openapi
        self.executing = executing
        self.policy = policy or load_policy_in_force(None)

    # --- plumbing -------------------------------------------------------------------

    def principal(self, request: web.Request) -> str:
        """Any authenticated caller's principal (whoami; every role may ask it)."""
        return self.auth.caller(request).principal

    def allowed(self, request: web.Request, right: Right, action: str) -> str:
        """The caller's principal if its role holds ``right``; else 401 or 403."""
        return self.auth.require(request, right, action).principal

    def authorizer(self, right: Right, action: str) -> Callable[[web.Request], str]:
        """:meth:`allowed` for one right, for the views outside this class."""
        return lambda request: self.allowed(request, right, action)

    @staticmethod
    async def body(request: web.Request, model: type[B]) -> B:
        raw = await request.read()
        if not raw.strip():
            raw = b"{}"
        try:
            body = model.model_validate_json(raw)
        except ValidationError as exc:
            raise ApiError.invalid(_describe(exc)) from None
        if (note := NOTE.get()) is not None:
            note.body = body  # the audit trail records the mode asked for
        return body

    @staticmethod
    def ok(model: BaseModel) -> web.Response:
        return web.Response(
            body=model.__pydantic_serializer__.to_json(model), content_type="application/json"
        )

    def command(
        self, request: web.Request, kind: CommandKind, principal: str, **fields: Any
    ) -> Command:
        cluster_id = _check(_identifier, "cluster_id", request.match_info["cluster_id"])
        instance_id = request.match_info["instance_id"]
        if instance_id == ALL_INSTANCES and kind is not CommandKind.LIST:
            raise ApiError.invalid("instance_id '-' (all instances) is only allowed when listing")
        if cluster_id == ALL_INSTANCES:
            if instance_id != ALL_INSTANCES:
                raise ApiError.invalid(
                    "cluster_id '-' (every cluster) is only allowed with instance_id '-'"
                )
            cluster_id = EVERYWHERE
        if instance_id != ALL_INSTANCES:
            _check(_identifier, "instance_id", instance_id)
        if "remediation_id" in request.match_info:
            fields["remediation_id"] = _check(
                _remediation_id, "remediation_id", request.match_info["remediation_id"]
            )
        return Command(
            command_id=new_command_id(),
            kind=kind,
            cluster_id=cluster_id,
            instance_id=instance_id if instance_id != ALL_INSTANCES else "*",
            principal=principal,
            issued_at=self.clock(),
            **fields,
        )

    async def ask(self, command: Command, route: Route = Route.INSTANCE) -> Remediation:
        reply = await self._ask(command, route)
        if reply.remediation is None:  # pragma: no cover - every ok answer carries a record
            raise ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL", "empty answer")
        return reply.remediation

    async def _ask(self, command: Command, route: Route = Route.INSTANCE) -> Reply:
        try:
            reply = await self.gateway.ask(command, route)
        except GatewayTimeout as exc:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE", f"{exc}; retry") from None
        if reply.error_code is not None:
            raise ApiError.from_code(reply.error_code, reply.error_message or "")
        return reply

    # --- endpoints ------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        """Readiness: 200 while the worker serves its partitions, 503 with the reason
        while it joins its group, recovers its tables or rebalances."""
        reason = self.unready()
        body = {
            "status": "ok" if reason is None else "unavailable",
            "app_id": self.app_id,
            "version": __version__,
            # Assigned, recovered, not rebalancing: serving its partitions right now.
            "ready": reason is None,
            "reason": reason,
            # The inbox partitions (so the clusters) this worker owns at the moment.
            "partitions": self.owned(),
            # Remediations this worker is carrying out through the control plane now.
            "executing": self.executing(),
        }
        return web.Response(
            status=HTTPStatus.OK if reason is None else HTTPStatus.SERVICE_UNAVAILABLE,
            body=orjson.dumps(body),
            content_type="application/json",
        )

    async def livez(self, request: web.Request) -> web.Response:
        """Liveness: the process is up and its web server answers (restart it if not)."""
        body = {"status": "ok", "app_id": self.app_id, "version": __version__}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def openapi_document(self, request: web.Request) -> web.Response:
        return web.Response(body=self.openapi(), content_type="application/json")

    async def create(self, request: web.Request) -> web.Response:
        caller = self.auth.require(request, Right.OPERATE, "create remediations")
        body = await self.body(request, CreateRemediationBody)
        client_id = request.query.get("remediation_id") or request.query.get("request_id")
        if client_id is not None:
            client_id = _check(_remediation_id, "remediation_id", client_id)
            if ids.has_automated_form(client_id):
                raise ApiError(
                    HTTPStatus.CONFLICT,
                    "ALREADY_EXISTS",
                    f"remediation_id {client_id!r} has the form of an automated "
                    "remediation's id (a UUID version 5), which may be in use on any "
                    "instance: choose another form, e.g. a UUID version 4",
                )
        command = self.command(
            request,
            CommandKind.CREATE,
            caller.principal,
            role=caller.role.value,
            remediation_id=client_id,
            mode=body.mode,
            reason=body.reason,
        )
        route = Route.CLAIM if client_id is not None else Route.INSTANCE
        return self.ok(await self.ask(command, route))

    async def get(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.READ, "read remediations")
        return self.ok(await self.ask(self.command(request, CommandKind.GET, principal)))

    async def approve(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.OPERATE, "approve remediations")
        body = await self.body(request, ApproveBody)
        command = self.command(
            request, CommandKind.APPROVE, principal, comment=body.comment, mode=body.mode
        )
        return self.ok(await self.ask(command))

    async def reject(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.OPERATE, "reject remediations")
        body = await self.body(request, RejectBody)
        command = self.command(request, CommandKind.REJECT, principal, comment=body.comment)
        return self.ok(await self.ask(command))

    async def cancel(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.OPERATE, "cancel remediations")
        await self.body(request, CancelBody)
        return self.ok(await self.ask(self.command(request, CommandKind.CANCEL, principal)))

    async def list_remediations(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.READ, "read remediations")
        params = request.query
        states = query.enum_filter(params.getall("state", []), RemediationState, "state")
        modes = query.enum_filter(params.getall("mode", []), RemediationMode, "mode")
        triggers = query.enum_filter(params.getall("trigger", []), RemediationTrigger, "trigger")
        order = query.order_by(params.getall("order_by", []))
        page_size = query.page_size(params.get("page_size"))
        scope = paging.fingerprint(
            f"{request.match_info['cluster_id']}/{request.match_info['instance_id']}",
            [f"state={s}" for s in states]
            + [f"mode={m}" for m in modes]
            + [f"trigger={t}" for t in triggers],
            order,
        )
        token = params.get("page_token", "")
        after = paging.decode(token, scope) if token else None
        command = self.command(
            request,
            CommandKind.LIST,
            principal,
            states=states,
            modes=modes,
            triggers=triggers,
            order=order,
            after=after,
            limit=page_size + 1,
        )
        if command.instance_id == EVERYWHERE:
            # Each partition answers its best page_size + 1; the page is the best of those.
            replies = await self._scan(command)
        else:
            replies = [await self._ask(command)]
        # A reply may be cut short to fit its byte budget: the page then ends early.
        page, more = merge_pages(
            [(reply.remediations or [], reply.truncated) for reply in replies], order, page_size
        )
        return self.ok(
            ListRemediationsResponse(
                remediations=page,
                has_next=more,
                next_page_token=paging.encode(page[-1], scope, order) if more and page else "",
            )
        )

    async def _scan(self, command: Command) -> list[Reply]:
        try:
            replies = await self.gateway.scan(command)
        except GatewayTimeout as exc:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE", f"{exc}; retry") from None
        for reply in replies:
            if reply.error_code is not None:  # pragma: no cover - scans answer no errors
                raise ApiError.from_code(reply.error_code, reply.error_message or "")
        return replies

    # --- the provider's SDK and CLI: whoami, clusters (additions) ----------------------

    async def whoami(self, request: web.Request) -> web.Response:
        """The caller, in the SDK's ``project_api_key`` shape: the SDK's CLI asks this
        before every command and takes ``project.id`` as its project."""
        caller = self.auth.caller(request)
        principal = caller.principal
        slug = re.sub(r"[^a-z0-9-]+", "-", self.app_id.lower()).strip("-") or "remediator"
        return self.ok(
            WhoamiResponse(
                api_key=WhoamiAPIKey(id=principal),
                organization=WhoamiOrganization(id=self.app_id, name=self.app_id),
                project=WhoamiProject(id=self.app_id, name=self.app_id, slug=slug),
                principal=principal,
                role=caller.role.value,
            )
        )

    async def list_clusters(self, request: web.Request) -> web.Response:
        """Every cluster the service knows: asked of every partition's owner, like a
        cluster-wide list (the SDK's CLI finds a remediation's cluster and instance so)."""
        principal = self.allowed(request, Right.READ, "list clusters")
        command = Command(
            command_id=new_command_id(),
            kind=CommandKind.CLUSTERS,
            cluster_id=EVERYWHERE,
            instance_id=EVERYWHERE,
            principal=principal,
            issued_at=self.clock(),
        )
        replies = await self._scan(command)
        clusters = sorted(
            (c for reply in replies for c in reply.clusters or []), key=lambda c: c.cluster_id
        )
        return self.ok(ListClustersResponse(clusters=clusters))

    async def policy_in_force(self, request: web.Request) -> web.Response:
        """The policy this worker runs: its source, the hash the banner shows, the rules."""
        self.allowed(request, Right.READ, "read the policy")
        policy = self.policy
        return self.ok(
            PolicyResponse(
                source=policy.source,
                sha256=policy.sha256,
                policy=policy.policy.model_dump(mode="json"),
            )
        )

    # --- policy: explain, opt-out, cluster safety and pause (additions) ----------------

    async def explain(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.READ, "read explanations")
        reply = await self._ask(self.command(request, CommandKind.EXPLAIN, principal))
        return self._explanation(reply)

    async def opt_out(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.ADMINISTER, "opt instances out")
        body = await self.body(request, ReasonBody)
        command = self.command(request, CommandKind.OPT_OUT, principal, reason=body.reason)
        return self._explanation(await self._ask(command))

    async def opt_in(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.ADMINISTER, "opt instances back in")
        return self._explanation(
            await self._ask(self.command(request, CommandKind.OPT_IN, principal))
        )

    async def lift_hold(self, request: web.Request) -> web.Response:
        """Lift a HELD_FOR_HUMAN hold (an addition): the remediations carried out so far
        stop counting, so the next failing signal may open one again."""
        principal = self.allowed(request, Right.ADMINISTER, "lift holds")
        body = await self.body(request, ReasonBody)
        command = self.command(request, CommandKind.LIFT_HOLD, principal, reason=body.reason)
        return self._explanation(await self._ask(command))

    def _explanation(self, reply: Reply) -> web.Response:
        if reply.explanation is None:  # pragma: no cover - every ok answer carries one
            raise ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL", "empty answer")
        return self.ok(reply.explanation)

    def cluster_command(
        self, request: web.Request, kind: CommandKind, principal: str, **fields: Any
    ) -> Command:
        cluster_id = _check(_identifier, "cluster_id", request.match_info["cluster_id"])
        if cluster_id == ALL_INSTANCES:
            raise ApiError.invalid("cluster_id '-' (every cluster) is only allowed when listing")
        return Command(
            command_id=new_command_id(),
            kind=kind,
            cluster_id=cluster_id,
            instance_id=ALL_INSTANCES,
            principal=principal,
            issued_at=self.clock(),
            **fields,
        )

    async def safety(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.READ, "read a cluster's safety state")
        command = self.cluster_command(request, CommandKind.SAFETY, principal)
        return self._safety(await self._ask(command, Route.CLUSTER))

    async def pause(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.ADMINISTER, "pause clusters")
        body = await self.body(request, ReasonBody)
        command = self.cluster_command(request, CommandKind.PAUSE, principal, reason=body.reason)
        return self._safety(await self._ask(command, Route.CLUSTER))

    async def unpause(self, request: web.Request) -> web.Response:
        principal = self.allowed(request, Right.ADMINISTER, "resume clusters")
        command = self.cluster_command(request, CommandKind.RESUME, principal)
        return self._safety(await self._ask(command, Route.CLUSTER))

    def _safety(self, reply: Reply) -> web.Response:
        if reply.safety is None:  # pragma: no cover - every ok answer carries one
            raise ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL", "empty answer")
        return self.ok(ClusterSafetyResponse.model_validate(reply.safety.model_dump()))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/livez", self.livez),
            web.get("/openapi.json", self.openapi_document),
            web.get(WHOAMI, self.whoami),
            web.get(CLUSTERS, self.list_clusters),
            web.get(POLICY, self.policy_in_force),
            web.post(COLLECTION, self.create, name="remediation.create"),
            web.get(COLLECTION, self.list_remediations),
            web.get(RESOURCE, self.get),
            web.post(RESOURCE + "/approve", self.approve, name="remediation.approve"),
            web.post(RESOURCE + "/reject", self.reject, name="remediation.reject"),
            web.post(RESOURCE + "/cancel", self.cancel, name="remediation.cancel"),
            web.get(INSTANCE + "/explain", self.explain),
            web.put(INSTANCE + "/opt-out", self.opt_out, name="instance.opt_out"),
            web.delete(INSTANCE + "/opt-out", self.opt_in, name="instance.opt_in"),
            web.delete(INSTANCE + "/hold", self.lift_hold, name="instance.lift_hold"),
            web.get(CLUSTER + "/safety", self.safety),
            web.put(CLUSTER + "/pause", self.pause, name="cluster.pause"),
            web.delete(CLUSTER + "/pause", self.unpause, name="cluster.resume"),
        ]


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in error["loc"])
        message = error["msg"]
        if error["type"] == "json_invalid":
            message = "request body is not valid JSON"
        parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts)
