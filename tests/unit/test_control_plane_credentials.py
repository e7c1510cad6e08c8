"""The executor's credentials towards the control plane (REMEDIATOR_CONTROL_PLANE_TOKEN,
_TOKEN_FILE, _CAFILE, _CERTFILE, _KEYFILE, user:password@ in the URL): checked at start
with one line naming the setting, sent on every call, and never printed."""

from __future__ import annotations

import base64
import logging
import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from remediator.cli import _print_banner
from remediator.domain.models import Operation, StepAction
from remediator.pipeline.controlplane import ControlPlaneClient
from remediator.pipeline.credentials import redact_url
from remediator.settings import ConfigError, load_settings

TOKEN = "s3cret-T0ken-never-printed"
URL = "https://cp.example:8443"
VAR = "REMEDIATOR_CONTROL_PLANE_"
OP = Operation(operation_id="op-1", action=StepAction.REBOOT_VM)
RUNNING = {"operation_id": "op-1", "action": "REBOOT_VM", "state": "RUNNING"}


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA and a client certificate made for the test, as PEM files."""
    ca = trustme.CA()
    client = ca.issue_cert("remediator@example")
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    return files


def config_error(**env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings({f"{VAR}{name.upper()}": value for name, value in env.items()})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_token_file_is_read_at_start_and_stripped(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"\n  {TOKEN}\n")
    settings = load_settings({f"{VAR}TOKEN_FILE": str(token_file), f"{VAR}URL": URL})
    assert settings.control_plane_credentials.token == TOKEN
    token_file.unlink()  # read at start: a worker that started keeps what it read
    assert TOKEN not in repr(settings)


def test_the_token_from_the_environment_is_never_in_a_repr() -> None:
    settings = load_settings({f"{VAR}TOKEN": TOKEN})
    assert settings.control_plane_credentials.token == TOKEN
    assert TOKEN not in repr(settings)
    assert TOKEN not in repr(settings.control_plane_credentials)
    assert TOKEN not in settings.control_plane_credentials.describe()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"token": TOKEN, "token_file": "/etc/hostname"}, f"{VAR}TOKEN and {VAR}TOKEN_FILE"),
        ({"token_file": "/no/such/token"}, f"{VAR}TOKEN_FILE: cannot read /no/such/token"),
        ({"token": f"{TOKEN} with spaces"}, f"{VAR}TOKEN: the token must be printable"),
    ],
)
def test_a_bad_token_setting_is_one_line_naming_it_never_the_token(
    env: dict[str, str], expected: str
) -> None:
    message = config_error(**env)
    assert expected in message
    assert TOKEN not in message


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    assert f"{VAR}TOKEN_FILE: " in config_error(token_file=str(tmp_path / "token"))


def test_tls_files_must_come_in_pairs_exist_and_load(pki: dict[str, Path], tmp_path: Path) -> None:
    cert, key, ca = str(pki["cert"]), str(pki["key"]), str(pki["ca"])
    assert f"{VAR}CERTFILE is set without {VAR}KEYFILE" in config_error(url=URL, certfile=cert)
    assert f"{VAR}KEYFILE is set without {VAR}CERTFILE" in config_error(url=URL, keyfile=key)
    missing = str(tmp_path / "missing.pem")
    assert f"{VAR}CAFILE: cannot read {missing}" in config_error(url=URL, cafile=missing)
    assert f"{VAR}CAFILE: cannot load" in config_error(url=URL, cafile=key)  # not a CA
    assert f"{VAR}CERTFILE: cannot load" in config_error(url=URL, certfile=key, keyfile=cert)
    # Without https:// they would go unused, the connection in plain text: refused.
    assert f"{VAR}URL is not https://" in config_error(url="http://cp:80", cafile=ca)
    assert f"{VAR}URL is unset" in config_error(cafile=ca)
    settings = load_settings(
        {f"{VAR}URL": URL, f"{VAR}CAFILE": ca, f"{VAR}CERTFILE": cert, f"{VAR}KEYFILE": key}
    )
    context = settings.control_plane_credentials.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


async def test_every_call_carries_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404 if request.method == "GET" else 201, json=RUNNING)

    settings = load_settings({f"{VAR}TOKEN": TOKEN, f"{VAR}URL": "http://cp.test"})
    client = ControlPlaneClient(
        lambda: "http://cp.test",
        credentials=settings.control_plane_credentials,
        transport=httpx.MockTransport(answer),
    )
    assert await client.get("op-1") is None
    await client.start("c1", "i1", OP)
    await client.aclose()
    assert [r.headers["authorization"] for r in seen] == [f"Bearer {TOKEN}"] * 2


async def test_credentials_in_the_url_become_basic_auth_and_leave_the_url() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=RUNNING)

    settings = load_settings({f"{VAR}URL": "https://bob:pa%40ss@cp.test:8443/base/"})
    assert settings.control_plane_base_url == "https://cp.test:8443/base"
    fixed = settings.control_plane_base_url
    client = ControlPlaneClient(
        lambda: fixed,
        credentials=settings.control_plane_credentials,
        transport=httpx.MockTransport(answer),
    )
    await client.get("op-1")
    await client.aclose()
    (request,) = seen
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"bob:pa@ss").decode()
    assert str(request.url) == "https://cp.test:8443/base/v1/operations/op-1"


def test_a_url_with_credentials_is_printed_without_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"https://bob:{TOKEN}@cp.example:8443/base"
    assert redact_url(url) == "https://***@cp.example:8443/base"
    _print_banner(load_settings({f"{VAR}URL": url}), embedded=False)
    banner = capsys.readouterr().out
    assert "control plane: https://***@cp.example:8443/base (basic auth from the URL)" in banner
    assert TOKEN not in banner
    # ... and in the one line that refuses a bad one.
    message = config_error(url=f"https://bob:{TOKEN}@cp.example:99999")
    assert f"{VAR}URL: bad port in 'https://***@cp.example:99999'" in message
    assert TOKEN not in message
    assert f"{VAR}TOKEN is set: use one" in config_error(url=url, token="other")


def test_the_banner_names_what_is_presented_never_the_token(
    capsys: pytest.CaptureFixture[str], pki: dict[str, Path]
) -> None:
    env = {
        f"{VAR}URL": URL,
        f"{VAR}TOKEN": TOKEN,
        f"{VAR}CAFILE": str(pki["ca"]),
        f"{VAR}CERTFILE": str(pki["cert"]),
        f"{VAR}KEYFILE": str(pki["key"]),
    }
    _print_banner(load_settings(env), embedded=False)
    banner = capsys.readouterr().out
    assert f"control plane: {URL} (bearer token, CA {pki['ca']}, client certificate" in banner
    assert TOKEN not in banner


async def test_the_workers_executor_calls_with_what_the_settings_say(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Settings to app to executor to the wire: a real loopback server sees the token,
    or the URL's user and password as basic auth; the client's own logs (httpx's, at
    debug) never hold either."""
    caplog.set_level(logging.DEBUG)
    from aiohttp import web

    from remediator.app import create_app

    seen: list[tuple[str, str | None]] = []

    async def unknown(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"error": {"message": "no such operation"}}, status=404)

    server = web.Application()
    server.router.add_get("/v1/operations/{operation_id}", unknown)
    runner = web.AppRunner(server)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    address = f"127.0.0.1:{runner.addresses[0][1]}"
    try:
        for env in (
            {f"{VAR}URL": f"http://{address}", f"{VAR}TOKEN": TOKEN},
            {f"{VAR}URL": f"http://bob:{TOKEN}@{address}"},
        ):
            settings = load_settings({"REMEDIATOR_BROKER": "kafka://127.0.0.1:1", **env})
            client = create_app(settings).executor.client
            assert await client.get("op-1") is None
            await client.aclose()
    finally:
        await runner.cleanup()
    basic = "Basic " + base64.b64encode(f"bob:{TOKEN}".encode()).decode()
    assert seen == [("/v1/operations/op-1", f"Bearer {TOKEN}"), ("/v1/operations/op-1", basic)]
    assert "HTTP Request: GET http://127.0.0.1:" in caplog.text
    assert TOKEN not in caplog.text
