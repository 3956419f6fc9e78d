"""The center's settings, read from ``CITYSENSE_CENTER_*`` environment variables.

Build them in ``main()`` or a lifespan, never at import time.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class CenterSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CITYSENSE_CENTER_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = "sqlite+aiosqlite:///./data/citysense.db"
    host: str = "127.0.0.1"
    port: int = 8000
