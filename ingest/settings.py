from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.gaps import GapPolicy
from protocol.connection import MqttAuthSettings


class IngestSettings(BaseSettings, MqttAuthSettings):
    model_config = SettingsConfigDict(env_prefix="CITYSENSE_INGEST_", env_nested_delimiter="__")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    client_id: str = "citysense-ingest"
    """Fixed, with a persistent session: the broker queues QoS 1 messages while ingest is down.
    The production broker replaces it with the username (use_username_as_clientid)."""
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
    dead_letter_retention_days: float = Field(default=30.0, ge=0)
    """Dead letters received more than this many days ago are deleted by the node's retention
    task (beside rotation by size: ``dead_letter_max_bytes`` × ``dead_letter_keep``); 0 keeps
    them until rotation drops them."""
    silent_after_s: float = Field(default=300.0, gt=0)
    """A station that sent nothing for this long is shown as silent."""
    max_group: int = Field(default=500, ge=1, le=10_000)
    """At most this many messages in one commit, and as many handled ahead of it
    (``ingest.consumer``)."""
    resend_after_s: float = Field(default=10.0, gt=0, le=3600)
    """A batch missing this long is asked for on the station's cmd topic (long enough for QoS 1
    redelivery and for routine batches that alarm batches overtook); again after twice as long,
    and so on, ``resend_attempts`` times in all."""
    resend_attempts: int = Field(default=4, ge=1, le=20)
    gap_ranges: int = Field(default=64, ge=1, le=10_000)
    """Missing ranges tracked per station; older ones are given up (counted)."""

    def gap_policy(self) -> GapPolicy:
        return GapPolicy(
            resend_after_s=self.resend_after_s,
            attempts=self.resend_attempts,
            max_ranges=self.gap_ranges,
        )
