from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from edge import Backoff, EdgeSettings


def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    ceilings = [min(0.5 * 2**n, 30.0) for n in range(12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="bad backoff"):
        Backoff(initial=5.0, maximum=1.0)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_EDGE_STATION_ID", "st-410105-001")
    monkeypatch.setenv("CITYSENSE_EDGE_MQTT_PORT", "18830")
    monkeypatch.setenv("CITYSENSE_EDGE_SAMPLE_INTERVAL_S", "0.5")
    settings = EdgeSettings()  # station_id comes from the environment
    assert settings.station_id == "st-410105-001"
    assert settings.mqtt_host == "127.0.0.1"
    assert settings.mqtt_port == 18830
    assert settings.sample_interval_s == 0.5
    assert (settings.batch_interval_s, settings.max_batch) == (1.0, 500)


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ValidationError):
        EdgeSettings(station_id="bad id with spaces")
    with pytest.raises(ValidationError):
        EdgeSettings(station_id="st-1", max_batch=5000)
    with pytest.raises(ValidationError, match="buffer_readings"):
        EdgeSettings(station_id="st-1", max_batch=100, buffer_readings=10)
