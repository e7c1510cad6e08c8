"""docker-compose.yml and the Dockerfile are checked by reading: there is no Docker engine
here. Every REMEDIATOR_* variable they set must be a real setting, with a valid value."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest

from remediator.settings import load_settings, unknown_variables

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def worker_services() -> dict[str, dict[str, Any]]:
    services = compose()["services"]
    return {n: s for n, s in services.items() if "REMEDIATOR_BROKER" in s.get("environment", {})}


def test_compose_runs_kafka_in_kraft_mode_from_the_official_image() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_compose_workers_share_one_group_and_wait_for_kafka() -> None:
    workers = worker_services()
    assert len(workers) >= 2
    assert len({w["environment"]["REMEDIATOR_APP_ID"] for w in workers.values()}) == 1
    for worker in workers.values():
        assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert worker["environment"]["REMEDIATOR_BROKER"] == "kafka://kafka:9092"


def test_compose_sets_only_known_settings_with_valid_values() -> None:
    for worker in worker_services().values():
        env = {
            k: re.sub(r"\$\{[^}]*\}", "", str(v))  # interpolations left to the operator
            for k, v in worker["environment"].items()
        }
        assert unknown_variables(env) == []
        env = {k: v for k, v in env.items() if v != ""}
        load_settings(env)  # raises ConfigError on a bad value


def dockerfile_healthcheck() -> list[str]:
    """The image's HEALTHCHECK command, split as its shell would."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^HEALTHCHECK [^\n]*\\\n\s*CMD (.+)$", dockerfile, re.MULTILINE)
    assert match is not None
    return shlex.split(match.group(1))


def test_compose_probes_worker_readiness_with_the_images_healthcheck() -> None:
    """One command (http, or https under REMEDIATOR_WEB_TLS_*; run against an HTTPS
    worker in tests/integration/test_api_tls.py), so the two cannot drift apart."""
    command = dockerfile_healthcheck()
    assert command[:2] == ["python", "-c"]
    for worker in worker_services().values():
        assert worker["healthcheck"]["test"] == ["CMD", *command]


def test_every_published_port_listens_on_loopback_unless_told_otherwise() -> None:
    """Issue 19, point 5: an unauthenticated Kafka, control plane and Prometheus must not
    face the network by default; REMEDIATOR_PUBLISH_HOST widens them all at once."""
    published = []
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):  # the long syntax
                host = str(port.get("host_ip", ""))
            else:
                parts = str(port).rsplit(":", 2)
                assert len(parts) == 3, f"{name}: {port} has no host address"
                host = parts[0]
            default = re.fullmatch(r"\$\{REMEDIATOR_PUBLISH_HOST:-([^}]*)\}", host)
            assert default is not None, f"{name}: {port} is not bound to REMEDIATOR_PUBLISH_HOST"
            assert default.group(1) == "127.0.0.1", f"{name}: {port}"
            published.append(name)
    assert {"kafka", "worker-1", "worker-2", "control-plane", "prometheus"} <= set(published)


def test_dockerfile_runs_the_worker_console_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["remediator"]' in dockerfile
    assert 'CMD ["worker"]' in dockerfile


def test_compose_workers_share_one_simulated_control_plane() -> None:
    """Two simulators would make a step both workers attempted look like two operations."""
    services = compose()["services"]
    (control_plane,) = [
        s for s in services.values() if s.get("command", [None])[0] == "control-plane"
    ]
    port = control_plane["command"][control_plane["command"].index("--port") + 1]
    name = next(n for n, s in services.items() if s is control_plane)
    for worker in worker_services().values():
        url = str(worker["environment"]["REMEDIATOR_CONTROL_PLANE_URL"])
        assert f"http://{name}:{port}" in url
        assert name in worker["depends_on"]


def test_compose_feeds_a_simulated_fleet_to_the_workers_broker() -> None:
    services = compose()["services"]
    (fleet,) = [s for s in services.values() if s.get("command", [None])[0] == "simulate"]
    command = fleet["command"]
    broker = {str(w["environment"]["REMEDIATOR_BROKER"]) for w in worker_services().values()}
    assert command[command.index("--broker") + 1] in broker


def test_prometheus_scrapes_every_worker() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    (mount,) = [
        v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro")
    ]
    config = yaml.safe_load((ROOT / mount.split(":")[0]).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    expected = {
        f"{name}:{w['environment']['REMEDIATOR_WEB_PORT']}" for name, w in worker_services().items()
    }
    assert targets == expected


def test_prometheus_alert_rules_name_only_metrics_a_worker_exports() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from remediator.metrics import Metrics

    exported = set()
    metrics = Metrics(app_id="check")
    metrics.watch(clusters=list, consumer=lambda: None, input_topics=frozenset(), executing=list)
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        exported.update(sample.name for sample in family.samples)
        exported.add(family.name)
        if family.type == "counter":  # the parser names the family without _total
            exported.add(f"{family.name}_total")
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    (rules_path,) = config["rule_files"]
    mounted = {
        v.split(":")[1]: v.split(":")[0] for v in compose()["services"]["prometheus"]["volumes"]
    }
    rules = yaml.safe_load((ROOT / mounted[rules_path]).read_text())
    expressions = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    assert expressions
    for expr in expressions:
        for name in re.findall(r"\b(remediator_[a-z_]+)", expr):
            assert name in exported, f"{name} in an alert rule is not a metric"
