"""The list endpoint's query as the provider's SDK sends it: comma-joined filters, order_by,
page tokens bound to their list; and the error answers the SDK and its CLI understand."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import timedelta
from http import HTTPStatus

import httpx
import orjson
import pytest
from together import APIStatusError
from together.lib.cli.utils._api_error import parse_api_error

from remediator.api import paging, query
from remediator.api.errors import ApiError, error_response
from remediator.api.models import ErrorBody
from remediator.domain.commands import DEFAULT_ORDER, Order
from remediator.domain.models import (
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)
from tests.builders import T0

S = RemediationState


def refusal(call: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as refused:
        call()
    assert refused.value.status == HTTPStatus.BAD_REQUEST
    assert refused.value.name == "INVALID_ARGUMENT"
    return refused.value


# --- filters --------------------------------------------------------------------------


def test_a_filter_takes_comma_joined_values_as_the_sdk_sends_them() -> None:
    assert query.enum_filter(["PENDING,RUNNING"], S, "state") == {S.PENDING, S.RUNNING}


def test_a_filter_takes_repeated_values_and_both_forms_combined() -> None:
    assert query.enum_filter(["PENDING", "RUNNING"], S, "state") == {S.PENDING, S.RUNNING}
    assert query.enum_filter(["PENDING,RUNNING", "FAILED"], S, "state") == {
        S.PENDING,
        S.RUNNING,
        S.FAILED,
    }


def test_an_empty_filter_value_or_item_is_no_filter() -> None:
    """The SDK sends an empty list as ``state=``."""
    assert query.enum_filter([""], S, "state") == frozenset()
    assert query.enum_filter([], S, "state") == frozenset()
    assert query.enum_filter([",PENDING,,", ""], S, "state") == {S.PENDING}


def test_an_unknown_filter_value_is_a_400_naming_the_allowed_values() -> None:
    error = refusal(lambda: query.enum_filter(["PENDING,SLEEPING"], S, "state"))
    assert (
        "state 'SLEEPING' is not one of: PENDING_APPROVAL, PENDING, QUARANTINING" in error.message
    )
    error = refusal(lambda: query.enum_filter(["pending"], S, "state"))
    assert "'pending'" in error.message
    refusal(lambda: query.enum_filter(["PENDING, RUNNING"], S, "state"))  # no padding


@pytest.mark.parametrize(
    "value",
    ["", "PENDING", "PENDING,RUNNING", ",PENDING,,", "SLEEPING", "PENDING, RUNNING", "pending,"],
)
def test_the_openapi_pattern_of_a_filter_accepts_what_the_parser_accepts(value: str) -> None:
    accepted = True
    try:
        query.enum_filter([value], S, "state")
    except ApiError:
        accepted = False
    assert bool(re.fullmatch(query.enum_filter_pattern(S), value)) == accepted


# --- order_by ---------------------------------------------------------------------------


def test_order_by_absent_or_empty_is_newest_created_first() -> None:
    assert query.order_by([]) == DEFAULT_ORDER
    assert query.order_by([""]) == DEFAULT_ORDER
    assert str(DEFAULT_ORDER) == "create_time desc"


def test_order_by_reads_field_and_direction() -> None:
    assert str(query.order_by(["update_time asc"])) == "update_time asc"
    assert str(query.order_by(["create_time"])) == "create_time desc"


def test_a_bogus_order_by_is_a_400_naming_the_allowed_values() -> None:
    error = refusal(lambda: query.order_by(["priority desc"]))
    assert error.message == (
        "order_by 'priority desc' is not one of: create_time, create_time asc, "
        "create_time desc, update_time, update_time asc, update_time desc"
    )


def test_order_by_given_twice_is_a_400() -> None:
    refusal(lambda: query.order_by(["create_time", "update_time"]))


@pytest.mark.parametrize(
    "value", ["", "create_time", "update_time asc", "update_time  asc", "id", "create_time ASC"]
)
def test_the_openapi_pattern_of_order_by_accepts_what_the_parser_accepts(value: str) -> None:
    accepted = True
    try:
        query.order_by([value])
    except ApiError:
        accepted = False
    assert bool(re.fullmatch(query.ORDER_BY_PATTERN, value)) == accepted


# --- page tokens ------------------------------------------------------------------------


def remediation(rid: str) -> Remediation:
    return Remediation(
        id=rid,
        cluster_id="c1",
        instance_id="i1",
        mode=RemediationMode.VM_ONLY,
        trigger=RemediationTrigger.MANUAL,
        state=S.PENDING,
        requested_by="alice",
        create_time=T0,
        update_time=T0 + timedelta(minutes=7),
    )


def test_a_page_token_continues_its_own_list_in_its_own_order() -> None:
    order = Order.parse("update_time asc")
    scope = paging.fingerprint("c1/-", ["state=PENDING"], order)
    cursor = paging.decode(paging.encode(remediation("r1"), scope, order), scope)
    assert (cursor.time, cursor.id) == (T0 + timedelta(minutes=7), "r1")


def test_a_page_token_from_another_order_is_a_400() -> None:
    asc = Order.parse("create_time asc")
    token = paging.encode(remediation("r1"), paging.fingerprint("c1/-", [], asc), asc)
    for other in ("create_time desc", "update_time asc", "update_time desc"):
        scope = paging.fingerprint("c1/-", [], Order.parse(other))
        error = refusal(lambda scope=scope: paging.decode(token, scope))
        assert "different list" in error.message


def test_a_page_token_from_other_filters_or_another_path_is_a_400() -> None:
    token = paging.encode(remediation("r1"), paging.fingerprint("c1/-", ["state=PENDING"]))
    refusal(lambda: paging.decode(token, paging.fingerprint("c1/-", ["state=FAILED"])))
    refusal(lambda: paging.decode(token, paging.fingerprint("c1/-", [])))
    refusal(lambda: paging.decode(token, paging.fingerprint("c2/-", ["state=PENDING"])))


def test_filters_in_any_form_or_order_and_the_explicit_default_order_are_the_same_list() -> None:
    a = paging.fingerprint("c1/-", ["state=PENDING", "mode=M"])
    b = paging.fingerprint("c1/-", ["mode=M", "state=PENDING"], Order.parse("create_time desc"))
    assert a == b


def test_a_page_token_of_the_previous_version_still_reads() -> None:
    """Before order_by, a token's cursor was ``{"create_time", "id"}``."""
    scope = paging.fingerprint("c1/-", [])
    raw = orjson.dumps({"c": {"create_time": "2026-11-24T12:00:00Z", "id": "r1"}, "f": scope})
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert paging.decode(token, scope).id == "r1"


# --- errors -----------------------------------------------------------------------------


def body_and_headers(status: HTTPStatus, name: str) -> tuple[dict[str, object], httpx.Headers]:
    response = error_response(status, name, "cannot approve remediation r1: it is PENDING")
    assert response.body is not None
    assert isinstance(response.body, bytes)
    return orjson.loads(response.body), httpx.Headers(dict(response.headers))


def test_an_error_keeps_the_contracts_fields_and_adds_type_and_a_google_rpc_status() -> None:
    body, _ = body_and_headers(HTTPStatus.CONFLICT, "FAILED_PRECONDITION")
    assert body == {
        "error": {
            "code": 409,
            "status": "FAILED_PRECONDITION",
            "message": "cannot approve remediation r1: it is PENDING",
            "type": "invalid_request_error",
        },
        "code": 9,
        "message": "cannot approve remediation r1: it is PENDING",
    }
    ErrorBody.model_validate(body)


@pytest.mark.parametrize(
    ("status", "name", "grpc", "kind"),
    [
        (HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", 3, "invalid_request_error"),
        (HTTPStatus.UNAUTHORIZED, "UNAUTHENTICATED", 16, "authentication_error"),
        (HTTPStatus.NOT_FOUND, "NOT_FOUND", 5, "invalid_request_error"),
        (HTTPStatus.METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", 12, "invalid_request_error"),
        (HTTPStatus.CONFLICT, "ALREADY_EXISTS", 6, "invalid_request_error"),
        (HTTPStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE", 14, "service_unavailable_error"),
        (HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL", 13, "server_error"),
    ],
)
def test_every_error_has_its_type_and_grpc_code(
    status: HTTPStatus, name: str, grpc: int, kind: str
) -> None:
    body, _ = body_and_headers(status, name)
    assert body["code"] == grpc
    assert isinstance(body["error"], dict)
    assert body["error"]["type"] == kind


@pytest.mark.parametrize("status", [400, 401, 404, 405, 409])
def test_a_4xx_tells_the_sdk_not_to_retry(status: int) -> None:
    _, headers = body_and_headers(HTTPStatus(status), "X")
    assert headers["x-should-retry"] == "false"


def test_a_503_leaves_the_retry_to_the_sdk() -> None:
    """The owner did not answer in time: asking again is right (with the same id)."""
    _, headers = body_and_headers(HTTPStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE")
    assert "x-should-retry" not in headers


def test_the_sdks_cli_reads_the_message_of_an_error() -> None:
    """The CLI prints the message it parses; an unparsable body makes it print "Failed"."""
    body, _ = body_and_headers(HTTPStatus.CONFLICT, "FAILED_PRECONDITION")
    request = httpx.Request("POST", "http://remediator/v1/compute/x")
    error = APIStatusError("409", response=httpx.Response(409, request=request), body=body)
    message, _dump = parse_api_error(error)
    assert message == "cannot approve remediation r1: it is PENDING"
