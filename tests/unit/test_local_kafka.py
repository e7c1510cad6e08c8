"""The local Apache Kafka's configuration, without starting it (the Kafka tier of the
integration tests starts it; these catch a broken config in milliseconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediator.kafka import local
from remediator.kafka.local import LocalKafka, SecureListener


def properties(broker: LocalKafka) -> dict[str, str]:
    text = broker._write_config().read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_one_node_on_loopback_with_auto_creation_off(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path, port=19092)
    props = properties(broker)
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    assert props["advertised.listeners"].startswith("PLAINTEXT://127.0.0.1:19092,")
    assert props["inter.broker.listener.name"] == "INTERNAL"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert broker.url == "kafka://127.0.0.1:19092"


def test_clients_can_be_told_another_port_a_proxy_in_front(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path, port=19092, advertised_port=29092)
    assert "PLAINTEXT://127.0.0.1:29092" in properties(broker)["advertised.listeners"]


def test_a_sasl_ssl_listener_has_a_pem_key_store_and_its_mechanisms(tmp_path: Path) -> None:
    secure = SecureListener(tmp_path / "broker.pem", scram_users={"u": "p"}, plain_users={"v": "q"})
    broker = LocalKafka(data_dir=tmp_path, secure=secure)
    props = properties(broker)
    assert f"SECURE://127.0.0.1:{broker.secure_port}" in props["listeners"]
    assert "SECURE:SASL_SSL" in props["listener.security.protocol.map"]
    assert props["listener.name.secure.ssl.keystore.type"] == "PEM"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
    assert 'user_v="q"' in props["listener.name.secure.plain.sasl.jaas.config"]
    assert broker.secure_url == f"kafka://127.0.0.1:{broker.secure_port}"


def test_cluster_ids_never_read_as_options() -> None:
    assert not any(local._cluster_id().startswith("-") for _ in range(2000))


def test_without_java_it_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = local.unavailable_reason()
    assert reason is not None
    assert "java" in reason
    assert "\n" not in reason


def test_the_cache_is_outside_the_work_tree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REMEDIATOR_CACHE_DIR", str(tmp_path))
    assert local.cache_dir() == tmp_path
    monkeypatch.delenv("REMEDIATOR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert local.cache_dir() == tmp_path / "xdg" / "remediator"
