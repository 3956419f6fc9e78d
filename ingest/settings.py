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
    """Ingest's checkpoint (rules engine, de-duplication, journal position); restored from on
    start. None: kept in RAM only."""
    snapshot_every_s: float = Field(default=10.0, gt=0, le=3600)
    """A checkpoint serialises the whole rules engine on the event loop (63 % of ingest's time
    under a backlog at 2 s, `make bench`); the journal replays what came after it."""
    dead_letter_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    dead_letter_keep: int = Field(default=5, ge=0)
    silent_after_s: float = Field(default=300.0, gt=0)
    """A station that sent nothing for this long is shown as silent."""
    max_group: int = Field(default=200, ge=1, le=10_000)
    """Messages handled before one commit and their acknowledgements."""
