"""The REST API, the dashboard and /metrics over HTTPS (issue 19, point 5).

One worker for the module, started with ``REMEDIATOR_WEB_TLS_CERTFILE`` and ``_KEYFILE``:
a certificate for 127.0.0.1 signed by a CA made for the test (tests/certs.py). Driven as
an operator would: ``remediator`` commands as processes, trusting that CA through
``REMEDIATOR_API_CAFILE`` or ``--cafile``, or not; the provider's CLI through
``SSL_CERT_FILE``; plain HTTP to the same port. Tansu only: the broker cannot change how
the web server speaks. Bad TLS settings stopping start-up are in test_cli.py (a process)
and tests/unit/test_web_tls.py (every case).
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.certs import Certificates, make_certificates
from tests.integration.conftest import (
    Broker,
    Names,
    WorkerProcess,
    launch_worker,
    unique_names,
)
from tests.unit.test_deployment_files import dockerfile_healthcheck

TOKEN = "tls-token"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("api-tls"))


@pytest.fixture(scope="module")
def worker(
    broker: Broker, certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    names: Names = unique_names()
    process = launch_worker(
        broker,
        names,
        tmp_path_factory.mktemp("tls-worker"),
        REMEDIATOR_API_TOKENS=f"operator={TOKEN}",
        REMEDIATOR_WEB_TLS_CERTFILE=str(certificates.cert),
        REMEDIATOR_WEB_TLS_KEYFILE=str(certificates.key),
    )
    try:
        yield process
    finally:
        process.stop()


def remediator(*args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``remediator ARGS`` against ``url`` with the token, in a clean environment."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REMEDIATOR_") and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")
    }
    return subprocess.run(
        [sys.executable, "-m", "remediator.cli", *args],
        env={**clean, "REMEDIATOR_URL": url, "REMEDIATOR_TOKEN": TOKEN, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed command printed: exactly one line on stderr, no traceback."""
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("remediator: ")
    return lines[0]


def test_the_cli_trusting_the_ca_works_over_https(
    worker: WorkerProcess, certificates: Certificates
) -> None:
    assert worker.base_url.startswith("https://")
    cluster = f"cl-{uuid.uuid4().hex[:8]}"
    # A write and a read, each through the inbox and a reply: the whole API path.
    created = remediator(
        "remediations", "create", "-c", cluster, "-i", "i1", "--mode", "VM_ONLY",
        "--id", "tls-1", "--output", "json",
        url=worker.base_url, REMEDIATOR_API_CAFILE=str(certificates.ca),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert orjson.loads(created.stdout)["id"] == "tls-1"
    got = remediator(
        "remediations", "get", "tls-1", "-c", cluster, "-i", "i1", "--output", "json",
        "--cafile", str(certificates.ca),
        url=worker.base_url,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert orjson.loads(got.stdout)["state"] == "PENDING"


def test_without_the_ca_the_cli_refuses_the_certificate_in_one_line(
    worker: WorkerProcess, certificates: Certificates
) -> None:
    untrusted = remediator("clusters", "list", url=worker.base_url)
    assert untrusted.returncode == 3
    line = one_error_line(untrusted)
    assert "certificate is not trusted" in line
    assert "--cafile" in line
    other = remediator(
        "clusters", "list", url=worker.base_url, REMEDIATOR_API_CAFILE=str(certificates.other_ca)
    )
    assert other.returncode == 3
    assert "certificate is not trusted" in one_error_line(other)


def test_plain_http_to_the_tls_port_gets_no_answer(worker: WorkerProcess) -> None:
    plain = worker.base_url.replace("https://", "http://")
    result = remediator("clusters", "list", url=plain)
    assert result.returncode == 3
    assert "use an https:// URL" in one_error_line(result)
    for path in ("/healthz", "/metrics", "/"):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}{path}", timeout=5)


def test_dashboard_and_metrics_are_served_over_https(
    worker: WorkerProcess, certificates: Certificates
) -> None:
    trusting = ssl.create_default_context(cafile=certificates.ca)
    with httpx.Client(
        base_url=worker.base_url, verify=trusting, timeout=10, follow_redirects=True
    ) as client:
        dashboard = client.get("/")  # redirected to the dashboard's own path
        assert dashboard.status_code == 200
        assert dashboard.url.scheme == "https"
        assert "text/html" in dashboard.headers["content-type"]
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "remediator_" in metrics.text
        assert client.get("/healthz").json()["ready"] is True


def test_the_banner_and_the_ready_line_name_https(worker: WorkerProcess) -> None:
    log = worker.log()
    assert f"REST API: https://127.0.0.1:{worker.web_port}/v1/compute" in log
    assert f"ready: API at https://127.0.0.1:{worker.web_port}/v1/compute" in log


def test_the_providers_cli_trusts_the_ca_through_ssl_cert_file(
    worker: WorkerProcess, certificates: Certificates, tmp_path: Path
) -> None:
    """README "With the provider's SDK and CLI": httpx under the SDK reads SSL_CERT_FILE."""
    script = Path(sys.executable).parent / "together"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TOGETHER_BASE_URL": worker.base_url,
        "TOGETHER_API_KEY": TOKEN,
        "TOGETHER_TELEMETRY_DISABLED": "1",
        "TOGETHER_DISABLE_VERSION_CHECK": "1",
        "COLUMNS": "250",
        "PYTHONIOENCODING": "utf-8",
    }
    args = [str(script), "clusters", "remediations", "list", f"cl-{uuid.uuid4().hex[:8]}"]

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, env={**env, **extra}, capture_output=True, text=True, timeout=60, check=False
        )

    trusted = run(SSL_CERT_FILE=str(certificates.ca))
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    untrusted = run()
    assert untrusted.returncode != 0


def test_the_images_healthcheck_probes_the_https_port(
    worker: WorkerProcess, certificates: Certificates
) -> None:
    """The Dockerfile's HEALTHCHECK (and docker-compose.yml's), run as the image would."""
    _, flag, code = dockerfile_healthcheck()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}

    def probe(**env: str) -> int:
        command = [sys.executable, flag, code]
        ran = subprocess.run(
            command, env={**clean, **env}, capture_output=True, timeout=30, check=False
        )
        return ran.returncode

    port = str(worker.web_port)
    assert probe(REMEDIATOR_WEB_PORT=port, REMEDIATOR_WEB_TLS_CERTFILE=str(certificates.cert)) == 0
    assert probe(REMEDIATOR_WEB_PORT=port) != 0  # plain http gets no answer
