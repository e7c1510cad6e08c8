"""How the executor proves who it is to the compute control plane, and whom it trusts.

From the ``REMEDIATOR_CONTROL_PLANE_*`` settings (checked in ``settings.py``):

- a bearer token (``TOKEN``, or ``TOKEN_FILE`` read once at start), sent as
  ``Authorization: Bearer <token>`` on every control-plane call;
- for an ``https://`` URL, the CA(s) to trust (``CAFILE``; else the system's) and a client
  certificate with its key (``CERTFILE``, ``KEYFILE``) for a control plane that requires
  mutual TLS;
- credentials written into the URL (``https://user:password@host``) are taken out of it and
  sent as HTTP basic auth, so the URL that httpx holds, logs and puts in its errors has
  none; :func:`redact_url` is what anything printing a configured URL uses.

Secrets: neither ``repr`` nor :meth:`ControlPlaneCredentials.describe` shows the token or
the URL's password.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from remediator.kafka.security import SecurityError


@dataclass(frozen=True)
class ControlPlaneCredentials:
    """What every control-plane request carries; the default is nothing (plain HTTP)."""

    token: str | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """None: httpx's default verification. Else the control plane's certificate and
        host name are checked against ``cafile`` (or the system's CAs), and the client
        certificate is presented when one is set. Raises :class:`SecurityError` (one line,
        ``setting`` names ``CAFILE`` or ``CERTFILE``)."""
        if self.cafile is None and self.certfile is None:
            return None
        try:
            context = ssl.create_default_context(cafile=self.cafile)
        except (OSError, ssl.SSLError) as exc:
            message = f"cannot load the CA file {self.cafile} ({_reason(exc)})"
            raise SecurityError("CAFILE", message) from None
        if self.certfile is not None:
            try:
                context.load_cert_chain(self.certfile, self.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise SecurityError(
                    "CERTFILE",
                    f"cannot load the client certificate {self.certfile} with the key "
                    f"{self.keyfile} ({_reason(exc)})",
                ) from None
        return context

    def headers(self) -> dict[str, str]:
        """The headers every request carries (the bearer token, if any)."""
        return {"authorization": f"Bearer {self.token}"} if self.token is not None else {}

    def describe(self) -> str:
        """For the banner: what is presented and trusted, never a secret."""
        parts: list[str] = []
        if self.token is not None:
            parts.append("bearer token")
        if self.basic_auth is not None:
            parts.append("basic auth from the URL")
        if self.cafile is not None:
            parts.append(f"CA {self.cafile}")
        if self.certfile is not None:
            parts.append(f"client certificate {self.certfile}")
        return ", ".join(parts) or "no credentials"


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its ``user:password@`` part, and that part (decoded), if any."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (unquote(user), unquote(password))


def redact_url(url: str) -> str:
    """``url`` fit to print: whatever comes before the host's ``@`` (a user name and
    password) replaced by ``***``. Never fails, whatever the input: it also redacts the
    values that settings refuse, for the error that says so."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, _ = head.partition("://")
    return f"{scheme}://***@{tail}" if sep else f"***@{tail}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).split("\n", 1)[0] or type(exc).__name__
