"""The operators' dashboard: three static files served by the worker's own web server.

``/`` redirects to ``/dashboard/``. The page is plain HTML, one vanilla JavaScript module
and one stylesheet, shipped as package data (``dashboard/static/``): no build step, no
external host (everything it loads comes from this server). Every read and every action
is a normal API call with the token the operator types once per browser tab; live updates
come from the transition stream (``api/live.py``).

Caching is safe across upgrades: every file is served with ``Cache-Control: no-cache`` and
an ``ETag`` of its content, so a browser revalidates on each load (a 304 when unchanged)
and never runs a stale script against a newer API.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources

import faust
from aiohttp import web

from remediator.api.errors import ApiError
from remediator.api.live import TransitionFeed, TransitionStream
from remediator.settings import Settings

PREFIX = "/dashboard/"

#: No inline script or style, nothing from elsewhere: the token never leaves this origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of ``dashboard/static`` by name, read once (they are a few kilobytes)."""
    assets = {}
    for entry in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if not entry.is_file() or suffix not in CONTENT_TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[entry.name] = Asset(body, CONTENT_TYPES[suffix], etag)
    return assets


class Dashboard:
    def __init__(self, assets: dict[str, Asset] | None = None) -> None:
        self.assets = load_assets() if assets is None else assets

    async def to_dashboard(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PREFIX)

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, "index.html")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, request.match_info["name"])

    def _serve(self, request: web.Request, name: str) -> web.StreamResponse:
        asset = self.assets.get(name)
        if asset is None:  # only the shipped files by name: no path ever reaches the disk
            raise ApiError(
                HTTPStatus.NOT_FOUND, "NOT_FOUND", f"no such resource: GET {request.path}"
            )
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
        presented = request.headers.get("If-None-Match", "")
        if asset.etag in {tag.strip().removeprefix("W/") for tag in presented.split(",")}:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=asset.body, headers={**headers, "Content-Type": asset.content_type}
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.to_dashboard),
            web.get(PREFIX.rstrip("/"), self.to_dashboard),
            web.get(PREFIX, self.index),
            web.get(PREFIX + "{name}", self.asset),
        ]


def install(
    app: faust.App, settings: Settings, authenticate: Callable[[web.Request], str]
) -> TransitionFeed:
    """Serve the dashboard and the transition stream on ``app``'s web server."""
    feed = TransitionFeed(
        connection=settings.connection,
        topic=settings.topic_transitions,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    app.add_dependency(feed)
    web_app: web.Application = app.web.web_app  # type: ignore[attr-defined]  # aiohttp driver

    async def end_streams(_: web.Application) -> None:
        # Before aiohttp waits for open requests: a stream would otherwise hold the
        # worker's shutdown for the whole handler timeout.
        feed.close_subscribers()

    web_app.on_shutdown.append(end_streams)
    web_app.add_routes(TransitionStream(feed, authenticate).routes() + Dashboard().routes())
    return feed
