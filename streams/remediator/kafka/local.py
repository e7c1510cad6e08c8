"""A local Apache Kafka: the real broker, one KRaft node on loopback, for tests and users.

Production runs Apache Kafka (or a managed Kafka), so every guarantee the project publishes
is measured on it too: the test suite's Kafka tier, ``make test-faults BROKER=kafka``,
``make bench BROKER=kafka``, and ``make kafka`` for a user who wants a local broker. The
embedded default of ``remediator worker`` stays Tansu (``embedded.py``): trying the
service needs no Java.

How it runs (no tarball, no Docker):

1. :func:`fetch` copies the pinned broker's jars from Maven Central into a cache outside
   the work tree (``$REMEDIATOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/remediator``, else
   ``~/.cache/remediator``) with ``mvn dependency:copy-dependencies`` on ``pom.xml`` beside
   this module. Done once per version; later starts need no network.
2. :class:`LocalKafka` writes ``server.properties`` into its directory, formats the log
   directory (``kafka.tools.StorageTool format``, SCRAM users created there), starts
   ``java kafka.Kafka`` with broker and controller in one process, and waits until the
   broker logs that it has started and accepts connections.

Optionally a second listener speaks SASL_SSL (PEM key store, SCRAM-SHA-256/512 and PLAIN
users): the security tests connect the worker to it exactly as to a managed Kafka.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

#: The Apache Kafka release the project is tested on (also the default in pom.xml).
KAFKA_VERSION = "4.1.1"

_POM = Path(__file__).with_name("pom.xml")
_STARTED = "Kafka Server started"
_PR_SET_PDEATHSIG = 1


class LocalKafkaError(RuntimeError):
    """Apache Kafka could not be fetched or started. The message is one line."""


def cache_dir() -> Path:
    """Where fetched brokers live (outside the work tree, shared by clones)."""
    explicit = os.environ.get("REMEDIATOR_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "remediator"


def java_binary() -> str | None:
    """``$JAVA_HOME/bin/java`` or the ``java`` on PATH; None when there is none."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def unavailable_reason() -> str | None:
    """Why Apache Kafka cannot run here (one line), or None when it can (java present,
    and the jars fetched already or Maven present to fetch them)."""
    if java_binary() is None:
        return "no java on PATH (Apache Kafka 4 needs Java 17+; set JAVA_HOME or install a JDK)"
    if not _complete(_libs(KAFKA_VERSION)) and shutil.which("mvn") is None:
        return f"Apache Kafka {KAFKA_VERSION} is not fetched yet and there is no mvn to fetch it"
    return None


def _libs(version: str) -> Path:
    return cache_dir() / f"kafka-{version}" / "libs"


def _complete(libs: Path) -> bool:
    return (libs / ".complete").exists()


def fetch(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """The directory of the broker's jars, fetched through Maven on first use."""
    libs = _libs(version)
    if _complete(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("Apache Kafka: mvn not found (needed once, to fetch the broker)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    # Two processes may fetch at once (a test run and `make kafka`): one does, one waits.
    with (libs.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(libs):
            return libs
        partial = libs.with_name("libs.partial")
        shutil.rmtree(partial, ignore_errors=True)
        if not quiet:
            print(f"fetching Apache Kafka {version} with Maven into {libs}", file=sys.stderr)
        argv = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(_POM),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["(no output)"]
            raise LocalKafkaError(f"Apache Kafka: mvn failed to fetch {version}: {last[0]}")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        (libs / ".complete").write_text(version)
    return libs


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL listener: the broker's key and certificate chain in one PEM file
    (PKCS#8 key), and the SASL users it knows."""

    keystore_pem: Path
    scram_users: Mapping[str, str] = field(default_factory=dict)
    plain_users: Mapping[str, str] = field(default_factory=dict)
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


#: Broker settings for a single node on a developer's machine: one replica of everything,
#: groups that form at once, few threads on a small machine. Topic auto-creation is off, as
#: on most production clusters: whatever the worker needs it must create itself.
BASE_PROPERTIES: dict[str, str] = {
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "8",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "false",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "background.threads": "4",
    "log.cleaner.threads": "1",
}


class LocalKafka:
    """One Apache Kafka node (broker and KRaft controller) on loopback.

    ``start()`` returns once the broker serves; ``stop()`` stops it and, unless a
    ``data_dir`` was given, removes its files. ``properties`` override
    :data:`BASE_PROPERTIES` (e.g. ``group.min.session.timeout.ms`` for short sessions).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        data_dir: Path | None = None,
        log_dir: Path | None = None,
        properties: Mapping[str, str] | None = None,
        secure: SecureListener | None = None,
        heap: str = "1g",
        version: str = KAFKA_VERSION,
        advertised_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        # Clients are told to connect here (the fault suite puts a TCP proxy there); the
        # broker itself talks to itself on an internal listener of its own.
        self.advertised_port = advertised_port or self.port
        self._internal_port = free_port(host)
        self.version = version
        self.secure = secure
        self.secure_port = free_port(host) if secure is not None else None
        self._controller_port = free_port(host)
        self._own_dir = data_dir is None
        self.directory = data_dir or Path(tempfile.mkdtemp(prefix="remediator-kafka-"))
        self.log_dir = log_dir or self.directory
        self.properties = {**BASE_PROPERTIES, **(properties or {})}
        self.heap = heap
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.address}"

    @property
    def secure_url(self) -> str:
        if self.secure_port is None:
            raise ValueError("this broker has no SASL_SSL listener")
        return f"kafka://{self.host}:{self.secure_port}"

    @property
    def name(self) -> str:
        """What the bench and the fault suite print and record: ``kafka 4.1.1``."""
        return f"kafka {self.version}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"kafka-{self.port}.log"

    def start(self, timeout: float = 90.0) -> str:
        """Fetch (first time only), format, start, wait until it serves; ``host:port``."""
        java = java_binary()
        if java is None:
            raise LocalKafkaError("Apache Kafka: " + (unavailable_reason() or "no java"))
        libs = fetch(self.version)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        classpath = f"{libs}/*"
        jvm = [java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        jvm += ["-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self._log4j()}"]
        if not (self.directory / "meta.properties").exists():
            self._format(jvm, classpath, config)
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own fixed argv
                [*jvm, "-cp", classpath, "kafka.Kafka", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches our process, which stops it
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self._wait_serving(timeout)
        return self.address

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def kill(self) -> None:
        """kill -9 the broker (its files stay, unlike :meth:`stop` with a temp dir)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self) -> Path:
        data = self.directory / "data"
        listeners = {
            "PLAINTEXT": self.port,
            "INTERNAL": self._internal_port,
            "CONTROLLER": self._controller_port,
        }
        protocols = {"PLAINTEXT": "PLAINTEXT", "INTERNAL": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
        advertised = [
            f"PLAINTEXT://{self.host}:{self.advertised_port}",
            f"INTERNAL://{self.host}:{self._internal_port}",
        ]
        lines = dict(self.properties)
        if self.secure is not None and self.secure_port is not None:
            listeners["SECURE"] = self.secure_port
            protocols["SECURE"] = "SASL_SSL"
            advertised.append(f"SECURE://{self.host}:{self.secure_port}")
            lines.update(_secure_properties(self.secure))
        lines.update(
            {
                "process.roles": "broker,controller",
                "node.id": "1",
                "controller.quorum.voters": f"1@{self.host}:{self._controller_port}",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "INTERNAL",
                "listeners": ",".join(f"{n}://{self.host}:{p}" for n, p in listeners.items()),
                "advertised.listeners": ",".join(advertised),
                "listener.security.protocol.map": ",".join(
                    f"{n}:{p}" for n, p in protocols.items()
                ),
                "log.dirs": str(data),
            }
        )
        path = self.directory / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return path

    def _log4j(self) -> Path:
        path = self.directory / "log4j2.properties"
        path.write_text(
            "status = warn\n"
            "appender.out.type = Console\n"
            "appender.out.name = out\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = info\n"
            "rootLogger.appenderRef.out.ref = out\n"
            # The request log and the controller's per-record lines drown the rest.
            "logger.request.name = kafka.request.logger\n"
            "logger.request.level = warn\n"
            "logger.state.name = state.change.logger\n"
            "logger.state.level = warn\n"
        )
        return path

    def _format(self, jvm: list[str], classpath: str, config: Path) -> None:
        cluster_id = _cluster_id()
        argv = [*jvm, "-cp", classpath, "kafka.tools.StorageTool", "format"]
        argv += ["-t", cluster_id, "-c", str(config), "--ignore-formatted"]
        if self.secure is not None:
            for user, password in self.secure.scram_users.items():
                for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                    argv += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            lines = [line for line in done.stdout.splitlines() if "SLF4J" not in line]
            raise LocalKafkaError(f"Apache Kafka: format failed: {(lines or ['?'])[-1]}")

    def _wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None  # noqa: S101 - set by start()
            if self._process.poll() is not None:
                raise LocalKafkaError(
                    f"Apache Kafka exited with code {self._process.returncode}: "
                    f"{self._last_error()} (log: {self.log_path})"
                )
            if _STARTED in self._log_tail() and _accepts(self.host, self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise LocalKafkaError(
            f"Apache Kafka did not start in {timeout:.0f}s (log: {self.log_path})"
        )

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 256 * 1024))
                return handle.read().decode(errors="replace")
        except OSError:
            return ""

    def _last_error(self) -> str:
        lines = self._log_tail().splitlines()
        errors = [line for line in lines if " ERROR " in line or "Exception" in line]
        return (errors or lines or ["(empty log)"])[-1][:300]


def _cluster_id() -> str:
    """A KRaft cluster id (Kafka's own form: URL-safe base64 of 16 random bytes) that does
    not start with ``-``: the format tool would read it as an option (1 time in 64: the
    Kafka tier once failed to start so)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


def _secure_properties(secure: SecureListener) -> dict[str, str]:
    prefix = "listener.name.secure."
    props = {
        "sasl.enabled.mechanisms": ",".join(secure.mechanisms),
        f"{prefix}ssl.keystore.type": "PEM",
        f"{prefix}ssl.keystore.location": str(secure.keystore_pem),
    }
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    for mechanism in ("scram-sha-256", "scram-sha-512"):
        props[f"{prefix}{mechanism}.sasl.jaas.config"] = scram
    plain_users = " ".join(f'user_{u}="{p}"' for u, p in secure.plain_users.items())
    props[f"{prefix}plain.sasl.jaas.config"] = (
        f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
    )
    return props


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # A killed test run (even kill -9) takes its broker with it: no orphan JVM.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """``make kafka``: a local Apache Kafka on loopback until Ctrl-C (data kept)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="remediator-local-kafka",
        description=f"Run Apache Kafka {KAFKA_VERSION} (one KRaft node) on loopback.",
    )
    parser.add_argument("--port", type=int, default=9092, help="listener port (%(default)s)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("remediator-data/kafka"),
        help="its log directory; kept between runs (%(default)s)",
    )
    parser.add_argument("--fetch-only", action="store_true", help="fetch the jars and exit")
    args = parser.parse_args(argv)
    try:
        if args.fetch_only:
            print(fetch(quiet=False))
            return 0
        args.data_dir.mkdir(parents=True, exist_ok=True)
        broker = LocalKafka(port=args.port, data_dir=args.data_dir.resolve())
        fetch(quiet=False)
        broker.start()
    except LocalKafkaError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1
    print(
        f"Apache Kafka {KAFKA_VERSION} serving at {broker.url} (data in {args.data_dir}, "
        f"log in {broker.log_path})\n"
        f"  use it: REMEDIATOR_BROKER={broker.url} make run\n"
        "  Ctrl-C stops it",
        flush=True,
    )
    try:
        while broker.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
