"""The processes the bench starts: remediator workers and the raw baseline loop.

Every process is registered in a :class:`Processes` when started and stopped by it on the
way out (normal end, error, Ctrl-C). A process that exits while it is being measured
stops the bench at once with the last lines of its log (:class:`ProcessDied`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from remediator.kafka.embedded import free_port

LOG_TAIL = 40
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


class ProcessDied(RuntimeError):
    """A process the bench measures has exited."""


@dataclass
class Process:
    """One child process, its log file and what it was started with."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.started_at = time.perf_counter()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops us cleanly
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self) -> None:
        """Raise :class:`ProcessDied` with the log's tail if the process has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise ProcessDied(
                f"{self.name} (pid {self.popen.pid}) exited with status "
                f"{self.popen.returncode}; last {LOG_TAIL} lines of {self.log_path}:\n"
                + self.tail()
            )

    def tail(self, lines: int = LOG_TAIL) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT, *, clean: bool = True) -> int | None:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout``; SIGKILL at once
        unless ``clean``."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM if clean else signal.SIGKILL)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def rss_mb(self) -> float:
        """Resident set size (VmRSS of /proc/<pid>/status), MiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no VmRSS for pid {self.pid}")
        return int(match.group(1)) / 1024

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


@dataclass
class Processes:
    """Everything started, stopped in reverse order by :meth:`stop_all`."""

    started: list[Process] = field(default_factory=list)

    def start(self, process: Process) -> Process:
        self.started.append(process)
        process.start()
        return process

    def check(self) -> None:
        for process in self.started:
            process.check()

    def stop(self, process: Process, *, clean: bool = True) -> int | None:
        code = process.stop(clean=clean)
        with contextlib.suppress(ValueError):
            self.started.remove(process)
        return code

    def stop_all(self) -> None:
        while self.started:
            process = self.started.pop()
            with contextlib.suppress(Exception):
                process.stop(timeout=10)


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker is started with (printed with the figures)."""

    broker_url: str
    app_id: str
    active: str
    passive: str
    transitions: str
    partitions: int
    data_dir: Path
    table_store: str = "memory"
    commit_interval: float = 0.2
    session_timeout: float = 3.0
    log_level: str = "info"
    extra: Mapping[str, str] = field(default_factory=dict)

    def env(self, web_port: int) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
        return {
            **base,
            "REMEDIATOR_BROKER": self.broker_url,
            "REMEDIATOR_APP_ID": self.app_id,
            "REMEDIATOR_TOPIC_ACTIVE_RUNS": self.active,
            "REMEDIATOR_TOPIC_PASSIVE_EVENTS": self.passive,
            "REMEDIATOR_TOPIC_TRANSITIONS": self.transitions,
            "REMEDIATOR_TOPIC_DEAD_LETTER": f"{self.app_id}-dlq",
            "REMEDIATOR_TOPIC_POLICY_EVENTS": f"{self.app_id}-policy-events",
            "REMEDIATOR_PARTITIONS": str(self.partitions),
            "REMEDIATOR_DATA_DIR": str(self.data_dir),
            "REMEDIATOR_WEB_PORT": str(web_port),
            "REMEDIATOR_TABLE_STORE": self.table_store,
            "REMEDIATOR_COMMIT_INTERVAL_SECONDS": str(self.commit_interval),
            "REMEDIATOR_BROKER_SESSION_TIMEOUT": str(self.session_timeout),
            "REMEDIATOR_LOG_LEVEL": self.log_level,
            # Experiments: BENCH_REMEDIATOR_X=v in the bench's environment sets
            # REMEDIATOR_X=v for every worker (printed with the parameters).
            **{
                k.removeprefix("BENCH_"): v
                for k, v in os.environ.items()
                if k.startswith("BENCH_REMEDIATOR_")
            },
            **self.extra,
        }

    @property
    def inbox(self) -> str:
        return f"{self.app_id}-cluster-inbox"

    @property
    def owned_topics(self) -> list[str]:
        """Topics the worker creates (deleted after the scenario to free the broker)."""
        return [
            self.transitions,
            f"{self.app_id}-dlq",
            f"{self.app_id}-policy-events",
            self.inbox,
            f"{self.app_id}-replies",
            f"{self.app_id}-__assignor-__leader",
            *(f"{self.app_id}-{table}-changelog" for table in TABLES),
        ]


#: The worker's tables (each has a changelog topic ``{app_id}-{table}-changelog``).
TABLES = ("state", "archive", "decisions", "claims")


@dataclass
class Worker(Process):
    web_port: int = 0


def worker_process(config: WorkerConfig, log_dir: Path, name: str = "worker") -> Worker:
    port = free_port()
    return Worker(
        name=f"{name} {config.app_id}",
        argv=[sys.executable, "-m", "remediator.cli", "worker"],
        env=config.env(port),
        log_path=log_dir / f"{config.app_id}-{name}.log",
        web_port=port,
    )


async def health(worker: Worker, client: httpx.AsyncClient) -> dict[str, object] | None:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        answer = (await client.get(f"http://127.0.0.1:{worker.web_port}/healthz")).json()
        if isinstance(answer, dict):
            return answer
    return None


async def wait_ready(
    workers: Sequence[Worker], processes: Processes, partitions: int | None = None
) -> float:
    """Wait until every worker answers ready (and, with ``partitions``, the inbox
    partitions are split between them with none missing); return the moment."""
    deadline = time.perf_counter() + READY_TIMEOUT
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            processes.check()
            answers = [await health(w, client) for w in workers]
            if all(a is not None and a.get("ready") for a in answers) and _split(
                answers, partitions
            ):
                return time.perf_counter()
            await asyncio.sleep(0.05)
    raise TimeoutError(
        f"workers not ready in {READY_TIMEOUT:.0f}s: "
        + "; ".join(f"{w.name}: {w.tail(5)}" for w in workers)
    )


def _split(answers: Sequence[dict[str, object] | None], partitions: int | None) -> bool:
    if partitions is None:
        return True
    owned: list[int] = []
    for answer in answers:
        value = answer.get("partitions") if answer else None
        if not isinstance(value, list):
            return False
        owned.extend(int(p) for p in value)
    return sorted(owned) == list(range(partitions))


def raw_loop_process(
    bootstrap: str, source: str, sink: str, group: str, log_dir: Path, commit_interval: float
) -> Process:
    return Process(
        name=f"raw loop {group}",
        argv=[
            sys.executable,
            str(Path(__file__).with_name("raw_loop.py")),
            bootstrap,
            source,
            sink,
            group,
            str(commit_interval),
        ],
        env=dict(os.environ),
        log_path=log_dir / f"{group}.log",
    )


def faust_loop_process(
    bootstrap: str,
    source: str,
    sink: str,
    group: str,
    log_dir: Path,
    commit_interval: float,
    web_port: int,
) -> Process:
    return Process(
        name=f"faust loop {group}",
        argv=[
            sys.executable,
            str(Path(__file__).with_name("faust_loop.py")),
            bootstrap,
            source,
            sink,
            group,
            str(commit_interval),
            str(web_port),
        ],
        env=dict(os.environ),
        log_path=log_dir / f"{group}.log",
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After "(comm)": state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def grep(lines: Sequence[str], pattern: str) -> Iterator[re.Match[str]]:
    compiled = re.compile(pattern)
    for line in lines:
        match = compiled.search(line)
        if match:
            yield match
