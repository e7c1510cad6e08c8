"""``POST /v1/alertmanager``: Prometheus Alertmanager's webhook, onto the passive topic.

Alertmanager (a ``webhook_config`` receiver with a bearer token, the REST API's tokens)
posts a notification; each of its alerts becomes a :class:`PassiveHealthCheckEvent` on the
passive-health-check-events topic, keyed by instance id, exactly as if monitoring had
produced it there (the ingest agent takes it from there). An alert that cannot be mapped
(:mod:`remediator.api.alertmanager_mapping`) goes to the dead-letter topic with the
reason; the others still go through.

The answer is 200 only once the broker has acknowledged every message of the request. A
broker that fails or does not answer within ``REMEDIATOR_API_TIMEOUT_SECONDS`` gets a 503,
which Alertmanager retries; repeats are harmless, since an alert occurrence always maps to
the same ``event_id`` and the pipeline counts an event id once. A malformed request is a
400 (Alertmanager does not retry those): nothing of it is produced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Any, Protocol

import faust
import orjson
from aiohttp import web
from pydantic import ValidationError

from remediator.api.alertmanager_mapping import (
    AlertmanagerWebhook,
    AlertmanagerWebhookResponse,
    LabelNames,
    Unmappable,
    to_event,
)
from remediator.api.errors import ApiError
from remediator.domain.bounds import echo
from remediator.domain.models import DeadLetter, dump_json
from remediator.pipeline.decode import InvalidInput, check_size, dead_letter, describe
from remediator.settings import Settings

log = logging.getLogger(__name__)

ALERTMANAGER = "/v1/alertmanager"
#: ``source_topic`` of the webhook's dead letters: the webhook, not a topic.
SOURCE = f"webhook:{ALERTMANAGER}"
#: Larger than the REST API's 64 KiB: a notification carries a whole alert group. Keep
#: bigger groups under it with ``max_alerts`` in the ``webhook_config``.
MAX_BODY = 4 * 1024 * 1024

Message = tuple[bytes | None, bytes]


class Publisher(Protocol):
    """Produces the events and the dead letters; returns once the broker has them all."""

    async def __call__(self, events: Sequence[Message], dead_letters: Sequence[Message]) -> None:
        """Raise if the broker refused or failed any of them."""


class TopicPublisher:
    """A :class:`Publisher` on the app's producer: everything is sent, then every ack is
    awaited together. Unlike the agents' publishing it does not retry: the caller answers
    503 and Alertmanager retries the whole notification."""

    def __init__(self, events_topic: faust.TopicT, dead_letters_topic: faust.TopicT) -> None:
        self.events_topic = events_topic
        self.dead_letters_topic = dead_letters_topic

    async def __call__(self, events: Sequence[Message], dead_letters: Sequence[Message]) -> None:
        batches = ((self.events_topic, events), (self.dead_letters_topic, dead_letters))
        futures = [
            await topic.send(key=key, value=value)
            for topic, messages in batches
            for key, value in messages
        ]
        await asyncio.gather(*futures)


class AlertmanagerReceiver:
    """The webhook view: authenticate, validate, map, publish, answer."""

    def __init__(
        self,
        *,
        authenticate: Callable[[web.Request], str],
        publish: Publisher,
        labels: LabelNames,
        clock: Callable[[], datetime],
        timeout: float,
        max_event_bytes: int = 1024 * 1024,
    ) -> None:
        self.max_event_bytes = max_event_bytes
        self.authenticate = authenticate
        self.publish = publish
        self.labels = labels
        self.clock = clock
        self.timeout = timeout
        self._deliveries: set[asyncio.Future[None]] = set()

    def routes(self) -> list[web.RouteDef]:
        return [web.post(ALERTMANAGER, self.receive, name="alertmanager.post")]

    async def receive(self, request: web.Request) -> web.Response:
        principal = self.authenticate(request)
        alerts, payload = _parse(await _read(request))
        events, letters = self._map(payload, alerts)
        await self._deliver(events, [(None, dump_json(letter)) for letter in letters])
        if payload.truncated_alerts:
            log.warning(
                "Alertmanager left %d alert(s) of group %s out (max_alerts)",
                payload.truncated_alerts,
                payload.group_key,
            )
        log.debug("%s posted %d alert(s) from Alertmanager", principal, len(payload.alerts))
        body = AlertmanagerWebhookResponse(
            accepted=len(events),
            dead_lettered=len(letters),
            errors=[letter.error for letter in letters],
        )
        return web.Response(body=dump_json(body), content_type="application/json")

    def _map(
        self, payload: AlertmanagerWebhook, alerts: list[Any]
    ) -> tuple[list[Message], list[DeadLetter]]:
        """Events keyed by instance id, and dead letters for the alerts that do not map."""
        received_at = self.clock()
        events: list[Message] = []
        letters: list[DeadLetter] = []
        for index, (alert, original) in enumerate(zip(payload.alerts, alerts, strict=True)):
            try:
                event = to_event(alert, self.labels)
                value = dump_json(event)
                # The same size check as input read from Kafka: an event the worker
                # would dead-letter there is dead-lettered here, not produced.
                check_size(value, self.max_event_bytes)
            except (Unmappable, InvalidInput) as exc:
                where = f"alerts[{index}]"
                if payload.receiver:
                    where += f" of receiver {echo(payload.receiver)}"
                letter = dead_letter(
                    source_topic=SOURCE,
                    partition=-1,
                    offset=-1,
                    key=None,
                    payload=orjson.dumps(original),
                    error=f"{where}: {exc}",
                    received_at=received_at,
                )
                log.warning("dead-lettered an alert from Alertmanager: %s", letter.error)
                letters.append(letter)
            else:
                events.append((event.instance_id.encode(), value))
        return events, letters

    async def _deliver(self, events: Sequence[Message], letters: Sequence[Message]) -> None:
        if not events and not letters:
            return
        # A task, and asyncio.wait rather than wait_for: on a timeout the sends are left
        # to finish or fail on their own, never cancelled halfway through the producer.
        delivery = asyncio.ensure_future(self.publish(events, letters))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._delivered)
        done, _ = await asyncio.wait({delivery}, timeout=self.timeout)
        if delivery not in done:
            log.warning("the broker did not acknowledge an Alertmanager notification in time")
            raise _unavailable(f"the broker did not acknowledge within {self.timeout:g}s")
        if (exc := delivery.exception()) is not None:
            raise _unavailable(f"the broker refused the events ({type(exc).__name__}: {exc})")

    def _delivered(self, delivery: asyncio.Future[None]) -> None:
        self._deliveries.discard(delivery)
        if not delivery.cancelled() and (exc := delivery.exception()) is not None:
            log.warning("producing an Alertmanager notification failed: %s", exc)


def alertmanager_receiver(
    settings: Settings,
    *,
    events: faust.TopicT,
    dead_letters: faust.TopicT,
    authenticate: Callable[[web.Request], str],
    clock: Callable[[], datetime],
) -> AlertmanagerReceiver:
    """The receiver as the worker runs it: the app's topics, the settings' label names."""
    return AlertmanagerReceiver(
        authenticate=authenticate,
        publish=TopicPublisher(events, dead_letters),
        labels=LabelNames(
            cluster=settings.alertmanager_cluster_label,
            instance=settings.alertmanager_instance_label,
            instance_name=settings.alertmanager_instance_name_label,
        ),
        clock=clock,
        timeout=settings.api_timeout_seconds,
        max_event_bytes=settings.max_input_bytes,
    )


async def _read(request: web.Request) -> bytes:
    """The body, refused past :data:`MAX_BODY` (the app-wide limit is the REST API's)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> tuple[list[Any], AlertmanagerWebhook]:
    """The alerts as received (for dead letters) and the validated notification."""
    if not raw.strip():
        raise ApiError.invalid("request body is empty: expected Alertmanager's webhook JSON")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError.invalid("request body is not valid JSON") from None
    try:
        payload = AlertmanagerWebhook.model_validate(data)
    except ValidationError as exc:
        raise ApiError.invalid(describe(AlertmanagerWebhook, exc)) from None
    return data["alerts"], payload


def _too_large() -> ApiError:
    return ApiError.invalid(
        f"request body is larger than {MAX_BODY} bytes: set max_alerts in the webhook_config"
    )


def _unavailable(why: str) -> ApiError:
    return ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE", f"{why}; retry")
