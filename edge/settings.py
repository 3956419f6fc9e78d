"""Configuration of one edge agent, read from ``CITYSENSE_EDGE_*`` environment variables."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol import MAX_READINGS_PER_BATCH
from protocol.topics import STATION_ID_PATTERN


class EdgeSettings(BaseSettings):
    """Built in ``main()``, never at import time."""

    model_config = SettingsConfigDict(
        env_prefix="CITYSENSE_EDGE_", env_nested_delimiter="__", extra="ignore"
    )

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    station_id: str = Field(pattern=STATION_ID_PATTERN)
    sample_interval_s: float = Field(default=1.0, gt=0)
    batch_interval_s: float = Field(default=1.0, gt=0)
    max_batch: int = Field(default=500, ge=1, le=MAX_READINGS_PER_BATCH)
    buffer_readings: int = Field(default=100_000, ge=1)
    """Readings kept in memory while the broker is unreachable; the oldest go first."""

    @model_validator(mode="after")
    def _buffer_holds_a_batch(self) -> Self:
        if self.buffer_readings < self.max_batch:
            raise ValueError(f"buffer_readings {self.buffer_readings} < max_batch {self.max_batch}")
        return self
