"""The OpenAPI 3.1 document of the REST API, built from the same models the views use.

Served at ``GET /openapi.json`` and checked in as ``schemas/openapi.json`` (``make schemas``;
a test fails when it drifts).
"""

from __future__ import annotations

import enum
import functools
import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from remediator import __version__
from remediator.api.alertmanager import ALERTMANAGER, MAX_BODY
from remediator.api.alertmanager_mapping import AlertmanagerWebhook, AlertmanagerWebhookResponse
from remediator.api.models import (
    REMEDIATION_ID_PATTERN,
    ApproveBody,
    ClusterSafetyResponse,
    CreateRemediationBody,
    ErrorBody,
    ListClustersResponse,
    ListRemediationsResponse,
    PolicyResponse,
    ReasonBody,
    RejectBody,
    WhoamiResponse,
)
from remediator.api.query import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    ORDER_BY_PATTERN,
    enum_filter_pattern,
)
from remediator.api.views import (
    CLUSTER,
    CLUSTERS,
    COLLECTION,
    INSTANCE,
    POLICY,
    RESOURCE,
    WHOAMI,
)
from remediator.domain.commands import ORDER_BY_ALLOWED
from remediator.domain.models import (
    IDENTIFIER_PATTERN,
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)
from remediator.domain.replies import Explanation

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "INVALID_ARGUMENT: bad JSON, unknown field or enum value, bad id or page token",
        401: "UNAUTHENTICATED: missing or unknown bearer token",
        403: "PERMISSION_DENIED: the token's role lacks the right (viewer: reads; operator: "
        "also create, approve, reject, cancel; admin: also pause, opt-out, holds; webhook: "
        "only the Alertmanager receiver)",
        404: "NOT_FOUND: no such remediation on this instance",
        409: "FAILED_PRECONDITION (move not allowed from the current state) or "
        "ALREADY_EXISTS (idempotency id reused with different content)",
        503: "UNAVAILABLE: the owner of the instance did not answer in time; retry",
    }
    final = {"x-should-retry": {"$ref": "#/components/headers/ShouldRetry"}}
    return {
        str(c): {
            "description": text[c],
            **({"headers": final} if c < 500 else {}),
            **_json(ErrorBody),
        }
        for c in codes
    }


#: On every 4xx (components/headers).
_SHOULD_RETRY = {
    "description": "Always false on a 4xx: the answer is final, asking again gets it again "
    "(the provider's SDK would otherwise retry a 409).",
    "required": True,
    "schema": {"type": "string", "enum": ["false"]},
}


def _path_params(*names: str) -> list[dict[str, Any]]:
    descriptions = {
        "cluster_id": "The cluster; '-' (with instance_id '-') means every cluster (list only).",
        "instance_id": "The instance; '-' means every instance of the cluster (list only).",
        "remediation_id": "The remediation.",
    }
    return [
        {
            "name": n,
            "in": "path",
            "required": True,
            "description": descriptions[n],
            "schema": _PATH_SCHEMAS[n],
        }
        for n in names
    ]


_ID_PATTERN = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": IDENTIFIER_PATTERN}
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "cluster_id": _ID_PATTERN,
    "instance_id": _ID_PATTERN,
    "remediation_id": {
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "pattern": REMEDIATION_ID_PATTERN,
    },
}


def _enum_query(name: str, kind: type[enum.StrEnum]) -> dict[str, Any]:
    values = ", ".join(e.value for e in kind)
    return {
        "name": name,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": f"Only remediations with any of these {name}s: repeat the parameter, "
        f"or join values with commas as the provider's SDK does; empty values are ignored. "
        f"Values: {values}.",
        "schema": {
            "type": "array",
            "items": {"type": "string", "pattern": enum_filter_pattern(kind)},
        },
    }


def _operation(
    summary: str,
    op_id: str,
    ok: type[BaseModel],
    body: type[BaseModel] | None,
    errors: tuple[int, ...],
    params: list[dict[str, Any]],
    *,
    body_required: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": op_id,
        "parameters": params,
        "responses": {"200": {"description": "OK", **_json(ok)}, **_errors(*errors)},
    }
    if body is not None:
        operation["requestBody"] = {"required": body_required, **_json(body)}
    return operation


def build() -> dict[str, Any]:
    """The whole document: the Remediations API, and the Alertmanager webhook."""
    document = _remediations_api()
    _add_alertmanager(document)
    return document


def _remediations_api() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        Remediation,
        ListRemediationsResponse,
        CreateRemediationBody,
        ApproveBody,
        RejectBody,
        ErrorBody,
        Explanation,
        ClusterSafetyResponse,
        ReasonBody,
        ListClustersResponse,
        PolicyResponse,
        WhoamiResponse,
    ]
    _, schemas = models_json_schema(
        [
            (
                m,
                "serialization"
                if m
                in (
                    Remediation,
                    ListRemediationsResponse,
                    ErrorBody,
                    Explanation,
                    ClusterSafetyResponse,
                    ListClustersResponse,
                    PolicyResponse,
                    WhoamiResponse,
                )
                else "validation",
            )
            for m in models
        ],
        ref_template=_REF,
    )
    instance = _path_params("cluster_id", "instance_id")
    cluster = _path_params("cluster_id")
    resource = _path_params("cluster_id", "instance_id", "remediation_id")
    common = (400, 401, 403, 503)
    id_query = [
        {
            "name": "remediation_id",
            "in": "query",
            "required": False,
            "description": "Client-specified ID for idempotency: the same call again returns "
            "the same remediation and creates nothing.",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "pattern": REMEDIATION_ID_PATTERN,
            },
        },
        {
            "name": "request_id",
            "in": "query",
            "required": False,
            "description": "Alias of remediation_id.",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "pattern": REMEDIATION_ID_PATTERN,
            },
        },
    ]
    list_query = [
        _enum_query("state", RemediationState),
        _enum_query("mode", RemediationMode),
        _enum_query("trigger", RemediationTrigger),
        {
            "name": "order_by",
            "in": "query",
            "required": False,
            "description": f"One of: {ORDER_BY_ALLOWED}. Default create_time desc; ties are "
            "broken by id, the same way. A page_token only continues the order it came from.",
            "schema": {"type": "string", "pattern": ORDER_BY_PATTERN},
        },
        {
            "name": "page_size",
            "in": "query",
            "required": False,
            "description": f"Default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE} (larger is "
            "capped, 0 means the default).",
            "schema": {"type": "integer", "minimum": 0},
        },
        {
            "name": "page_token",
            "in": "query",
            "required": False,
            "description": "next_page_token of the previous page.",
            "schema": {"type": "string"},
        },
    ]
    paths = {
        COLLECTION: {
            "post": _operation(
                "Create a remediation (MANUAL, goes straight to PENDING)",
                "createRemediation",
                Remediation,
                CreateRemediationBody,
                (*common, 409),
                instance + id_query,
            ),
            "get": _operation(
                "List remediations (default newest first)",
                "listRemediations",
                ListRemediationsResponse,
                None,
                common,
                instance + list_query,
            ),
        },
        RESOURCE: {
            "get": _operation(
                "Get a remediation", "getRemediation", Remediation, None, (*common, 404), resource
            ),
        },
        RESOURCE + "/approve": {
            "post": _operation(
                "Approve: PENDING_APPROVAL → PENDING, optionally with another mode",
                "approveRemediation",
                Remediation,
                ApproveBody,
                (*common, 404, 409),
                resource,
            ),
        },
        RESOURCE + "/reject": {
            "post": _operation(
                "Reject: PENDING_APPROVAL → CANCELLED",
                "rejectRemediation",
                Remediation,
                RejectBody,
                (*common, 404, 409),
                resource,
            ),
        },
        RESOURCE + "/cancel": {
            "post": _operation(
                "Cancel: PENDING_APPROVAL or PENDING → CANCELLED",
                "cancelRemediation",
                Remediation,
                None,
                (*common, 404, 409),
                resource,
            ),
        },
        INSTANCE + "/explain": {
            "get": _operation(
                "Explain: the instance's signals, the rule that decided (or blocked) each "
                "remediation and why, opt-out, cooldown, debounce",
                "explainInstance",
                Explanation,
                None,
                common,
                instance,
            ),
        },
        INSTANCE + "/opt-out": {
            "put": _operation(
                "Opt the instance out of automated remediation (manual ones stay possible)",
                "optOutInstance",
                Explanation,
                ReasonBody,
                common,
                instance,
                body_required=True,
            ),
            "delete": _operation(
                "Opt the instance back in", "optInInstance", Explanation, None, common, instance
            ),
        },
        INSTANCE + "/hold": {
            "delete": _operation(
                "Lift a HELD_FOR_HUMAN hold, with a reason: remediations carried out so far "
                "no longer count (an addition)",
                "liftHold",
                Explanation,
                ReasonBody,
                common,
                instance,
                body_required=True,
            ),
        },
        CLUSTER + "/safety": {
            "get": _operation(
                "The cluster's safety state: pause, blast-radius count and limit, budget",
                "getClusterSafety",
                ClusterSafetyResponse,
                None,
                common,
                cluster,
            ),
        },
        CLUSTER + "/pause": {
            "put": _operation(
                "Pause automated remediation in the cluster (manual ones stay possible)",
                "pauseCluster",
                ClusterSafetyResponse,
                ReasonBody,
                common,
                cluster,
                body_required=True,
            ),
            "delete": _operation(
                "Resume automated remediation in the cluster",
                "resumeCluster",
                ClusterSafetyResponse,
                None,
                common,
                cluster,
            ),
        },
        CLUSTERS: {
            "get": _operation(
                "List the clusters the service knows, with open remediations by state and "
                "what holds automation back (an addition: the SDK's CLI finds a remediation "
                "through it)",
                "listClusters",
                ListClustersResponse,
                None,
                (401, 403, 503),
                [],
            ),
        },
        POLICY: {
            "get": _operation(
                "The policy in force: its source, the SHA-256 of its text (as the start-up "
                "banner shows it) and the effective rules (an addition)",
                "getPolicy",
                PolicyResponse,
                None,
                (401, 403),
                [],
            ),
        },
        WHOAMI: {
            "get": _operation(
                "The caller, in the provider's SDK shape (an addition: its CLI asks first)",
                "whoami",
                WhoamiResponse,
                None,
                (401,),
                [],
            ),
        },
        "/healthz": {
            "get": {
                "summary": "Readiness: 200 while the worker serves its partitions; 503 with "
                "the reason while it joins its group, recovers its tables or rebalances",
                "operationId": "healthz",
                "security": [],
                "responses": {
                    "200": {"description": "Ready"},
                    "503": {"description": "Not ready; `reason` says why"},
                },
            },
        },
        "/livez": {
            "get": {
                "summary": "Liveness: 200 while the process is up",
                "operationId": "livez",
                "security": [],
                "responses": {"200": {"description": "Alive"}},
            },
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": {"200": {"description": "OK"}},
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format; documentation: Operations, Metrics)",
                "operationId": "metrics",
                "security": [],
                "responses": {"200": {"description": "OK"}},
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Remediations API",
            "version": __version__,
            "description": "Node remediations of a GPU cloud: create, list, get, approve, "
            "reject, cancel. Automated remediations are opened from health signals and wait "
            "for approval.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "headers": {"ShouldRetry": _SHOULD_RETRY},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _add_alertmanager(document: dict[str, Any]) -> None:
    _, schemas = models_json_schema(
        [(AlertmanagerWebhook, "validation"), (AlertmanagerWebhookResponse, "serialization")],
        ref_template=_REF,
    )
    document["components"]["schemas"].update(schemas["$defs"])
    document["paths"][ALERTMANAGER] = {"post": _alertmanager_operation()}


def _alertmanager_operation() -> dict[str, Any]:
    operation = _operation(
        "Alertmanager webhook receiver: each alert becomes a passive health-check event",
        "receiveAlertmanagerNotification",
        AlertmanagerWebhookResponse,
        AlertmanagerWebhook,
        (400, 401, 403),
        [],
        body_required=True,
    )
    operation["description"] = (
        "Point a `webhook_config` of Prometheus Alertmanager here (payload version 4), with "
        "`http_config.authorization` carrying one of the API's bearer tokens. Each alert is "
        "produced to the passive-health-check-events topic, keyed by instance id; an alert "
        "that cannot be mapped (missing label, bad timestamp) goes to the dead-letter topic "
        "with the reason, and the rest still go through. 200 once the broker has "
        f"acknowledged every message; bodies up to {MAX_BODY} bytes."
    )
    operation["responses"]["400"]["description"] = (
        "INVALID_ARGUMENT: not an Alertmanager webhook payload (bad JSON, wrong shape or "
        "JSON types) or too large; nothing of it was produced"
    )
    operation["responses"]["503"] = {
        "description": "UNAVAILABLE: the broker did not acknowledge in time; Alertmanager "
        "retries (repeats are harmless: an alert occurrence always has the same event_id)",
        **_json(ErrorBody),
    }
    return operation


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@functools.cache
def document_bytes() -> bytes:
    return render().encode()
