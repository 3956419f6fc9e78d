"""Configuration of one edge agent, read from ``CITYSENSE_EDGE_*`` environment variables."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge.drivers.udp import UdpSettings
from edge.exception import ReportSettings
from edge.outbox import OutboxLimits
from protocol import MAX_READINGS_PER_BATCH, SensorInfo
from protocol.connection import MqttAuthSettings
from protocol.topics import STATION_ID_PATTERN


class EdgeSettings(BaseSettings, MqttAuthSettings):
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
    """A cap on readings waiting in the outbox (besides its bytes); the oldest routine go first."""
    state_dir: Path | None = None
    """Where the durable outbox and the boot counter live (e.g. /var/lib/citysense-edge);
    unset: the outbox is in memory and lost with the process."""
    reconnect_max_s: float = Field(default=30.0, gt=0)
    """Longest wait between reconnect attempts (they double from 0.5 s, jittered)."""
    window: int = Field(default=8, ge=1, le=100)
    """Batches in flight at once (published, PUBACK not yet received)."""
    outbox_max_mb: float = Field(default=256.0, gt=0)
    """Bytes of readings the outbox holds while the link is down; the oldest routine go first."""
    outbox_max_age_h: float = Field(default=48.0, gt=0)
    """Routine readings older than this (since sampled) are given up, counted and reported."""
    retain_mb: float = Field(default=16.0, ge=0)
    """Acknowledged batches kept for the center's re-send requests, in bytes ..."""
    retain_min: float = Field(default=30.0, ge=0)
    """... and in minutes after their PUBACK."""
    driver: Literal["simulated", "udp"] = "simulated"
    """Where readings come from: the simulated city (``seed``) or a UDP/JSON gateway feed."""
    seed: int = 7
    """Seed of the simulated city (driver ``simulated``)."""
    udp: UdpSettings = Field(default_factory=UdpSettings)
    sensors: list[SensorInfo] = Field(default_factory=list, max_length=10_000)
    """The station's sensor inventory (driver ``udp``), announced in the birth message."""
    report: ReportSettings = Field(default_factory=ReportSettings)
    """Per-sensor report-by-exception with a heartbeat (``edge.exception``)."""

    def outbox_limits(self) -> OutboxLimits:
        return OutboxLimits(
            max_bytes=int(self.outbox_max_mb * (1 << 20)),
            max_age=timedelta(hours=self.outbox_max_age_h),
            retain_bytes=int(self.retain_mb * (1 << 20)),
            retain_age=timedelta(minutes=self.retain_min),
            max_readings=self.buffer_readings,
        )

    @model_validator(mode="after")
    def _buffer_holds_a_batch(self) -> Self:
        if self.buffer_readings < self.max_batch:
            raise ValueError(f"buffer_readings {self.buffer_readings} < max_batch {self.max_batch}")
        return self

    @model_validator(mode="after")
    def _inventory_of_this_station(self) -> Self:
        if self.driver == "udp" and not self.sensors:
            raise ValueError("the udp driver needs the station's sensors ([[sensors]] entries)")
        ids = [sensor.sensor_id for sensor in self.sensors]
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        if twice:
            raise ValueError(f"sensors named twice: {', '.join(twice[:5])}")
        prefix = self.station_id + "."
        foreign = [i for i in ids if not i.startswith(prefix) or i == prefix]
        if foreign:
            raise ValueError(f"sensor ids must start with {prefix!r}: {', '.join(foreign[:5])}")
        return self
