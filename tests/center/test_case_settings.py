"""Center settings come from CITYSENSE_CENTER_* variables."""

from __future__ import annotations

import pytest

from center import CenterSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "HOST", "PORT"):
        monkeypatch.delenv(f"CITYSENSE_CENTER_{name}", raising=False)
    settings = CenterSettings()
    assert settings.database_url == "sqlite+aiosqlite:///./data/citysense.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_CENTER_DATABASE_URL", "postgresql+asyncpg://db/cases")
    monkeypatch.setenv("CITYSENSE_CENTER_PORT", "9100")
    settings = CenterSettings()
    assert (settings.database_url, settings.port) == ("postgresql+asyncpg://db/cases", 9100)
