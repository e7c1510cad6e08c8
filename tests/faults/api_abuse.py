"""API calls with missing, wrong and malformed tokens, oversized headers and paths, sent as
raw HTTP/1.1 on loopback (so nothing in a client library cleans them up first).

Never a 5xx. Where the API answers, the contract's error body (``{"error": {"code",
"status", "message"}}`` with ``code`` the HTTP status); where aiohttp refuses the request
before routing it (a header or request line over its limits), its plain 400. The worker
logs no traceback for any of them.
"""

from __future__ import annotations

import asyncio

import orjson

from tests.integration.conftest import OPERATOR_TOKEN, OPERATOR_TOKENS

from .checker import Outcome
from .scenarios import Suite, running

LIST = "/v1/compute/clusters/c1/instances/-/remediations"
GOOD = f"Bearer {OPERATOR_TOKEN}".encode()

#: (what, method, path, headers, body)
CASES: list[tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]] = [
    ("no token", "GET", LIST.encode(), [], b""),
    ("wrong token", "GET", LIST.encode(), [(b"Authorization", b"Bearer wrong")], b""),
    ("empty bearer", "GET", LIST.encode(), [(b"Authorization", b"Bearer ")], b""),
    ("basic scheme", "GET", LIST.encode(), [(b"Authorization", b"Basic b3A6dG9rZW4=")], b""),
    ("three words", "GET", LIST.encode(), [(b"Authorization", b"Bearer a b")], b""),
    ("non-ASCII token", "GET", LIST.encode(), [(b"Authorization", b"Bearer \xff\xfe\x80")], b""),
    ("8 000-char token", "GET", LIST.encode(), [(b"Authorization", b"Bearer " + b"t" * 8000)], b""),
    (
        "64 KB header",
        "GET",
        LIST.encode(),
        [(b"Authorization", GOOD), (b"X-Big", b"h" * 65536)],
        b"",
    ),
    (
        "300 headers",
        "GET",
        LIST.encode(),
        [(b"Authorization", GOOD)] + [(f"X-H{n}".encode(), b"v") for n in range(300)],
        b"",
    ),
    ("8 KB path", "GET", b"/v1/compute/clusters/" + b"p" * 8000, [(b"Authorization", GOOD)], b""),
    (
        "100 KB path",
        "GET",
        b"/v1/compute/clusters/" + b"p" * 100_000,
        [(b"Authorization", GOOD)],
        b"",
    ),
    (
        "2 000-char instance id",
        "GET",
        f"/v1/compute/clusters/c1/instances/{'i' * 2000}/remediations".encode(),
        [(b"Authorization", GOOD)],
        b"",
    ),
    (
        "bad percent-encoding",
        "GET",
        b"/v1/compute/clusters/%zz%00/instances/..%2F..%2F/remediations",
        [(b"Authorization", GOOD)],
        b"",
    ),
    (
        "malformed JSON body",
        "POST",
        b"/v1/compute/clusters/c1/instances/i1/remediations",
        [(b"Authorization", GOOD), (b"Content-Type", b"application/json")],
        b'{"mode": ',
    ),
    ("64 KB header on /healthz", "GET", b"/healthz", [(b"X-Big", b"h" * 65536)], b""),
]

#: The cases that carry no valid credential: each must be a 401.
UNAUTHENTICATED = {case[0] for case in CASES[:7]}


async def raw_request(
    port: int, method: str, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [
            method.encode() + b" " + path + b" HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Connection: close",
        ]
        lines += [name + b": " + value for name, value in headers]
        lines.append(b"Content-Length: " + str(len(body)).encode())
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, payload


def judge(what: str, status: int, headers: dict[str, str], body: bytes) -> str | None:
    """A failure message, or None when the answer keeps the contract."""
    if status >= 500:
        return f"{what}: {status} {body[:200]!r}"
    if what in UNAUTHENTICATED and status != 401:
        return f"{what}: {status}, not 401"
    if "application/json" not in headers.get("content-type", ""):
        return None if status == 400 else f"{what}: {status} without the error body"
    error = orjson.loads(body).get("error", {})
    if error.get("code") != status or not error.get("status") or not error.get("message"):
        return f"{what}: {status} with a body off the contract: {body[:200]!r}"
    return None


async def api_abuse(suite: Suite) -> Outcome:
    async with running(suite, "api-abuse") as run:
        worker = await run.start_worker(REMEDIATOR_API_TOKENS=OPERATOR_TOKENS)
        statuses: dict[str, int] = {}
        for what, method, path, headers, body in CASES:
            status, fields, payload = await raw_request(
                worker.web_port, method, path, headers, body
            )
            statuses[what] = status
            if failure := judge(what, status, fields, payload):
                run.outcome.failures.append(failure)
        run.outcome.faults.append(
            f"{len(CASES)} bad requests: 7 kinds of missing/wrong/malformed token, "
            "64 KB and 300 headers, 8 KB and 100 KB paths, bad ids and bodies"
        )
        run.outcome.notes.append(f"statuses: {statuses}")
        run.outcome.losses = sum(1 for s in statuses.values() if s >= 500)
        if "Traceback" in worker.log():
            run.outcome.failures.append("the worker logged a traceback")
    return run.outcome
