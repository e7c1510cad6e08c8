"""POST /v1/alertmanager on an in-process web app with a fake producer: auth, request
errors in the contract's shape, dead letters, and 200 only after every ack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from remediator.api import alertmanager
from remediator.api.alertmanager import ALERTMANAGER, SOURCE, AlertmanagerReceiver, Message
from remediator.api.alertmanager_mapping import LabelNames
from remediator.api.auth import Caller, Role
from remediator.api.errors import contract_errors
from remediator.api.views import Api
from remediator.app import MAX_REQUEST_BODY

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
NOW = datetime(2026, 11, 24, 12, 5, tzinfo=UTC)
AUTH = {"Authorization": "Bearer am-token"}


class FakeProducer:
    """Records what was produced; can fail or hang like a broker that is away."""

    def __init__(self) -> None:
        self.events: list[Message] = []
        self.dead_letters: list[Message] = []
        self.fail: Exception | None = None
        self.hang = False
        self.released = asyncio.Event()

    async def __call__(self, events: Sequence[Message], dead_letters: Sequence[Message]) -> None:
        if self.hang:
            await self.released.wait()
        if self.fail is not None:
            raise self.fail
        self.events.extend(events)
        self.dead_letters.extend(dead_letters)


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
async def client(producer: FakeProducer) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    api = Api(
        gateway=None,  # type: ignore[arg-type]  # authentication needs no gateway
        tokens={"am-token": Caller("alertmanager", Role.UNRESTRICTED)},
        clock=lambda: NOW,
        unready=lambda: None,
        owned=list,
        app_id="test",
        openapi=lambda: b"{}",
    )
    receiver = AlertmanagerReceiver(
        authenticate=api.principal,
        publish=producer,
        labels=LabelNames(),
        clock=lambda: NOW,
        timeout=0.2,
        max_event_bytes=EVENT_LIMIT,
    )
    # As the worker builds it: the contract's error middleware, the REST API's body limit.
    app = web.Application(middlewares=[contract_errors], client_max_size=MAX_REQUEST_BODY)
    app.add_routes(receiver.routes())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    producer.released.set()  # a hung delivery finishes, not left pending


#: REMEDIATOR_MAX_INPUT_BYTES of these tests: the sample's events are well below it.
EVENT_LIMIT = 4096


def sample() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((DATA_DIR / "alertmanager-webhook.json").read_bytes())
    return data


async def post(client: TestClient[Any, Any], body: Any, **headers: str) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post(ALERTMANAGER, data=raw, headers={**AUTH, **headers})
    return response.status, orjson.loads(await response.read())


def assert_error(body: Any, code: int, status: str) -> str:
    # The contract's object, plus its google.rpc.Status form for the SDK's CLI.
    assert set(body) == {"error", "code", "message"}
    assert (body["error"]["code"], body["error"]["status"]) == (code, status)
    message: str = body["error"]["message"]
    return message


async def test_a_notification_is_produced_keyed_by_instance(
    client: TestClient[Any, Any], producer: FakeProducer
) -> None:
    status, body = await post(client, sample())
    assert status == 200
    assert body == {"accepted": 2, "dead_lettered": 0, "errors": []}
    keys = [key for key, _ in producer.events]
    assert keys == [b"inst-7f3a", b"inst-0042"]
    first = orjson.loads(producer.events[0][1])
    assert (first["alert_name"], first["severity"], first["status"]) == (
        "DmesgXidError",
        "CRITICAL",
        "FIRING",
    )
    assert first["observed_at"] == "2026-11-24T12:01:07.123456Z"
    assert producer.dead_letters == []


async def test_an_unmappable_alert_is_dead_lettered_and_the_rest_goes_through(
    client: TestClient[Any, Any], producer: FakeProducer
) -> None:
    payload = sample()
    del payload["alerts"][1]["labels"]["instance_id"]
    status, body = await post(client, payload)
    assert status == 200
    assert (body["accepted"], body["dead_lettered"]) == (1, 1)
    assert body["errors"] == [
        "alerts[1] of receiver 'remediator': missing label(s) instance_id (the alert has: "
        "alertname, cluster_id, job, severity)"
    ]
    assert [key for key, _ in producer.events] == [b"inst-7f3a"]
    [(key, value)] = producer.dead_letters
    letter = orjson.loads(value)
    assert key is None
    assert (letter["source_topic"], letter["partition"], letter["offset"]) == (SOURCE, -1, -1)
    assert orjson.loads(letter["payload"]) == payload["alerts"][1]
    assert letter["error"] == body["errors"][0]
    assert letter["received_at"] == "2026-11-24T12:05:00Z"


async def test_an_event_over_the_input_size_limit_is_dead_lettered_as_kafka_input_is(
    client: TestClient[Any, Any], producer: FakeProducer
) -> None:
    payload = sample()
    # Many annotations, each within the mapping's own bounds: the event as a whole is
    # larger than a worker would read from the passive topic.
    payload["alerts"][0]["annotations"] = {f"note{n}": "x" * 200 for n in range(40)}
    status, body = await post(client, payload)
    assert status == 200
    assert (body["accepted"], body["dead_lettered"]) == (1, 1)
    assert f"larger than the limit of {EVENT_LIMIT} bytes" in body["errors"][0]
    assert body["errors"][0].startswith("alerts[0]")
    assert [key for key, _ in producer.events] == [b"inst-0042"]
    [(_, value)] = producer.dead_letters
    assert orjson.loads(orjson.loads(value)["payload"]) == payload["alerts"][0]


async def test_a_dead_letter_says_which_alert_even_without_a_receiver_name(
    client: TestClient[Any, Any], producer: FakeProducer
) -> None:
    status, body = await post(client, {"version": "4", "alerts": [{"status": "x", "labels": {}}]})
    assert (status, body["dead_lettered"]) == (200, 1)
    assert body["errors"] == ["alerts[0]: status 'x' is neither 'firing' nor 'resolved'"]


async def test_a_notification_without_alerts_produces_nothing(
    client: TestClient[Any, Any], producer: FakeProducer
) -> None:
    status, body = await post(client, {**sample(), "alerts": []})
    assert (status, body) == (200, {"accepted": 0, "dead_lettered": 0, "errors": []})
    assert producer.events == producer.dead_letters == []


async def test_a_notification_larger_than_the_rest_apis_limit_is_accepted(
    client: TestClient[Any, Any], producer: FakeProducer
) -> None:
    payload = sample()
    one = payload["alerts"][0]
    payload["alerts"] = [
        {**one, "fingerprint": f"{n:016x}", "labels": {**one["labels"], "instance_id": f"i{n}"}}
        for n in range(300)
    ]
    raw = orjson.dumps(payload)
    assert len(raw) > MAX_REQUEST_BODY
    status, body = await post(client, raw)
    assert (status, body["accepted"]) == (200, 300)


async def test_a_body_over_the_webhook_limit_is_refused(
    client: TestClient[Any, Any], producer: FakeProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alertmanager, "MAX_BODY", 1000)
    status, body = await post(client, sample())
    assert status == 400
    assert "larger than 1000 bytes" in assert_error(body, 400, "INVALID_ARGUMENT")
    assert producer.events == []


# --- authentication ---------------------------------------------------------------------


async def test_no_token_is_401(client: TestClient[Any, Any], producer: FakeProducer) -> None:
    response = await client.post(ALERTMANAGER, data=orjson.dumps(sample()))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_error(orjson.loads(await response.read()), 401, "UNAUTHENTICATED")
    assert producer.events == []


async def test_an_unknown_token_is_401(
    client: TestClient[Any, Any], producer: FakeProducer
) -> None:
    status, body = await post(client, sample(), Authorization="Bearer nope")
    assert status == 401
    assert assert_error(body, 401, "UNAUTHENTICATED") == "invalid token"
    assert producer.events == []


# --- malformed requests: 400, nothing produced ------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "request body is empty"),
        (b"{not json", "request body is not valid JSON"),
        (b"[]", "AlertmanagerWebhook: Input should be a valid dictionary"),
        (b'{"version": "4"}', "AlertmanagerWebhook: alerts: Field required"),
        (b'{"version": "4", "alerts": {}}', "alerts: Input should be a valid list"),
        (b'{"alerts": []}', "version: Field required"),
        (
            b'{"version": "4", "alerts": [{"status": "firing", "labels": {"gpu": 3}}]}',
            "alerts.0.labels.gpu: Input should be a valid string",
        ),
        (b'{"version": "4", "alerts": [{"labels": {}}]}', "alerts.0.status: Field required"),
        (b'{"version": "4", "alerts": [], "truncatedAlerts": -1}', "truncatedAlerts"),
    ],
)
async def test_a_malformed_request_is_400_and_produces_nothing(
    client: TestClient[Any, Any], producer: FakeProducer, body: bytes, message: str
) -> None:
    status, answer = await post(client, body)
    assert status == 400
    assert message in assert_error(answer, 400, "INVALID_ARGUMENT")
    assert producer.events == producer.dead_letters == []


async def test_other_methods_are_405_in_the_contracts_shape(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get(ALERTMANAGER, headers=AUTH)
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert_error(orjson.loads(await response.read()), 405, "METHOD_NOT_ALLOWED")


# --- the broker: 200 only after every ack, 503 so that Alertmanager retries --------------


async def test_a_broker_failure_is_503(
    client: TestClient[Any, Any], producer: FakeProducer
) -> None:
    producer.fail = ConnectionError("broker away")
    status, body = await post(client, sample())
    assert status == 503
    message = assert_error(body, 503, "UNAVAILABLE")
    assert "broker away" in message
    assert message.endswith("retry")


async def test_a_broker_that_does_not_acknowledge_in_time_is_503(
    client: TestClient[Any, Any], producer: FakeProducer
) -> None:
    producer.hang = True
    status, body = await post(client, sample())
    assert status == 503
    assert "did not acknowledge within 0.2s" in assert_error(body, 503, "UNAVAILABLE")


def test_the_openapi_document_lists_the_webhook() -> None:
    from remediator.api import openapi

    operation = openapi.build()["paths"][ALERTMANAGER]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "503"}
    assert operation["requestBody"]["required"] is True
