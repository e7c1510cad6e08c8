"""`remediator worker` as an operator runs it: the embedded broker, Ctrl-C, bad settings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from remediator.kafka.embedded import free_port
from tests.builders import run_payload
from tests.integration.conftest import Broker, Kafka, WorkerProcess


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env.update(extra)
    return env


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


def start_embedded(tmp_path: Path, broker_port: int, **extra: str) -> WorkerProcess:
    """`remediator worker` with no broker set: it starts its own."""
    web_port = free_port()
    env = clean_env(
        REMEDIATOR_EMBEDDED_BROKER_PORT=str(broker_port),
        REMEDIATOR_WEB_PORT=str(web_port),
        REMEDIATOR_DATA_DIR=str(tmp_path / "data"),
        **extra,
    )
    worker = WorkerProcess(env, tmp_path / "worker.log", web_port)
    worker.start()
    try:
        worker.wait_ready()
    except BaseException:
        worker.kill()
        raise
    return worker


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REMEDIATOR_BROKER", "http://nope"),
        ("REMEDIATOR_API_TOKENS", "alice"),
        ("REMEDIATOR_WEB_PORT", "99999"),
        ("REMEDIATOR_CONTROL_PLANE_URL", "localhost:8080"),
        ("REMEDIATOR_CONTROL_PLANE_TOKEN_FILE", "/no/such/token"),
        ("REMEDIATOR_CONTROL_PLANE_CERTFILE", "/no/such/cert.pem"),
        ("REMEDIATOR_MAX_RUNNING_PER_CLUSTER", "-1"),
        ("REMEDIATOR_POLL_INTERVAL_SECONDS", "soon"),
        # One without the other (every other TLS case: tests/unit/test_web_tls.py).
        ("REMEDIATOR_WEB_TLS_CERTFILE", "/etc/hostname"),
        ("REMEDIATOR_WEB_TLS_KEYFILE", "/etc/hostname"),
    ],
)
def test_bad_setting_stops_start_with_one_line(variable: str, value: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "remediator.cli", "worker"],
        env=clean_env(**{variable: value, "REMEDIATOR_DATA_DIR": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("remediator: ")
    assert variable in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_unreachable_broker_is_one_line_too(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "remediator.cli", "worker"],
        env=clean_env(
            REMEDIATOR_BROKER=f"kafka://127.0.0.1:{free_port()}",
            REMEDIATOR_DATA_DIR=str(tmp_path),
            REMEDIATOR_WEB_PORT=str(free_port()),
            REMEDIATOR_BROKER_CONNECT_TIMEOUT="2",
        ),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("remediator: REMEDIATOR_BROKER:")
    assert "Traceback" not in result.stderr


async def test_embedded_broker_end_to_end_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """The `make run` path: no broker and no control plane set, the worker brings its own
    (embedded broker, simulated control plane), carries a remediation out, cleans up."""
    broker_port, simulator_port = free_port(), free_port()
    worker = start_embedded(
        tmp_path,
        broker_port,
        REMEDIATOR_SIMULATOR_PORT=str(simulator_port),
        REMEDIATOR_API_TOKENS="operator=dev-token",
        REMEDIATOR_POLL_INTERVAL_SECONDS="0.2",
    )
    web_port = worker.web_port
    simulator = f"http://127.0.0.1:{simulator_port}"
    try:
        assert worker.process is not None
        (broker_pid,) = children_of(worker.process.pid)
        banner = worker.log()
        assert f"kafka://127.0.0.1:{broker_port}" in banner
        assert f"http://127.0.0.1:{web_port}" in banner
        assert f"simulated, {simulator}" in banner

        kafka = Kafka(f"127.0.0.1:{broker_port}")
        try:
            run = run_payload()
            await kafka.produce("active-health-check-runs", run)
            (transition,) = await kafka.read("remediation-transitions", at_least=1)
        finally:
            await kafka.close()
        assert transition["remediation"]["active_health_check_run_id"] == run["run_id"]

        # Approve it: the built-in simulated control plane carries it out.
        remediation = transition["remediation"]
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{web_port}/v1/compute",
            headers={"Authorization": "Bearer dev-token"},
            timeout=30,
        ) as client:
            put = await client.put(f"{simulator}/_sim/config", json={"latency": {"REBOOT_VM": 0.2}})
            assert put.status_code == 200, put.text
            url = (
                f"/clusters/{remediation['cluster_id']}/instances/{remediation['instance_id']}"
                f"/remediations/{remediation['id']}"
            )
            approved = await client.post(
                f"{url}/approve", json={"mode": "REMEDIATION_MODE_REBOOT_VM"}
            )
            assert approved.status_code == 200, approved.text
            state = ""
            for _ in range(150):
                state = (await client.get(url)).json()["state"]
                if state == "SUCCEEDED":
                    break
                await asyncio.sleep(0.2)
            assert state == "SUCCEEDED", worker.log()[-3000:]
            performed = (await client.get(f"{simulator}/_sim/log")).json()["requests"]
            assert [r["action"] for r in performed] == ["REBOOT_VM"]
            # It wants a bearer token, as a real one does: the worker made one up and sent it.
            anyone = await client.get(f"{simulator}/v1/operations/{performed[0]['operation_id']}")
            assert anyone.status_code == 401, anyone.text

        # Readable by default: no framework tables or per-request lines at info.
        log = worker.log()
        assert f"ready: API at http://127.0.0.1:{web_port}/v1/compute" in log
        for chatter in ("Starting...", "+-----", "HTTP Request:", "Joined group"):
            assert chatter not in log, chatter

        worker.process.send_signal(signal.SIGINT)
        assert worker.process.wait(timeout=30) == 0, worker.log()[-2000:]
        deadline = time.monotonic() + 10
        while alive(broker_pid) and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a pid
            await asyncio.sleep(0.1)
        assert not alive(broker_pid), "the embedded broker outlived the worker"
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{web_port}/healthz")
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{simulator}/healthz")
    finally:
        worker.kill()


def test_embedded_broker_dies_with_a_killed_worker(tmp_path: Path) -> None:
    worker = start_embedded(tmp_path, 0)
    try:
        assert worker.process is not None
        (broker_pid,) = children_of(worker.process.pid)
        worker.kill()
        deadline = time.monotonic() + 10
        while alive(broker_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(broker_pid), "an orphan broker survived kill -9 of its worker"
    finally:
        worker.kill()


def test_publish_and_tail_feed_and_read_a_topic_by_hand(broker: Broker, tmp_path: Path) -> None:
    topic = f"by-hand-{uuid.uuid4().hex[:8]}"
    sample = Path(__file__).resolve().parents[1] / "data" / "active-run-failed.json"
    env = clean_env(REMEDIATOR_BROKER=broker.url)
    lines = tmp_path / "more.jsonl"
    lines.write_text('{"instance_id": "a", "n": 1}\n\n{"instance_id": "b", "n": 2}\n')
    for source in (str(sample), str(lines)):
        published = subprocess.run(
            [sys.executable, "-m", "remediator.cli", "publish", topic, source],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert published.returncode == 0, published.stderr
    tailed = subprocess.run(
        [sys.executable, "-m", "remediator.cli", "tail", topic, "--from-beginning", "--max", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tailed.returncode == 0, tailed.stderr
    values = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert sorted(v.get("n", 0) for v in values) == [0, 1, 2]
    assert json.loads(sample.read_text()) in values


def test_publish_refuses_a_file_that_is_not_json(broker: Broker, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ok": 1}\nnot json\n')
    result = subprocess.run(
        [sys.executable, "-m", "remediator.cli", "publish", "whatever", str(bad)],
        env=clean_env(REMEDIATOR_BROKER=broker.url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("remediator: line 2 is not JSON (")


def test_publish_raw_sends_the_bytes_as_given(broker: Broker, tmp_path: Path) -> None:
    topic = f"raw-{uuid.uuid4().hex[:8]}"
    env = clean_env(REMEDIATOR_BROKER=broker.url)
    sent = [
        b'{"instance_id": "i-7",   "z": 1, "a": [1.50]}\n',  # spacing, order, a float as written
        b"not json at all \xff\x00",
    ]
    for number, payload in enumerate(sent):
        source = tmp_path / f"payload-{number}"
        source.write_bytes(payload)
        result = subprocess.run(
            [sys.executable, "-m", "remediator.cli", "publish", "--raw", topic, str(source)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"published 1 message(s) to {topic}\n"

    async def read() -> list[tuple[bytes | None, bytes]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.address, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            got: list[tuple[bytes | None, bytes]] = []
            while len(got) < len(sent):
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
                got += [(r.key, r.value) for records in batch.values() for r in records]
            return got
        finally:
            await consumer.stop()

    received = asyncio.run(read())
    assert sorted(value for _, value in received) == sorted(sent)
    # The key still comes from the instance_id field when the bytes are a JSON object.
    assert {v: k for k, v in received} == {sent[0]: b"i-7", sent[1]: None}


def test_tail_stops_quietly_when_its_reader_goes_away(broker: Broker) -> None:
    """`remediator tail … | head -n 1`: once the reader has closed the pipe, the next
    message ends tail with status 0 and nothing on stderr."""
    topic = f"piped-{uuid.uuid4().hex[:8]}"
    env = clean_env(REMEDIATOR_BROKER=broker.url)

    def publish(n: int) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "remediator.cli", "publish", topic, "-"],
            input=json.dumps({"instance_id": "i-1", "n": n}),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    publish(1)
    tail = subprocess.Popen(
        [sys.executable, "-m", "remediator.cli", "tail", topic, "--from-beginning",
         "--idle-timeout", "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert tail.stdout is not None
        assert tail.stderr is not None
        assert json.loads(tail.stdout.readline()) == {"instance_id": "i-1", "n": 1}
        tail.stdout.close()  # what `head -n 1` does after its line
        publish(2)  # tail's next write finds the pipe closed
        assert tail.wait(timeout=30) == 0
        assert tail.stderr.read() == b""
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
