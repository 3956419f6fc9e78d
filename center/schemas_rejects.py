"""API schemas of the dead letters: messages ingest refused, alerts the center refused."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class RejectOut(BaseModel):
    """One dead letter."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable id: the dead letter's sequence number.")
    kind: Literal["message", "alert"] = Field(
        description="message: an MQTT message ingest refused; alert: an alert the center"
        " refused (its payload is the alert as JSON)."
    )
    received_at: AwareDatetime
    topic: str
    station_id: str | None = Field(description="From the topic (or the alert).")
    reason: str = Field(description="Why it was refused, e.g. not_json, bad_topic.")
    detail: str
    payload: str = Field(description="The payload as received, base64.")
    size: int = Field(description="Payload bytes.")


class RejectPage(BaseModel):
    items: list[RejectOut]
    total: int
