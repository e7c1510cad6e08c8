"""Configuration from the environment (``REMEDIATOR_*``), validated once at start.

Every setting is a ``REMEDIATOR_*`` environment variable. :func:`load_settings` either
returns valid :class:`Settings` or raises :class:`ConfigError` whose message is one line
naming the variable, so a bad value stops the worker at start and never surfaces later as
a stack trace.
"""

from __future__ import annotations

import importlib.util
import os
import re
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from remediator.api import tls as webtls
from remediator.api.auth import NAMED_ROLES, Caller, Role
from remediator.domain.notify_policy import NotifyError, read_secrets
from remediator.domain.policy import (
    Policy,
    PolicyError,
    PolicyInForce,
    load_policy,
    load_policy_in_force,
)
from remediator.kafka.security import (
    BrokerSecurity,
    Connection,
    Mechanism,
    Protocol,
    SecurityError,
)
from remediator.pipeline.credentials import (
    ControlPlaneCredentials,
    redact_url,
    split_credentials,
)

ENV_PREFIX = "REMEDIATOR_"

_TOPIC_NAME = r"^[A-Za-z0-9._-]{1,249}$"
_LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # Prometheus label names
_PRINCIPAL = re.compile(r"^[A-Za-z0-9._@:+-]{1,128}$")


class ConfigError(Exception):
    """A setting is missing or malformed. The message is one line, naming the variable."""


#: Kafka's smallest allowed session timeout (group.min.session.timeout.ms): a dead worker's
#: partitions move within seconds, and Tansu, which holds a join for about half of it,
#: forms a group in about three.
DEFAULT_SESSION_TIMEOUT = 6.0


class BrokerSettings(BaseSettings):
    """Where the broker is and how to connect to it: all that the CLI's topic tools
    (``publish``, ``tail``, ``simulate``) read, and the first part of :class:`Settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    broker: str | None = Field(
        default=None,
        description=(
            "Kafka bootstrap servers, kafka://host:port, comma-separated for several (e.g. "
            "kafka://10.0.0.5:9092,kafka://10.0.0.6:9092). Unset: the worker starts an "
            "embedded Tansu broker on loopback and stops it on exit."
        ),
    )
    broker_security_protocol: Protocol = Field(
        default="PLAINTEXT",
        description=(
            "How to talk to the broker: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (TLS "
            "and SASL, what managed Kafkas use). Every client the service and its CLI create "
            "uses it. Not with the embedded broker (it speaks plain text only)."
        ),
    )
    broker_sasl_mechanism: Mechanism | None = Field(
        default=None,
        description="SASL mechanism, required with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    broker_sasl_username: str | None = Field(
        default=None, min_length=1, description="SASL user name, required with SASL_*."
    )
    broker_sasl_password: SecretStr | None = Field(
        default=None,
        description=(
            "SASL password (never printed). With SASL_*, this or "
            "REMEDIATOR_BROKER_SASL_PASSWORD_FILE, not both; the file is better than the "
            "environment."
        ),
    )
    broker_sasl_password_file: Path | None = Field(
        default=None,
        description=(
            "A file holding the SASL password (a trailing newline is ignored), e.g. a mounted "
            "Kubernetes secret: better than the environment. Never printed."
        ),
    )
    broker_ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the broker's certificate. Unset: the "
        "system's CAs. The broker's host name is always checked.",
    )
    broker_ssl_certfile: Path | None = Field(
        default=None,
        description="PEM client certificate, for brokers that require mutual TLS (the key "
        "may be in the same file or in REMEDIATOR_BROKER_SSL_KEYFILE).",
    )
    broker_ssl_keyfile: Path | None = Field(
        default=None,
        description=(
            "PEM private key of the client certificate (it may instead be in "
            "REMEDIATOR_BROKER_SSL_CERTFILE's file)."
        ),
    )
    broker_connect_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds to keep trying to reach the broker at start before giving up. "
        "A refused credential or certificate stops start-up at once.",
    )

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for entry in value.split(","):
            parse_server(entry.strip())
        return value.strip()

    @field_validator(
        "broker_sasl_mechanism",
        "broker_sasl_username",
        "broker_sasl_password",
        "broker_sasl_password_file",
        "broker_ssl_cafile",
        "broker_ssl_certfile",
        "broker_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_security(self) -> BrokerSettings:
        # Raised as one line naming the variable (see _one_line); never a secret's value.
        self.broker_security  # noqa: B018 - builds it: files readable, PEM loads
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` entries of the external broker (empty when embedded)."""
        if self.broker is None:
            return []
        return [parse_server(e.strip()) for e in self.broker.split(",")]

    @property
    def broker_security(self) -> BrokerSecurity:
        """TLS and SASL settings, checked (raises ValueError naming the variable)."""
        return _security(self)

    @property
    def connection(self) -> Connection:
        """What every Kafka client needs: servers and security."""
        return Connection(tuple(self.bootstrap_servers), self.broker_security)


def _security(s: BrokerSettings) -> BrokerSecurity:
    """The broker's security settings, checked together; the PEM files loaded now."""
    protocol = s.broker_security_protocol
    var = f"{ENV_PREFIX}BROKER_"
    _check_security_combination(s, var)
    password: str | None = None
    if protocol.startswith("SASL_"):
        if s.broker_sasl_mechanism is None:
            raise ValueError(
                f"{var}SASL_MECHANISM is required with {protocol} "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )
        if s.broker_sasl_username is None:
            raise ValueError(f"{var}SASL_USERNAME is required with {protocol}")
        password = _password(s, var)
    for name, path in _tls_files(s):
        if path is not None and not os.access(path, os.R_OK):
            raise ValueError(f"{var}{name}: cannot read {path}")
    security = BrokerSecurity(
        protocol=protocol,
        mechanism=s.broker_sasl_mechanism,
        username=s.broker_sasl_username,
        password=password,
        cafile=s.broker_ssl_cafile,
        certfile=s.broker_ssl_certfile,
        keyfile=s.broker_ssl_keyfile,
    )
    try:
        security.ssl_context  # noqa: B018 - load the PEM files now, not at first connect
    except SecurityError as exc:
        raise ValueError(f"{var}{exc.setting}: {exc}") from None
    return security


def _tls_files(s: BrokerSettings) -> list[tuple[str, Path | None]]:
    return [
        ("SSL_CAFILE", s.broker_ssl_cafile),
        ("SSL_CERTFILE", s.broker_ssl_certfile),
        ("SSL_KEYFILE", s.broker_ssl_keyfile),
    ]


def _check_security_combination(s: BrokerSettings, var: str) -> None:
    """A credential set for a protocol that would not use it is a mistake that would
    otherwise connect without it: refuse, naming both."""
    protocol = s.broker_security_protocol
    given_sasl = [
        name
        for name, value in (
            ("SASL_MECHANISM", s.broker_sasl_mechanism),
            ("SASL_USERNAME", s.broker_sasl_username),
            ("SASL_PASSWORD", s.broker_sasl_password),
            ("SASL_PASSWORD_FILE", s.broker_sasl_password_file),
        )
        if value is not None
    ]
    given_tls = [name for name, value in _tls_files(s) if value is not None]
    if given_sasl and not protocol.startswith("SASL_"):
        raise ValueError(
            f"{var}{given_sasl[0]} is set but {var}SECURITY_PROTOCOL is {protocol} "
            "(use SASL_SSL or SASL_PLAINTEXT)"
        )
    if given_tls and protocol not in ("SSL", "SASL_SSL"):
        raise ValueError(
            f"{var}{given_tls[0]} is set but {var}SECURITY_PROTOCOL is {protocol} "
            "(use SSL or SASL_SSL)"
        )
    if protocol != "PLAINTEXT" and s.broker is None:
        raise ValueError(
            f"{var}SECURITY_PROTOCOL is {protocol} but {ENV_PREFIX}BROKER is unset "
            "(the embedded broker speaks plain text only)"
        )
    if s.broker_ssl_keyfile is not None and s.broker_ssl_certfile is None:
        raise ValueError(f"{var}SSL_KEYFILE is set without {var}SSL_CERTFILE")


def _password(s: BrokerSettings, var: str) -> str:
    if s.broker_sasl_password is not None and s.broker_sasl_password_file is not None:
        raise ValueError(f"{var}SASL_PASSWORD and {var}SASL_PASSWORD_FILE are both set")
    if s.broker_sasl_password_file is not None:
        try:
            text = s.broker_sasl_password_file.read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8"
            raise ValueError(
                f"{var}SASL_PASSWORD_FILE: cannot read {s.broker_sasl_password_file} ({reason})"
            ) from None
        if not text:
            raise ValueError(f"{var}SASL_PASSWORD_FILE: {s.broker_sasl_password_file} is empty")
        return text
    if s.broker_sasl_password is None or not s.broker_sasl_password.get_secret_value():
        raise ValueError(f"{var}SASL_PASSWORD or {var}SASL_PASSWORD_FILE is required")
    return s.broker_sasl_password.get_secret_value()


def _control_plane_credentials(s: Settings) -> ControlPlaneCredentials:
    var = f"{ENV_PREFIX}CONTROL_PLANE_"
    token = _control_plane_token(s, var)
    basic = None if s.control_plane_url is None else split_credentials(s.control_plane_url)[1]
    if basic is not None and token is not None:
        raise ValueError(
            f"{var}URL holds credentials (user:password@) and a {var}TOKEN is set: use one"
        )
    if s.control_plane_certfile is not None and s.control_plane_keyfile is None:
        raise ValueError(f"{var}CERTFILE is set without {var}KEYFILE")
    if s.control_plane_keyfile is not None and s.control_plane_certfile is None:
        raise ValueError(f"{var}KEYFILE is set without {var}CERTFILE")
    files = [
        (name, path)
        for name, path in (
            ("CAFILE", s.control_plane_cafile),
            ("CERTFILE", s.control_plane_certfile),
            ("KEYFILE", s.control_plane_keyfile),
        )
        if path is not None
    ]
    # A TLS file given for a connection that would not use it is a mistake that would
    # otherwise go unnoticed (and talk in plain text): refuse, naming both.
    if files and s.control_plane_url is None:
        raise ValueError(
            f"{var}{files[0][0]} is set but {var}URL is unset (the built-in simulated "
            "control plane speaks plain HTTP)"
        )
    if files and urlsplit(s.control_plane_url or "").scheme != "https":
        raise ValueError(f"{var}{files[0][0]} is set but {var}URL is not https://")
    for name, path in files:
        if not os.access(path, os.R_OK):
            raise ValueError(f"{var}{name}: cannot read {path}")
    credentials = ControlPlaneCredentials(
        token=token,
        basic_auth=basic,
        cafile=s.control_plane_cafile,
        certfile=s.control_plane_certfile,
        keyfile=s.control_plane_keyfile,
    )
    try:
        credentials.ssl_context  # noqa: B018 - load the PEM files now, not at the first call
    except SecurityError as exc:
        raise ValueError(f"{var}{exc.setting}: {exc}") from None
    return credentials


def _control_plane_token(s: Settings, var: str) -> str | None:
    if s.control_plane_token is not None and s.control_plane_token_file is not None:
        raise ValueError(f"{var}TOKEN and {var}TOKEN_FILE are both set")
    name = f"{var}TOKEN"
    if s.control_plane_token_file is not None:
        name = f"{var}TOKEN_FILE"
        path = s.control_plane_token_file
        try:
            token = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8"
            raise ValueError(f"{name}: cannot read {path} ({reason})") from None
        if not token:
            raise ValueError(f"{name}: {path} is empty")
    elif s.control_plane_token is not None:
        token = s.control_plane_token.get_secret_value().strip()
    else:
        return None
    # It goes into a header: printable ASCII without spaces (RFC 6750's token68 and
    # more), else httpx would fail on every call rather than at start.
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise ValueError(f"{name}: the token must be printable ASCII without spaces")
    return token


class Settings(BrokerSettings):
    """The service's settings. Each field is read from ``REMEDIATOR_<FIELD NAME>``."""

    app_id: str = Field(
        default="remediator",
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Consumer group and app id. Workers with the same id share the work; "
        "internal topics and tables are prefixed with it.",
    )
    web_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description=("REST API (and dashboard, /metrics) bind address."),
    )
    web_port: int = Field(
        default=6066, ge=1, le=65535, description=("REST API (and dashboard, /metrics) port.")
    )
    web_tls_certfile: Path | None = Field(
        default=None,
        description=(
            "PEM certificate (its chain after it) of the REST API, dashboard and /metrics. "
            "Set with REMEDIATOR_WEB_TLS_KEYFILE: they are then served over HTTPS only (TLS "
            "1.2+). One without the other, an unreadable file, or a certificate and key that "
            "do not load together stop start-up with one line. Clients: --cafile / "
            "REMEDIATOR_API_CAFILE for the command line, SSL_CERT_FILE for the provider's "
            "SDK; Prometheus needs scheme: https and a tls_config."
        ),
    )
    web_tls_keyfile: Path | None = Field(
        default=None,
        description="PEM private key (unencrypted) of REMEDIATOR_WEB_TLS_CERTFILE.",
    )
    public_url: str | None = Field(
        default=None,
        description="The base URL people reach this service's dashboard at (e.g. "
        "https://remediator.example.com), for the links in notifications ([[notify]] in "
        "the policy). Unset: http(s)://REMEDIATOR_WEB_HOST:REMEDIATOR_WEB_PORT.",
    )
    api_tokens: str = Field(
        default="",
        description=(
            "Comma-separated principal:role=token entries for the REST API, the dashboard and "
            "the Alertmanager webhook; role viewer, operator, admin or webhook. "
            "principal=token (no role) has every right, as before 0.5. An unknown role stops "
            "start-up."
        ),
    )
    api_tokens_file: Path | None = Field(
        default=None,
        description=(
            "A file of more such entries, one a line (e.g. a mounted secret); # at the start "
            "of a line or after a blank starts a comment. A token in both this file and "
            "REMEDIATOR_API_TOKENS is refused."
        ),
    )
    control_plane_url: str | None = Field(
        default=None,
        description="Base URL of the compute control plane. Unset: a built-in simulated "
        "control plane is used.",
    )
    control_plane_token: SecretStr | None = Field(
        default=None,
        description=(
            "Sent as Authorization: Bearer ... on every control-plane call (never printed). "
            "Prefer REMEDIATOR_CONTROL_PLANE_TOKEN_FILE; not both. user:password@ in the URL "
            "is sent as basic auth instead (not with a token) and printed as ***@. With no "
            "URL set, the built-in simulated control plane requires it (else a token made up "
            "at start)."
        ),
    )
    control_plane_token_file: Path | None = Field(
        default=None,
        description=(
            "A file holding that token, read at start (surrounding whitespace ignored), e.g. "
            "a mounted Kubernetes secret: better than the environment."
        ),
    )
    control_plane_cafile: Path | None = Field(
        default=None,
        description=(
            "PEM file of the CA(s) that signed the control plane's certificate; https:// URL "
            "only. Unset: the system's CAs. The host name is always checked."
        ),
    )
    control_plane_certfile: Path | None = Field(
        default=None,
        description=(
            "PEM client certificate, for a control plane that requires mutual TLS (with "
            "REMEDIATOR_CONTROL_PLANE_KEYFILE: both or neither); https:// URL only."
        ),
    )
    control_plane_keyfile: Path | None = Field(
        default=None,
        description=(
            "PEM private key of the control-plane client certificate (with "
            "REMEDIATOR_CONTROL_PLANE_CERTFILE: both or neither)."
        ),
    )
    data_dir: Path = Field(
        default=Path("remediator-data"),
        description=(
            "Local state: table stores, the embedded broker's log. Each running worker claims "
            "DATA_DIR/APP_ID (a lock file; a second worker of the same app id on the same "
            "directory takes APP_ID@2, and so on: RocksDB lets one process open a database). "
            "Local RocksDB files ahead of their changelogs (the embedded broker keeps topics "
            "in memory only; a topic deleted and created again) are removed at start, with a "
            "WARNING, and rebuilt from the changelog."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description=(
            "Log level of the worker. The frameworks' own info lines (Faust's start-up "
            "tables, mode's 'Starting...', aiokafka's group joins, httpx's per-request lines) "
            "show only at debug."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: readable lines; json: one JSON object per line, with "
        "remediation_id, cluster_id and instance_id where they apply.",
    )
    partitions: int = Field(
        default=8,
        ge=1,
        le=1024,
        description=(
            "Partitions of the internal inbox topic and its tables, and of topics the worker "
            "creates. Fixed for the life of an app id (it decides which worker owns which "
            "instance)."
        ),
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=16,
        description=("Replication factor of topics the worker creates. Use 3 on a real cluster."),
    )
    create_topics: bool = Field(
        default=True,
        description="Create missing input and output topics at start (internal topics are "
        "always created).",
    )
    topic_active_runs: str = Field(
        default="active-health-check-runs",
        pattern=_TOPIC_NAME,
        description=("Input topic: active health check runs."),
    )
    topic_passive_events: str = Field(
        default="passive-health-check-events",
        pattern=_TOPIC_NAME,
        description=("Input topic: passive health check events."),
    )
    topic_transitions: str = Field(
        default="remediation-transitions",
        pattern=_TOPIC_NAME,
        description=("Output topic: every state change of every remediation."),
    )
    topic_dead_letter: str = Field(
        default="remediator-dead-letter",
        pattern=_TOPIC_NAME,
        description=("Dead-letter topic: input that could not be used, with the reason."),
    )
    topic_policy_events: str = Field(
        default="remediator-policy-events",
        pattern=_TOPIC_NAME,
        description=(
            "Policy events topic: what the safety policy decided about a cluster (blast "
            "radius, budget, verification, ...)."
        ),
    )
    topic_audit: str = Field(
        default="remediator-audit",
        pattern=_TOPIC_NAME,
        description=(
            "The audit trail's topic: every mutating API call, done or refused: who, what, "
            "the outcome."
        ),
    )
    policy_file: Path | None = Field(
        default=None,
        description=(
            "The safety policy (TOML), layered over the built-in defaults; checked at start. "
            "Unset: the default policy shipped with the package (default-policy.toml)."
        ),
    )
    dedup_ttl_seconds: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="How long a run_id/event_id is remembered at most, in event time behind "
        "the instance's newest signal; an older signal is stale and ignored.",
    )
    dedup_max_ids: int = Field(
        default=32,
        ge=1,
        le=100_000,
        description="Signal ids remembered per instance (its most recent, by event time). A "
        "signal older than all of them is stale and ignored: it may repeat one forgotten, and "
        "it is older than that many newer signals of the instance.",
    )
    table_store: Literal["memory", "rocksdict"] = Field(
        default="memory",
        description=(
            "Where the hot tables (instances' and clusters' records, claimed ids) live: "
            "memory (rebuilt from their changelogs at start) or rocksdict (RocksDB files "
            "under REMEDIATOR_DATA_DIR; a restart reads only the changelogs' tail). The cold "
            "tables (closed remediations, recent decisions: history that grows with the "
            "fleet's age) are in RocksDB either way (since 0.4), so memory does not grow with "
            "history."
        ),
    )
    rocksdb_memory_mb: int = Field(
        default=8,
        ge=4,
        le=64 * 1024,
        description=(
            "Memory for RocksDB, MiB: one block cache shared by every table partition the "
            "worker keeps in RocksDB, their memtables charged to it (Faust's defaults were up "
            "to 64 MiB of memtables and a 2 GiB cache per partition). What does not fit is "
            "read from the files (the OS page cache)."
        ),
    )
    max_input_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest input message accepted; a larger one goes to the dead-letter "
        "topic (with a prefix of it, its size and SHA-256).",
    )
    max_output_bytes: int = Field(
        default=1_000_000,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description=(
            "Largest record the worker writes (key and value). Just under Apache Kafka's "
            "default message.max.bytes (1048588); set it below the broker's or the topics' "
            "limit if those are lower. Outputs are kept far smaller; one that is still larger "
            "is dropped (never retried for ever, which would stall its partition), with a "
            "CRITICAL log line, remediator_output_records_dropped_total{topic,reason} and a "
            "dead letter describing it."
        ),
    )
    batch_max: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most input records applied in one batch (one ack wait, one write pass). "
        "A batch is what was fetched and not yet applied: no wait to fill it.",
    )
    commit_interval_seconds: float = Field(
        default=2.8,
        gt=0,
        le=3600,
        description="How often processed input offsets are committed (a crash replays at most "
        "about this much input; repeats are harmless).",
    )
    embedded_broker_port: int = Field(
        default=9092,
        ge=0,
        le=65535,
        description="Port of the embedded broker when REMEDIATOR_BROKER is unset; 0 picks a "
        "free port.",
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        le=10000,
        description=(
            "Longest wait of a consumer fetch. Kafka answers as soon as data arrives; Tansu "
            "waits this long, so it bounds each hop's latency there (Faust's fixed 1500 made "
            "every API call take about 0.75 s)."
        ),
    )
    api_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description=(
            "How long an API request waits for the owner of the instance to answer before a "
            "503 (during a rebalance or a restart); also how long the Alertmanager webhook "
            "waits for the broker's acknowledgements before a 503."
        ),
    )
    broker_session_timeout: float | None = Field(
        default=None,
        gt=0,
        le=300,
        description=(
            "Consumer group session timeout in seconds; unset: 6, the same with the embedded "
            "broker and any other (0.1 had 3 embedded and 45 otherwise: two workers started "
            "the two ways rebalanced every few seconds). 6 is Kafka's smallest allowed "
            "(group.min.session.timeout.ms); a dead worker's partitions move within it; Tansu "
            "holds a group join for about half of it, so a group forms in about three "
            "seconds. Whatever its value, heartbeats go at most a second apart and a "
            "rebalance may take 10 s on every worker, so workers of one app id that disagree "
            "still converge."
        ),
    )

    max_running_per_cluster: int = Field(
        default=2,
        ge=0,
        le=10000,
        description="At most this many remediations RUNNING at once per cluster; the rest "
        "wait in PENDING, first approved first started. 0 starts none (execution off).",
    )
    control_plane_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Timeout of one control-plane HTTP request; a timeout is retried.",
    )
    control_plane_retry_max_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest backoff between retries of a failed control-plane request "
        "(exponential from 0.5 s, with jitter). Retries never give up.",
    )
    poll_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description=(
            "First interval between polls of a running operation; grows by 1.5x per poll, "
            "with jitter."
        ),
    )
    poll_interval_max_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest interval between polls of a running operation.",
    )
    step_timeout_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A step the control plane still reports RUNNING this long after it "
        "started fails the remediation. Time the control plane is unreachable is not "
        "held against it: the verdict needs an answer.",
    )
    stall_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="An assigned partition with lag whose committed offset has not moved "
        "for this long is re-seeked to its committed offset (a safety net against a record "
        "stuck after a rebalance; repeats are harmless). 0 switches the check off.",
    )
    simulator_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "Port of the built-in simulated control plane (loopback) when "
            "REMEDIATOR_CONTROL_PLANE_URL is unset; 0 picks a free port (make run uses 6067)."
        ),
    )

    alertmanager_cluster_label: str = Field(
        default="cluster_id",
        pattern=_LABEL_NAME,
        description=(
            "Alertmanager webhook: the alert label holding the cluster id (a Prometheus label "
            "name)."
        ),
    )
    alertmanager_instance_label: str = Field(
        default="instance_id",
        pattern=_LABEL_NAME,
        description=(
            "Alertmanager webhook: the alert label holding the instance id (also the produced "
            "event's key)."
        ),
    )
    alertmanager_instance_name_label: str = Field(
        default="instance_name",
        pattern=_LABEL_NAME,
        description="Alertmanager webhook: the alert label holding the instance's display "
        "name (optional on the alert).",
    )

    @field_validator("web_tls_certfile", "web_tls_keyfile", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_web_tls(self) -> Settings:
        self.web_ssl_context  # noqa: B018 - loads the files now, not at the first request
        return self

    @property
    def web_ssl_context(self) -> ssl.SSLContext | None:
        """The API's HTTPS context; None serves plain HTTP (raises ValueError naming the
        variable when the files cannot be used)."""
        return _web_tls(self.web_tls_certfile, self.web_tls_keyfile)

    @property
    def web_scheme(self) -> str:
        return "http" if self.web_tls_certfile is None else "https"

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.strip().rstrip("/")

    @property
    def dashboard_base_url(self) -> str:
        """Where people reach the dashboard: REMEDIATOR_PUBLIC_URL, else the web address."""
        if self.public_url is not None:
            return self.public_url
        wildcard = self.web_host in ("0.0.0.0", "::", "")  # noqa: S104 - compared, not bound
        return f"{self.web_scheme}://{'localhost' if wildcard else self.web_host}:{self.web_port}"

    @field_validator("policy_file")
    @classmethod
    def _check_policy_file(cls, value: Path | None) -> Path | None:
        if value is None or not str(value).strip():
            return None
        try:
            read_secrets(load_policy(value).notify, value)  # unreadable: stop at start
        except (PolicyError, NotifyError) as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("table_store")
    @classmethod
    def _check_table_store(cls, value: str) -> str:
        if value == "rocksdict" and importlib.util.find_spec("rocksdict") is None:
            raise ValueError("rocksdict is not installed (pip install rocksdict)")
        return value

    @property
    def policy(self) -> Policy:
        """The policy in force (checked when the settings were loaded)."""
        return load_policy(self.policy_file)

    @property
    def policy_in_force(self) -> PolicyInForce:
        """The policy with its source and the SHA-256 of its text."""
        return load_policy_in_force(self.policy_file)

    @field_validator("app_id")
    @classmethod
    def _check_app_id(cls, value: str) -> str:
        # The app id names a directory under REMEDIATOR_DATA_DIR (and topics).
        if value in (".", ".."):
            raise ValueError(f"{value!r} names a directory, not an app id")
        return value

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, value: str) -> str:
        parse_tokens(value)
        return value

    @model_validator(mode="after")
    def _check_tokens_file(self) -> Settings:
        self.tokens  # noqa: B018 - read and check the file now, not at the first request
        return self

    @field_validator("control_plane_url")
    @classmethod
    def _check_control_plane_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        shown = redact_url(value)  # user:password@ never printed
        try:
            parts = urlsplit(value.strip())
        except ValueError:
            raise ValueError(f"expected an http:// or https:// URL, got {shown!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {shown!r}")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"bad port in {shown!r}") from None
        return value.strip().rstrip("/")

    @field_validator(
        "control_plane_token",
        "control_plane_token_file",
        "control_plane_cafile",
        "control_plane_certfile",
        "control_plane_keyfile",
        mode="before",
    )
    @classmethod
    def _blank_control_plane_setting_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_control_plane(self) -> Settings:
        # Raised as one line naming the variable (see _one_line); never a secret's value.
        self.control_plane_credentials  # noqa: B018 - reads the token file, loads the PEM files
        return self

    @property
    def control_plane_credentials(self) -> ControlPlaneCredentials:
        """The token, basic auth from the URL, CA and client certificate, checked
        (raises ValueError naming the variable)."""
        return _control_plane_credentials(self)

    @property
    def control_plane_base_url(self) -> str | None:
        """The control plane's URL without its ``user:password@`` (sent as basic auth)."""
        if self.control_plane_url is None:
            return None
        return split_credentials(self.control_plane_url)[0]

    @property
    def tokens(self) -> dict[str, Caller]:
        """Token -> the principal and role it authenticates, from both settings."""
        tokens = parse_tokens(self.api_tokens)
        if self.api_tokens_file is not None:
            var = f"{ENV_PREFIX}API_TOKENS_FILE"
            try:
                text = self.api_tokens_file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8"
                raise ValueError(f"{var}: cannot read {self.api_tokens_file} ({reason})") from None
            # A comment starts a line or follows a blank: a token may hold "#" itself.
            lines = [re.sub(r"(^|\s)#.*", "", line) for line in text.splitlines()]
            try:
                more = parse_tokens(lines)
            except ValueError as exc:
                raise ValueError(f"{var}: {exc}") from None
            if set(more) & set(tokens):
                raise ValueError(f"{var}: a token is also in {ENV_PREFIX}API_TOKENS")
            tokens.update(more)
        return tokens

    @property
    def session_timeout(self) -> float:
        """Seconds; 6 unless set, with the embedded broker and any other: one group
        configuration everywhere, so that workers started different ways agree."""
        return self.broker_session_timeout or DEFAULT_SESSION_TIMEOUT

    @property
    def replies_topic(self) -> str:
        """The internal topic of replies to API commands."""
        return f"{self.app_id}-replies"

    @property
    def inbox_topic(self) -> str:
        """The internal topic of everything about a cluster, partitioned by cluster."""
        return f"{self.app_id}-cluster-inbox"


def _web_tls(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    var = f"{ENV_PREFIX}WEB_TLS_"
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        given, missing = ("CERTFILE", "KEYFILE") if keyfile is None else ("KEYFILE", "CERTFILE")
        raise ValueError(f"{var}{given} is set without {var}{missing} (give both, or neither)")
    for name, path in (("CERTFILE", certfile), ("KEYFILE", keyfile)):
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ValueError(f"{var}{name}: cannot read {path}")
    try:
        return webtls.server_context(certfile, keyfile)
    except webtls.TLSFileError as exc:
        raise ValueError(f"{var}{exc.setting}: {exc}") from None


def parse_server(entry: str) -> str:
    raw = entry
    if "://" in entry:
        scheme, _, entry = entry.partition("://")
        if scheme != "kafka":
            raise ValueError(f"unsupported scheme {scheme!r} in {raw!r} (use kafka://host:port)")
    host, sep, port = entry.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in entry:
        raise ValueError(f"expected kafka://host:port, got {raw!r}")
    return f"{host}:{port}"


def parse_tokens(value: str | Sequence[str]) -> dict[str, Caller]:
    """Parse ``principal[:role]=token`` entries (comma-separated, or one per item) into
    token -> caller. No role: every right (the only form before roles existed).

    A role that is not one of :data:`NAMED_ROLES` is refused rather than read as part of
    the principal: a typo must not grant every right. Error messages never include a token.
    """
    entries = value.split(",") if isinstance(value, str) else value
    tokens: dict[str, Caller] = {}
    for number, entry in enumerate(entries, start=1):
        entry = entry.strip()
        if not entry:
            continue
        who, sep, token = entry.partition("=")
        who, token = who.strip(), token.strip()
        if not sep or not who or not token:
            raise ValueError(f"entry {number} is not principal=token or principal:role=token")
        principal, colon, role_name = who.rpartition(":")
        if not colon:
            principal, role = who, Role.UNRESTRICTED
        elif role_name in {r.value for r in NAMED_ROLES}:
            role = Role(role_name)
        else:
            roles = ", ".join(r.value for r in NAMED_ROLES)
            raise ValueError(f"entry {number}: unknown role {role_name!r} (one of {roles})")
        if not _PRINCIPAL.match(principal):
            raise ValueError(f"entry {number}: principal {principal!r} has unexpected characters")
        if token in tokens:
            raise ValueError(f"entry {number}: the same token is given twice")
        tokens[token] = Caller(principal, role)
    return tokens


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check the settings; raise :class:`ConfigError` (one line) if any is bad."""
    return _load(Settings, environ)


def load_broker_settings(environ: Mapping[str, str] | None = None) -> BrokerSettings:
    """Only the broker and its security (for the CLI's topic tools): the rest of the
    worker's settings need not be valid, or set, where they run."""
    return _load(BrokerSettings, environ)


_S = TypeVar("_S", bound=BrokerSettings)


def _load(model: type[_S], environ: Mapping[str, str] | None) -> _S:
    env = dict(os.environ if environ is None else environ)
    ours = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    try:
        return model.model_validate(
            {
                k[len(ENV_PREFIX) :].lower(): v
                for k, v in ours.items()
                if k[len(ENV_PREFIX) :].lower() in model.model_fields
            }
        )
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


#: Variables read elsewhere than :class:`Settings`: ``failpoints``; the command line's CA
#: file for an HTTPS API (``console/commands.py``); docker-compose.yml's publish address.
_OTHER_VARIABLES = frozenset(
    {"REMEDIATOR_TEST_FAILPOINTS", "REMEDIATOR_API_CAFILE", "REMEDIATOR_PUBLISH_HOST"}
)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``REMEDIATOR_*`` variables that name no setting (likely typos): worth a warning."""
    env = os.environ if environ is None else environ
    return sorted(
        k
        for k in env
        if k.startswith(ENV_PREFIX)
        and k not in _OTHER_VARIABLES
        and k[len(ENV_PREFIX) :].lower() not in Settings.model_fields
    )


def _one_line(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            message = f"{ENV_PREFIX}{str(error['loc'][0]).upper()}: {message}"
        problems.append(message)  # a check of several settings names them itself
    return "invalid configuration: " + "; ".join(problems)
