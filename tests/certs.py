"""Certificates made at test time (trustme): a CA, a server certificate it signs for the
loopback names, and a second CA that signed nothing here (a client trusting only that
one must refuse the server). For the broker's TLS listener (test_broker_security.py) and
the worker's HTTPS API (test_api_tls.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization


@dataclass(frozen=True)
class Certificates:
    ca: Path  # PEM of the CA that signed ``cert``
    other_ca: Path  # PEM of a CA that signed nothing
    cert: Path  # the server's certificate chain, PEM, for 127.0.0.1 and localhost
    key: Path  # its private key, unencrypted PKCS#8 PEM (what Kafka's PEM key store reads)


def make_certificates(directory: Path) -> Certificates:
    """Write the CA, the other CA, the server certificate and its key into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    made = Certificates(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        cert=directory / "server-cert.pem",
        key=directory / "server-key.pem",
    )
    ca.cert_pem.write_to_path(str(made.ca))
    trustme.CA().cert_pem.write_to_path(str(made.other_ca))
    made.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    made.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return made
