"""Center settings come from CITYSENSE_CENTER_* variables."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from center import CenterSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "HOST", "PORT", "DETECTED_LATE_AFTER_S"):
        monkeypatch.delenv(f"CITYSENSE_CENTER_{name}", raising=False)
    settings = CenterSettings()
    assert settings.database_url == "sqlite+aiosqlite:///./data/citysense.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.detected_late_after == timedelta(minutes=5)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_CENTER_DATABASE_URL", "postgresql+asyncpg://db/cases")
    monkeypatch.setenv("CITYSENSE_CENTER_PORT", "9100")
    monkeypatch.setenv("CITYSENSE_CENTER_DETECTED_LATE_AFTER_S", "90")
    settings = CenterSettings()
    assert (settings.database_url, settings.port) == ("postgresql+asyncpg://db/cases", 9100)
    assert settings.detected_late_after == timedelta(seconds=90)


def test_the_late_threshold_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_CENTER_DETECTED_LATE_AFTER_S", "0")
    with pytest.raises(ValidationError, match="greater than 0"):
        CenterSettings()
