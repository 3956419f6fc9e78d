"""Webhook subscribers, delivery and escalation settings from CITYSENSE_CENTER_* variables (and
a webhooks file); secrets that are no secrets are refused before anything starts."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from center import CenterSettings
from center.delivery.signing import new_secret
from citysense.cli import app

SECRET = new_secret()


def subscriber(name: str = "platform") -> dict[str, object]:
    return {"name": name, "url": "https://cm.example.gov.cn/hooks/citysense", "secret": SECRET}


def test_no_webhooks_by_default_and_mqtt_on() -> None:
    settings = CenterSettings()
    assert settings.webhooks == []
    assert (settings.delivery.mqtt, settings.delivery.mqtt_start) == (True, "now")
    assert (settings.delivery.backoff_initial_s, settings.delivery.backoff_max_s) == (1.0, 300.0)
    policy = settings.escalation.policy()
    assert policy.deadlines == {"urgent": timedelta(minutes=5), "critical": timedelta(minutes=2)}
    assert (policy.factor, policy.max_escalations) == (2.0, 3)


def test_webhooks_delivery_and_escalation_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CITYSENSE_CENTER_WEBHOOKS", json.dumps([subscriber()]))
    monkeypatch.setenv("CITYSENSE_CENTER_DELIVERY__BACKOFF_MAX_S", "60")
    monkeypatch.setenv("CITYSENSE_CENTER_DELIVERY__MQTT", "false")
    monkeypatch.setenv("CITYSENSE_CENTER_ESCALATION__URGENT_S", "600")
    settings = CenterSettings()
    (hook,) = settings.webhooks
    assert (hook.name, str(hook.url), hook.start) == (
        "platform",
        "https://cm.example.gov.cn/hooks/citysense",
        "beginning",
    )
    assert hook.secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings)  # never in a log line
    assert (settings.delivery.backoff_max_s, settings.delivery.mqtt) == (60.0, False)
    assert settings.escalation.policy().deadlines["urgent"] == timedelta(minutes=10)


def test_webhooks_from_a_file_join_those_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hooks = tmp_path / "webhooks.json"
    hooks.write_text(json.dumps([subscriber("archive")]))
    monkeypatch.setenv("CITYSENSE_CENTER_WEBHOOKS", json.dumps([subscriber()]))
    monkeypatch.setenv("CITYSENSE_CENTER_WEBHOOKS_FILE", str(hooks))
    assert [hook.name for hook in CenterSettings().webhooks] == ["platform", "archive"]


@pytest.mark.parametrize(
    ("hooks", "reason"),
    [
        ([subscriber(), subscriber()], "webhook names must differ"),
        ([{**subscriber(), "secret": "hunter2hunter2"}], "starts with 'whsec_'"),
        ([{**subscriber(), "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}], "example secret"),
        ([{**subscriber(), "url": "ftp://example.org/"}], "URL scheme"),
        ([{**subscriber(), "name": "Platform One"}], "pattern"),
        ([{**subscriber(), "retries": 3}], "Extra inputs"),
    ],
)
def test_bad_webhooks_are_refused(
    monkeypatch: pytest.MonkeyPatch, hooks: list[dict[str, object]], reason: str
) -> None:
    monkeypatch.setenv("CITYSENSE_CENTER_WEBHOOKS", json.dumps(hooks))
    with pytest.raises(ValidationError, match=reason):
        CenterSettings()


def test_a_webhooks_file_that_is_not_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hooks = tmp_path / "webhooks.json"
    hooks.write_text('{"name": "platform"}')
    monkeypatch.setenv("CITYSENSE_CENTER_WEBHOOKS_FILE", str(hooks))
    with pytest.raises(ValidationError, match="a list of webhook subscribers"):
        CenterSettings()
    monkeypatch.setenv("CITYSENSE_CENTER_WEBHOOKS_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(ValidationError, match="cannot read"):
        CenterSettings()


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("not json", 'field "webhooks"'),
        ('[{"name": "platform"}]', "CITYSENSE_CENTER_WEBHOOKS__0__URL"),
        (json.dumps([{**subscriber(), "secret": "whsec_"}]), "24 to 64 random bytes"),
    ],
)
def test_serve_refuses_bad_webhooks_in_one_line(value: str, names: str) -> None:
    result = CliRunner().invoke(app, ["serve"], env={"CITYSENSE_CENTER_WEBHOOKS": value})
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("citysense serve: error: bad configuration: ")
    assert names in lines[0]


def test_a_node_name_for_the_leases_is_a_plain_word(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CenterSettings().delivery.node is None  # the host name
    monkeypatch.setenv("CITYSENSE_CENTER_DELIVERY__NODE", "citysense-0")
    assert CenterSettings().delivery.node == "citysense-0"
    monkeypatch.setenv("CITYSENSE_CENTER_DELIVERY__NODE", "a:b")  # ':' separates the owner's parts
    with pytest.raises(ValidationError, match="node"):
        CenterSettings()
