"""Who gets case events and how hard to try: part of ``CenterSettings`` (``CITYSENSE_CENTER_*``).

CITYSENSE_CENTER_WEBHOOKS='[{"name": "platform", "url": "https://...", "secret": "whsec_..."}]'
CITYSENSE_CENTER_WEBHOOKS_FILE=/etc/citysense/webhooks.json     # the same list, in a file
CITYSENSE_CENTER_DELIVERY__BACKOFF_MAX_S=300                    # nested: two underscores
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, field_validator

from center.delivery.signing import SignatureError, parse_secret

StartAt = Literal["beginning", "now"]
"""Where a subscriber's cursor starts the first time it runs: before the first event of the
log, or after the newest one. Later starts resume from the stored cursor."""

EXAMPLE_SECRETS = frozenset(
    {
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # the Standard Webhooks test vector
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",  # docs/cases.md's example
    }
)


class WebhookSubscriber(BaseModel):
    """One receiver: ``name`` keys its cursor and its metrics (keep it when the URL moves)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")
    url: AnyHttpUrl
    secret: SecretStr = Field(description="whsec_ + base64 of 24 to 64 random bytes.")
    start: StartAt = "beginning"
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    """A receiver that does not answer within this is retried (it may have taken the event:
    the retry is a duplicate it recognises by ``webhook-id``)."""

    @field_validator("secret")
    @classmethod
    def _real_secret(cls, secret: SecretStr) -> SecretStr:
        value = secret.get_secret_value()
        if value in EXAMPLE_SECRETS:
            raise ValueError("this is an example secret: make one (docs/cases.md, Webhooks)")
        try:
            parse_secret(value)
        except SignatureError as exc:
            raise ValueError(str(exc)) from None
        return secret


class DeliverySettings(BaseModel):
    """Retries, polling and the MQTT topic (``CITYSENSE_CENTER_DELIVERY__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    """Retries of one event wait twice as long each time, jittered, up to this."""
    retry_after_max_s: float = Field(default=3600.0, ge=0)
    """A receiver's ``Retry-After`` is honoured up to this."""
    poll_s: float = Field(default=5.0, gt=0)
    """Events another process wrote are found by reading the log this often (this node's own
    wake delivery at once)."""
    lease_s: float = Field(default=30.0, ge=1, le=3600)
    """One node delivers to a subscriber at a time, holding a lease it renews every third of
    this; when it is killed or cut off, another node takes over within about this long."""
    cursor_every_s: float = Field(default=1.0, ge=0, le=60)
    """A subscriber's cursor is written at most this often while events are confirmed (each
    write takes the case store's write turn); a crash sends again what was confirmed since the
    last write. 0: after every event."""
    node: str | None = Field(
        default=None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._-]+$"
    )
    """This node's name in its delivery leases (default: the host name). Give it when a node
    gets a new host name at each start (a container): restarted after a crash, a node then
    takes its own old lease back at once instead of waiting ``lease_s`` for it to run out.
    Each node's name must be its own: a node takes the lease of a dead process of its name."""
    mqtt: bool = True
    """Publish case events on ``citysense/v1/center/case-events`` (QoS 1)."""
    mqtt_start: StartAt = "now"
    mqtt_timeout_s: float = Field(default=30.0, gt=0)
    """A publish the broker has not acknowledged (PUBACK) within this is retried."""


def read_webhooks_file(path: Path) -> list[WebhookSubscriber]:
    """The subscribers in a JSON file holding a list of them (a ``ValueError`` says why not)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(document, list):
        raise ValueError(f"{path}: a list of webhook subscribers is expected")
    return [WebhookSubscriber.model_validate(entry) for entry in document]
