"""Settings from the environment: defaults, parsing, and one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediator.api.auth import Caller, Role
from remediator.settings import ConfigError, load_settings, unknown_variables


def test_defaults_follow_the_contract() -> None:
    settings = load_settings({})
    assert settings.broker is None
    assert settings.app_id == "remediator"
    assert (settings.web_host, settings.web_port) == ("127.0.0.1", 6066)
    assert settings.control_plane_url is None
    assert settings.topic_active_runs == "active-health-check-runs"
    assert settings.topic_passive_events == "passive-health-check-events"
    assert settings.topic_transitions == "remediation-transitions"
    assert settings.topic_dead_letter == "remediator-dead-letter"
    assert settings.inbox_topic == "remediator-cluster-inbox"


def test_broker_list_accepts_kafka_urls_and_bare_host_ports() -> None:
    settings = load_settings({"REMEDIATOR_BROKER": "kafka://10.0.0.5:9092, kafka2:9093"})
    assert settings.bootstrap_servers == ["10.0.0.5:9092", "kafka2:9093"]


def test_api_tokens_map_token_to_principal() -> None:
    settings = load_settings({"REMEDIATOR_API_TOKENS": "alice=s3cret, ops-bot=t0ken"})
    # Without a role: every right, as before roles existed.
    assert settings.tokens == {
        "s3cret": Caller("alice", Role.UNRESTRICTED),
        "t0ken": Caller("ops-bot", Role.UNRESTRICTED),
    }


def test_api_tokens_carry_roles_and_a_file_adds_more(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(
        "# who may do what\nam:webhook=am-t0ken  # Alertmanager\n\nops:admin=a#b\n"
    )
    settings = load_settings(
        {
            "REMEDIATOR_API_TOKENS": "viv:viewer=v, olga:operator=o, svc:eu:viewer=s",
            "REMEDIATOR_API_TOKENS_FILE": str(tokens_file),
        }
    )
    assert settings.tokens == {
        "v": Caller("viv", Role.VIEWER),
        "o": Caller("olga", Role.OPERATOR),
        "s": Caller("svc:eu", Role.VIEWER),  # the role is after the last colon
        "am-t0ken": Caller("am", Role.WEBHOOK),
        "a#b": Caller("ops", Role.ADMIN),  # "#" starts a comment only after a blank
    }


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        # A misspelt role must not fall back to every right.
        ({"REMEDIATOR_API_TOKENS": "alice:viewr=s3cret"}, "unknown role 'viewr'"),
        ({"REMEDIATOR_API_TOKENS_FILE": "/nonexistent/tokens"}, "API_TOKENS_FILE: cannot read"),
        (
            {"REMEDIATOR_API_TOKENS": "a:viewer=s3cret", "REMEDIATOR_API_TOKENS_FILE": "SAME"},
            "API_TOKENS_FILE: a token is also in REMEDIATOR_API_TOKENS",
        ),
    ],
)
def test_bad_token_settings_stop_start_up_with_one_line(
    environ: dict[str, str], expected: str, tmp_path: Path
) -> None:
    if environ.get("REMEDIATOR_API_TOKENS_FILE") == "SAME":
        (tmp_path / "t").write_text("b:admin=s3cret\n")
        environ = {**environ, "REMEDIATOR_API_TOKENS_FILE": str(tmp_path / "t")}
    with pytest.raises(ConfigError) as raised:
        load_settings(environ)
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REMEDIATOR_BROKER", "http://broker:9092"),
        ("REMEDIATOR_BROKER", "broker"),
        ("REMEDIATOR_BROKER", "kafka://broker:notaport"),
        ("REMEDIATOR_WEB_PORT", "70000"),
        ("REMEDIATOR_WEB_PORT", "http"),
        ("REMEDIATOR_API_TOKENS", "alice"),
        ("REMEDIATOR_API_TOKENS", "alice=t,bob=t"),
        ("REMEDIATOR_API_TOKENS", "=token"),
        ("REMEDIATOR_CONTROL_PLANE_URL", "ftp://cp"),
        ("REMEDIATOR_CONTROL_PLANE_URL", "not a url"),
        ("REMEDIATOR_LOG_LEVEL", "loud"),
        ("REMEDIATOR_PARTITIONS", "0"),
        ("REMEDIATOR_APP_ID", "has space"),
        ("REMEDIATOR_APP_ID", ".."),
        ("REMEDIATOR_TOPIC_TRANSITIONS", "bad/topic"),
        ("REMEDIATOR_CREATE_TOPICS", "maybe"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message


def test_token_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"REMEDIATOR_API_TOKENS": "alice=supersecret,bob=supersecret"})
    assert "supersecret" not in str(caught.value)


def test_unknown_remediator_variables_are_reported() -> None:
    env = {"REMEDIATOR_BROKR": "x", "REMEDIATOR_APP_ID": "a", "OTHER": "y"}
    assert unknown_variables(env) == ["REMEDIATOR_BROKR"]


def test_variables_read_by_the_cli_and_compose_are_not_reported_as_unknown() -> None:
    env = {"REMEDIATOR_API_CAFILE": "ca.pem", "REMEDIATOR_PUBLISH_HOST": "192.0.2.1"}
    assert unknown_variables(env) == []


def test_the_internal_topics_created_at_start_are_the_apps_own() -> None:
    """The CLI creates them before Faust joins the group (a group formed before the
    inbox existed owned no inbox partition on Kafka): the same names, counts, policy."""
    from remediator.app import create_app, internal_topics

    settings = load_settings(
        {"REMEDIATOR_BROKER": "kafka://127.0.0.1:1", "REMEDIATOR_PARTITIONS": "6"}
    )
    app = create_app(settings)
    specs = {spec.name: spec for spec in internal_topics(settings)}
    changelogs = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    assert changelogs <= set(specs)
    assert all(specs[name].config == {"cleanup.policy": "compact"} for name in changelogs)
    assert specs[settings.inbox_topic].partitions == 6
    leader = app._leader_assignor._leader_topic_name  # type: ignore[attr-defined]
    assert set(specs) == changelogs | {settings.inbox_topic, settings.replies_topic, leader}
    assert specs[leader].partitions == 1
