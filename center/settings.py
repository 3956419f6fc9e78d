"""The center's settings, read from ``CITYSENSE_CENTER_*`` environment variables.

Build them in ``main()`` or a lifespan, never at import time.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CenterSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CITYSENSE_CENTER_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = "sqlite+aiosqlite:///./data/citysense.db"
    host: str = "127.0.0.1"
    port: int = 8000
    detected_late_after_s: float = Field(default=300.0, gt=0)
    """A case the center learns of more than this many seconds after it opened (event time,
    device clocks already checked by the rules engine) is marked ``detected_late``: a backlog
    after an outage. It is recorded, not dispatched automatically. 5 minutes: well above the
    seconds a live case takes (the reorder buffer, a retry), well below a real outage."""

    @property
    def detected_late_after(self) -> timedelta:
        return timedelta(seconds=self.detected_late_after_s)
