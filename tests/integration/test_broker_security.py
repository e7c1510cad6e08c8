"""The worker and its CLI on an Apache Kafka that wants TLS and SASL, as managed Kafkas do.

One Apache Kafka for the module, with a second listener speaking SASL_SSL: its certificate
signed by a CA made for the test (tests/certs.py), SCRAM users created when its log
directory is formatted. Everything a user would drive goes over that listener: the worker
(its Faust app, API gateway, end-offset probe, transition stream and admin client),
``remediator publish``, ``remediator tail`` and ``remediator simulate``. A refused
credential, a mechanism the broker does not offer and an untrusted certificate each stop
start-up with one line naming the cause, and no secret is ever printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from remediator.kafka.local import LocalKafka, LocalKafkaError, SecureListener, unavailable_reason
from tests.brokers import KAFKA_TEST_PROPERTIES
from tests.builders import run_payload
from tests.certs import make_certificates
from tests.integration.conftest import (
    OPERATOR_TOKEN,
    OPERATOR_TOKENS,
    Names,
    kafka_unavailable,
    launch_worker,
)

pytestmark = pytest.mark.kafka

USER = "remediator"
PASSWORD = "s3cret-Pa55-for-the-test"  # must never appear in any output
WRONG = "wr0ng-Pa55-for-the-test"  # nor this one


@dataclass(frozen=True)
class SecureKafka:
    broker: LocalKafka
    ca: Path
    other_ca: Path
    password_file: Path

    def env(self, **override: str) -> dict[str, str]:
        """A worker's or a CLI's settings for the SASL_SSL listener."""
        return {
            "REMEDIATOR_BROKER": self.broker.secure_url,
            "REMEDIATOR_BROKER_SECURITY_PROTOCOL": "SASL_SSL",
            "REMEDIATOR_BROKER_SASL_MECHANISM": "SCRAM-SHA-512",
            "REMEDIATOR_BROKER_SASL_USERNAME": USER,
            "REMEDIATOR_BROKER_SASL_PASSWORD_FILE": str(self.password_file),
            "REMEDIATOR_BROKER_SSL_CAFILE": str(self.ca),
            **override,
        }


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    reason = unavailable_reason()
    if reason:
        kafka_unavailable(reason)
    directory = tmp_path_factory.mktemp("secure-kafka")
    certificates = make_certificates(directory)
    keystore = directory / "broker.pem"  # the key first, then the chain
    keystore.write_bytes(certificates.key.read_bytes() + certificates.cert.read_bytes())
    password_file = directory / "password"
    password_file.write_text(PASSWORD + "\n")
    broker = LocalKafka(
        log_dir=directory,
        properties=KAFKA_TEST_PROPERTIES,
        # PLAIN left out on purpose: a mechanism the broker does not offer.
        secure=SecureListener(
            keystore, scram_users={USER: PASSWORD}, mechanisms=("SCRAM-SHA-256", "SCRAM-SHA-512")
        ),
    )
    try:
        broker.start()
    except LocalKafkaError as exc:
        kafka_unavailable(str(exc))
    try:
        yield SecureKafka(broker, certificates.ca, certificates.other_ca, password_file)
    finally:
        broker.stop()


def cli(
    secure: SecureKafka, *args: str, stdin: bytes = b"", **env: str
) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    return subprocess.run(
        [sys.executable, "-m", "remediator.cli", *args],
        env={**clean, **secure.env(**env)},
        input=stdin,
        capture_output=True,
        timeout=90,
        check=False,
    )


def test_signals_in_transitions_out_api_and_cli_all_over_sasl_ssl(
    secure: SecureKafka, names: Names, tmp_path: Path
) -> None:
    worker = launch_worker(
        secure.broker, names, tmp_path, REMEDIATOR_API_TOKENS=OPERATOR_TOKENS, **secure.env()
    )
    try:
        run = run_payload(cluster_id="cl-tls", instance_id="inst-1")
        published = cli(secure, "publish", names.active, "-", stdin=orjson.dumps(run))
        assert published.returncode == 0, published.stderr.decode()
        tailed = cli(secure, "tail", names.transitions, "--from-beginning", "--max", "1")
        assert tailed.returncode == 0, tailed.stderr.decode()
        transition = orjson.loads(tailed.stdout)
        assert transition["remediation"]["active_health_check_run_id"] == run["run_id"]

        # The API answers through the gateway's consumer and producer, over SASL_SSL too.
        remediation = transition["remediation"]
        url = (
            f"{worker.base_url}/v1/compute/clusters/cl-tls/instances/inst-1/remediations/"
            f"{remediation['id']}/approve"
        )
        approved = httpx.post(
            url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, json={}, timeout=30
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] == "PENDING"

        simulated = cli(
            secure,
            "simulate",
            "--clusters", "1", "--instances", "3", "--count", "5", "--rate", "0",
            "--active-topic", names.active, "--passive-topic", names.passive,
        )  # fmt: skip
        assert simulated.returncode == 0, simulated.stderr.decode()

        banner = worker.log()
        assert "SASL_SSL, SCRAM-SHA-512 as 'remediator'" in banner
        for output in (banner, published.stderr, tailed.stderr, simulated.stdout):
            text = output if isinstance(output, str) else output.decode()
            assert PASSWORD not in text
    finally:
        worker.stop()


@pytest.mark.parametrize(
    ("override", "cause"),
    [
        (
            {
                "REMEDIATOR_BROKER_SASL_PASSWORD_FILE": "",
                "REMEDIATOR_BROKER_SASL_PASSWORD": WRONG,
            },
            "refused the SASL credentials of user 'remediator' (SCRAM-SHA-512)",
        ),
        (
            {"REMEDIATOR_BROKER_SASL_MECHANISM": "PLAIN"},
            "does not accept SASL mechanism PLAIN",
        ),
        (
            {"REMEDIATOR_BROKER_SSL_CAFILE": "other-ca"},
            "the broker's certificate is not trusted",
        ),
    ],
    ids=["wrong-password", "mechanism-not-offered", "untrusted-certificate"],
)
def test_a_refused_connection_stops_start_up_with_one_line_naming_the_cause(
    secure: SecureKafka, names: Names, tmp_path: Path, override: dict[str, str], cause: str
) -> None:
    if override.get("REMEDIATOR_BROKER_SSL_CAFILE") == "other-ca":
        override = {"REMEDIATOR_BROKER_SSL_CAFILE": str(secure.other_ca)}
    started = time.monotonic()
    worker = launch_worker(secure.broker, names, tmp_path, wait=False, **secure.env(**override))
    assert worker.process is not None
    try:
        code = worker.process.wait(timeout=30)  # well within the 60 s start-up timeout
    finally:
        worker.stop()
    seconds = time.monotonic() - started
    lines = [line for line in worker.log().splitlines() if line.strip()]
    assert code == 1, worker.log()
    assert cause in lines[-1], lines[-1]
    assert lines[-1].startswith("remediator: REMEDIATOR_BROKER: ")
    assert not any("Traceback" in line for line in lines)
    assert PASSWORD not in worker.log()
    assert WRONG not in worker.log()
    assert seconds < 20, f"took {seconds:.1f}s: refused credentials must not be retried"


def test_the_cli_refuses_a_wrong_password_in_one_line(secure: SecureKafka) -> None:
    done = cli(
        secure,
        "tail",
        "remediation-transitions",
        "--max",
        "1",
        REMEDIATOR_BROKER_SASL_PASSWORD_FILE="",
        REMEDIATOR_BROKER_SASL_PASSWORD=WRONG,
    )
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1, lines
    assert "refused the SASL credentials of user 'remediator'" in lines[0]
    assert WRONG not in lines[0]


def test_plain_text_to_a_tls_listener_says_what_to_check(secure: SecureKafka) -> None:
    done = cli(
        secure,
        "tail",
        "remediation-transitions",
        "--max",
        "1",
        REMEDIATOR_BROKER_SECURITY_PROTOCOL="PLAINTEXT",
        REMEDIATOR_BROKER_CONNECT_TIMEOUT="3",
        REMEDIATOR_BROKER_SASL_MECHANISM="",
        REMEDIATOR_BROKER_SASL_USERNAME="",
        REMEDIATOR_BROKER_SASL_PASSWORD_FILE="",
        REMEDIATOR_BROKER_SSL_CAFILE="",
    )
    (line,) = done.stderr.decode().strip().splitlines()
    assert "REMEDIATOR_BROKER_SECURITY_PROTOCOL" in line, line
