"""The dashboard's files as the worker serves them, and the transition stream's pieces that
need no broker: requests refused before streaming, filtering and back-pressure."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from remediator import dashboard
from remediator.api import live
from remediator.api.auth import Caller, Role
from remediator.api.errors import contract_errors
from remediator.api.live import READY, Subscriber, TransitionFeed, TransitionStream
from remediator.api.views import Api
from remediator.kafka.security import Connection

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "streams" / "remediator" / "dashboard" / "static"
AUTH = {"Authorization": "Bearer dash-token"}


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    api = Api(
        gateway=None,  # type: ignore[arg-type]  # authentication needs no gateway
        tokens={"dash-token": Caller("operator", Role.UNRESTRICTED)},
        clock=lambda: datetime(2026, 11, 25, tzinfo=UTC),
        unready=lambda: None,
        owned=list,
        app_id="test",
        openapi=lambda: b"{}",
    )
    feed = TransitionFeed(connection=Connection(("127.0.0.1:1",)), topic="transitions")
    app = web.Application(middlewares=[contract_errors])
    app.add_routes(dashboard.Dashboard().routes() + TransitionStream(feed, api.principal).routes())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_the_root_and_the_bare_prefix_redirect_to_the_dashboard(
    client: TestClient[Any, Any],
) -> None:
    for path in ("/", "/dashboard"):
        response = await client.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (302, "/dashboard/")


async def test_the_page_is_served_with_safe_caching_and_security_headers(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/dashboard/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert await response.read() == (STATIC / "index.html").read_bytes()
    # Revalidated on every load: an upgraded worker never runs with a cached old script.
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["ETag"].startswith('"')
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_an_unchanged_file_is_a_304_without_a_body(client: TestClient[Any, Any]) -> None:
    first = await client.get("/dashboard/app.js")
    assert first.headers["Content-Type"] == "text/javascript; charset=utf-8"
    etag = first.headers["ETag"]
    again = await client.get("/dashboard/app.js", headers={"If-None-Match": f'"other", {etag}'})
    assert (again.status, await again.read()) == (304, b"")
    changed = await client.get("/dashboard/app.js", headers={"If-None-Match": '"other"'})
    assert changed.status == 200
    assert await changed.read() == (STATIC / "app.js").read_bytes()


async def test_only_the_shipped_files_are_served(client: TestClient[Any, Any]) -> None:
    for path in ("/dashboard/nope.js", "/dashboard/..%2f__init__.py", "/dashboard/static"):
        response = await client.get(path)
        assert response.status == 404, path
        body = orjson.loads(await response.read())
        assert body["error"]["status"] == "NOT_FOUND"


def test_the_page_loads_nothing_from_another_host() -> None:
    """No CDN, no web font: the page works without a network beyond the worker."""
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", text), path.name
        assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", text), path.name
        assert not re.search(r"""(?:import|fetch)\(?\s*["'](?:https?:)?//""", text), path.name


def test_every_static_file_is_package_data() -> None:
    """A wheel (not only an editable install) ships every file of the dashboard."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["remediator"]
    for path in STATIC.iterdir():
        relative = path.relative_to(ROOT / "streams" / "remediator").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
    assert set(dashboard.load_assets()) == {p.name for p in STATIC.iterdir()}


async def test_the_stream_needs_a_token_and_valid_filters(client: TestClient[Any, Any]) -> None:
    response = await client.get(live.STREAM)
    assert response.status == 401
    for query in ("cluster_id=a/b", "instance_id=i-1"):
        response = await client.get(f"{live.STREAM}?{query}", headers=AUTH)
        assert response.status == 400, query
        assert orjson.loads(await response.read())["error"]["status"] == "INVALID_ARGUMENT"


def test_a_subscriber_keeps_its_cluster_or_instance_by_the_key_alone() -> None:
    everything = Subscriber()
    cluster = Subscriber(cluster_id=b"c1")
    instance = Subscriber(cluster_id=b"c1", instance_id=b"i1")
    for key, wanted in [
        (b"c1/i1", (True, True, True)),
        (b"c1/i2", (True, True, False)),
        (b"c10/i1", (True, False, False)),
        (None, (True, False, False)),
    ]:
        assert (everything.wants(key), cluster.wants(key), instance.wants(key)) == wanted, key


def test_a_transition_is_one_event_with_the_topic_value_as_its_data() -> None:
    feed = TransitionFeed(connection=Connection(("127.0.0.1:1",)), topic="transitions")
    mine, other = Subscriber(cluster_id=b"c1"), Subscriber(cluster_id=b"c2")
    feed.subscribers.update({mine, other})
    value = orjson.dumps({"transition_id": "r1:2", "to_state": "RUNNING"})
    feed._fan_out(b"c1/i1", value)
    assert mine.queue.get_nowait() == b"event: transition\ndata: " + value + b"\n\n"
    assert other.queue.empty()


def test_a_tab_too_far_behind_is_told_to_reload_instead() -> None:
    subscriber = Subscriber()
    for n in range(live.QUEUE_MAX + 1):
        subscriber.offer(f"frame {n}".encode())
    assert subscriber.queue.qsize() == 1
    assert subscriber.queue.get_nowait() == READY
