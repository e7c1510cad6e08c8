"""TLS for the REST API, the dashboard and ``/metrics``: the server and client contexts.

The worker serves HTTPS when given a certificate and its key
(``REMEDIATOR_WEB_TLS_CERTFILE``, ``REMEDIATOR_WEB_TLS_KEYFILE``); the command line
verifies that certificate against a CA file (``--cafile``, ``REMEDIATOR_API_CAFILE``) or,
without one, httpx's default CAs. The worker loads its files at start and the command line
its CA before any request, so a bad file is one line naming its setting, never a stack
trace. Standard library only: the command line imports this without Faust or aiohttp.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TLSFileError(ValueError):
    """A certificate, key or CA file cannot be used. ``setting`` names the variable's
    suffix (``CERTFILE``, ``KEYFILE``, ``CAFILE``); the message is one line."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class _EncryptedKey(Exception):
    """The key file asks for a passphrase, which a worker has no way to be given."""


def _no_passphrase() -> bytes:
    # Without a callback, OpenSSL would prompt on the terminal and the worker would hang.
    raise _EncryptedKey


def server_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """The worker's HTTPS context: TLS 1.2 or later, Python's default ciphers, the
    certificate (with its chain, in the same PEM file) and its unencrypted key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # Alone first, so that a file without a certificate is named as such.
        ssl.create_default_context(cafile=certfile)
    except (OSError, ssl.SSLError) as exc:
        raise TLSFileError(
            "CERTFILE", f"no PEM certificate in {certfile} ({_reason(exc)})"
        ) from None
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_passphrase)
    except _EncryptedKey:
        raise TLSFileError(
            "KEYFILE", f"{keyfile} is encrypted: give the key without a passphrase"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise TLSFileError(
            "KEYFILE", f"{keyfile} is not the private key of {certfile} ({_reason(exc)})"
        ) from None
    return context


def client_context(cafile: Path) -> ssl.SSLContext:
    """A client's context trusting only the CA(s) in ``cafile``; the server's host name is
    checked too. (Without a CA file, clients keep httpx's default: certifi's CAs, or
    ``SSL_CERT_FILE`` when set.)"""
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise TLSFileError("CAFILE", f"cannot load the CA file {cafile} ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).split("\n", 1)[0] or type(exc).__name__
