"""HTTPS for the API (issue 19, point 5): the worker's settings, checked at start, and the
command line's CA file. The served HTTPS itself: tests/integration/test_api_tls.py."""

from __future__ import annotations

import io
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from remediator import cli
from remediator.console import client
from remediator.settings import ConfigError, load_settings
from remediator.simulation.fleet import options
from tests.certs import Certificates, make_certificates

CERT = "REMEDIATOR_WEB_TLS_CERTFILE"
KEY = "REMEDIATOR_WEB_TLS_KEYFILE"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def tls_error(**env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_certificate_and_its_key_serve_https(made: Certificates) -> None:
    settings = load_settings({CERT: str(made.cert), KEY: str(made.key)})
    assert isinstance(settings.web_ssl_context, ssl.SSLContext)
    assert settings.web_scheme == "https"
    assert settings.web_ssl_context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_unset_or_blank_serves_plain_http() -> None:
    for env in ({}, {CERT: "", KEY: " "}):
        settings = load_settings(env)
        assert settings.web_ssl_context is None
        assert settings.web_scheme == "http"


def test_one_without_the_other_names_both(made: Certificates) -> None:
    alone = tls_error(**{CERT: str(made.cert)})
    assert f"{CERT} is set without {KEY}" in alone
    alone = tls_error(**{KEY: str(made.key)})
    assert f"{KEY} is set without {CERT}" in alone


def test_a_missing_file_or_a_directory_is_named(made: Certificates, tmp_path: Path) -> None:
    missing = tls_error(**{CERT: str(tmp_path / "nope.pem"), KEY: str(made.key)})
    assert f"{CERT}: cannot read {tmp_path / 'nope.pem'}" in missing
    directory = tls_error(**{CERT: str(made.cert), KEY: str(tmp_path)})
    assert f"{KEY}: cannot read {tmp_path}" in directory


def test_a_file_without_a_certificate_names_the_certificate_setting(
    made: Certificates, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert f"{CERT}: no PEM certificate in {garbage}" in tls_error(
        **{CERT: str(garbage), KEY: str(made.key)}
    )
    # Swapped: the key where the certificate goes.
    assert f"{CERT}: no PEM certificate" in tls_error(**{CERT: str(made.key), KEY: str(made.cert)})


def test_a_key_that_is_not_the_certificates_names_the_key_setting(
    made: Certificates, tmp_path: Path
) -> None:
    other = make_certificates(tmp_path / "other")
    message = tls_error(**{CERT: str(made.cert), KEY: str(other.key)})
    assert f"{KEY}: {other.key} is not the private key of {made.cert}" in message


def test_an_encrypted_key_is_refused_at_once_not_prompted_for(
    made: Certificates, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(made.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    message = tls_error(**{CERT: str(made.cert), KEY: str(encrypted)})
    assert f"{KEY}: {encrypted} is encrypted" in message


def test_the_banner_names_the_https_url(
    made: Certificates, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(
        {CERT: str(made.cert), KEY: str(made.key), "REMEDIATOR_WEB_PORT": "8443"}
    )
    cli._print_banner(settings, embedded=True)
    out = capsys.readouterr().out
    assert "REST API: https://127.0.0.1:8443/v1/compute" in out
    assert f"TLS: {made.cert}" in out


def test_the_client_refuses_an_unusable_ca_file_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(client.ClientError, match="cannot load the CA file"):
        client.RemediatorClient("https://127.0.0.1:1", cafile=tmp_path / "nope.pem")


def test_the_cli_says_which_ca_file_is_unusable_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nope = tmp_path / "nope.pem"
    argv = ["clusters", "list", "--url", "https://127.0.0.1:1", "--cafile", str(nope)]
    assert cli.main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"remediator: --cafile: cannot load the CA file {nope}")


def test_a_tls_worker_s_simulator_waits_on_https_without_its_ca() -> None:
    """`worker --simulate`: the child polls its own worker's /healthz on loopback, whose
    certificate need not name 127.0.0.1 nor come from a CA the child knows."""
    argv = options.child_argv("kafka://b:9092", "https://h:1/healthz", [], verify_health=False)
    parser = options._Checker(prog="simulate", add_help=False)
    options.add_arguments(parser)
    args = parser.parse_args(argv[argv.index("simulate") + 1 :])
    _, run = options.options_from(args, io.StringIO())
    assert (run.wait_ready, run.wait_ready_verify) == ("https://h:1/healthz", False)
    plain = options.child_argv("kafka://b:9092", "http://h:1/healthz", [])
    assert "--wait-ready-no-verify" not in plain
