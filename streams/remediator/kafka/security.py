"""How every Kafka client the project creates reaches the broker: servers and security.

Production Kafka is nearly always behind TLS and SASL (MSK, Confluent Cloud, Strimzi). The
worker's Faust app, the API gateway, the transition stream, the end-offset probe, the
admin client, and the CLI's ``publish``, ``tail`` and ``simulate`` all build their clients
through :class:`Connection`, so a setting given once (``REMEDIATOR_BROKER_*``, see
``settings.py``) applies everywhere and nothing connects in plain text by mistake.

Secrets: the SASL password is held in a field that neither ``repr`` nor :meth:`describe`
shows; what is printed names the protocol, the mechanism, the user and the CA file.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # imported when a client is made: the settings load without aiokafka
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class SecurityError(ValueError):
    """A security setting cannot be used (unreadable file, bad PEM). One line;
    ``setting`` names the variable's suffix (``SSL_CAFILE``, ``SSL_CERTFILE``)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class BrokerSecurity:
    """TLS and SASL for broker connections; the default is plain text, no SASL."""

    protocol: Protocol = "PLAINTEXT"
    mechanism: Mechanism | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifies the broker's certificate and host name (against ``cafile``, else the
        system's CAs), and presents a client certificate when one is set."""
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.cafile)
        except (OSError, ssl.SSLError) as exc:
            reason = _reason(exc)
            message = f"cannot load the CA file {self.cafile} ({reason})"
            raise SecurityError("SSL_CAFILE", message) from None
        if self.certfile is not None:
            try:
                context.load_cert_chain(self.certfile, self.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise SecurityError(
                    "SSL_CERTFILE",
                    f"cannot load the client certificate {self.certfile} ({_reason(exc)})",
                ) from None
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's consumer, producer and admin client."""
        if self.protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password
        return kwargs

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (None for plain text)."""
        from faust.auth import SASLCredentials, SSLCredentials

        if self.uses_sasl:
            # SASL_SSL when given a context, SASL_PLAINTEXT without (Faust's rule).
            return SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context,
                mechanism=self.mechanism,
            )
        if self.uses_tls:
            return SSLCredentials(self.ssl_context)
        return None

    def describe(self) -> str:
        """For the banner and errors: never the password."""
        if self.protocol == "PLAINTEXT":
            return "plain text"
        parts: list[str] = [self.protocol]
        if self.uses_sasl:
            parts.append(f"{self.mechanism} as {self.username!r}")
        if self.uses_tls:
            parts.append(f"CA {self.cafile}" if self.cafile else "system CAs")
            if self.certfile is not None:
                parts.append(f"client certificate {self.certfile}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Connection:
    """Bootstrap servers and security: what every client of one broker needs."""

    servers: tuple[str, ...]
    security: BrokerSecurity = field(default_factory=BrokerSecurity)

    def consumer(self, *topics: str, **options: Any) -> AIOKafkaConsumer:
        from aiokafka import AIOKafkaConsumer

        servers = list(self.servers)
        return AIOKafkaConsumer(
            *topics, bootstrap_servers=servers, **self.security.client_kwargs(), **options
        )

    def producer(self, **options: Any) -> AIOKafkaProducer:
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(
            bootstrap_servers=list(self.servers), **self.security.client_kwargs(), **options
        )

    def admin(self, **options: Any) -> AIOKafkaAdminClient:
        from aiokafka.admin import AIOKafkaAdminClient

        return AIOKafkaAdminClient(
            bootstrap_servers=list(self.servers), **self.security.client_kwargs(), **options
        )

    def describe(self) -> str:
        return f"{','.join(self.servers)} ({self.security.describe()})"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).split("\n", 1)[0] or type(exc).__name__
