"""The center's settings, read from ``CITYSENSE_CENTER_*`` environment variables.

Build them in ``main()`` or a lifespan, never at import time.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from center.delivery.settings import DeliverySettings, WebhookSubscriber, read_webhooks_file
from center.escalation import EscalationPolicy


class EscalationSettings(BaseModel):
    """Acknowledgement deadlines (``CITYSENSE_CENTER_ESCALATION__*``; ``center.escalation``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    urgent_s: float = Field(default=300.0, gt=0)
    """A dispatched urgent case not taken on (``handle``) within 5 minutes is escalated."""
    critical_s: float = Field(default=120.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    """Each later deadline is this many times the one before (5, 10, 20 minutes)."""
    max_escalations: int = Field(default=3, ge=0, le=20)
    """Per dispatch; 0 turns escalation off."""
    check_every_s: float = Field(default=5.0, gt=0)

    def policy(self) -> EscalationPolicy:
        deadlines = {
            "urgent": timedelta(seconds=self.urgent_s),
            "critical": timedelta(seconds=self.critical_s),
        }
        return EscalationPolicy(deadlines, self.factor, self.max_escalations)


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
    closed_case_retention_days: float = Field(default=730.0, ge=0)
    """A case at close or evaluate whose sensor recovered and that has not changed for this
    many days is deleted, with its audit trail and events (``center.retention``); 0 keeps them
    for ever. Two years: this year's evaluation can still be compared with last year's."""
    retention_every_s: float = Field(default=3600.0, gt=0)
    """How often the node deletes what its retention settings let go (here and ingest's)."""
    follow_s: float = Field(default=1.0, gt=0, le=60)
    """How often the node reads the case event log for events other processes wrote (another
    node on the same database, the CLI), to put them on its live stream."""

    webhooks: list[WebhookSubscriber] = Field(default_factory=list)
    """Receivers of every case event (JSON, ``CITYSENSE_CENTER_WEBHOOKS``); docs/cases.md."""
    webhooks_file: Path | None = None
    """A JSON file with more of them (keeps the secrets out of the environment)."""
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)

    env: Literal["development", "production"] = "development"
    """``production``: ``serve`` refuses to start without an enabled admin account or with an
    admin on a well-known password, and the session cookie is always ``Secure`` (TLS ends at
    the reverse proxy, so the node itself sees plain HTTP). See docs/deploy.md."""
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    """A browser session lasts this long from sign-in (a shift), then its user signs in again."""
    signin_window_s: float = Field(default=300.0, gt=0)
    signin_max_failures_per_name: int = Field(default=5, ge=1)
    signin_max_failures_per_address: int = Field(default=20, ge=1)
    """Failed sign-ins allowed per user name and per client address within the window; more
    are refused (429) without checking the password until the oldest leaves the window."""

    @model_validator(mode="after")
    def _all_webhooks(self) -> Self:
        if self.webhooks_file is not None:
            self.webhooks = [*self.webhooks, *read_webhooks_file(self.webhooks_file)]
            self.webhooks_file = None  # read once: a copy of the settings must not add them again
        names = [subscriber.name for subscriber in self.webhooks]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"webhook names must differ (each keys a cursor): {twice}")
        return self

    @property
    def detected_late_after(self) -> timedelta:
        return timedelta(seconds=self.detected_late_after_s)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(seconds=self.session_ttl_s)
