from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYSENSE_INGEST_", env_nested_delimiter="__")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    client_id: str = "citysense-ingest"
    """Fixed, with a persistent session: the broker queues QoS 1 messages while ingest is down."""
    dead_letter_path: Path = Path("data/dead_letters.jsonl")
    rules_path: Path | None = None
    allowed_lateness_s: float = Field(default=6.0, ge=0, le=600)
    """How long readings wait for stragglers before evaluation (a bit over one batch interval)."""
    snapshot_path: Path | None = Path("data/rules.snapshot")
    """Where the rules engine's state is written; restored from on start. None: kept in RAM."""
    snapshot_every_s: float = Field(default=2.0, gt=0, le=3600)
