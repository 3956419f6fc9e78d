"""Webhooks: each case event as one signed JSON POST (``center.delivery.signing``).

The body is the ``CaseEvent`` as the live stream and MQTT carry it. A 2xx confirms it. What is
retried (``TransientDeliveryError``): no connection, a timeout, 408, 429 and every 5xx, after
the ``Retry-After`` the receiver gives (seconds or an HTTP date) if it gives one. Any other
status (a 4xx, a redirect: signed deliveries are not redirected) is a refusal for good
(``RefusedDeliveryError``). Library errors stop here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from center.delivery.relay import RefusedDeliveryError, TransientDeliveryError
from center.delivery.settings import StartAt, WebhookSubscriber
from center.delivery.signing import parse_secret, signed_headers
from center.schemas import CaseEvent

RETRIED_STATUSES = frozenset({408, 429})
REASON_BYTES = 300
USER_AGENT = "citysense-webhooks/1"


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds: a number of seconds, or an HTTP date; ``None`` if absent or
    unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def is_retried(status: int) -> bool:
    return status in RETRIED_STATUSES or status >= 500


class WebhookChannel:
    """One subscriber's endpoint over a shared ``httpx.AsyncClient``."""

    def __init__(
        self,
        subscriber: WebhookSubscriber,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._subscriber = subscriber
        self._url = str(subscriber.url)
        self._key = parse_secret(subscriber.secret.get_secret_value())
        self._client = client
        self._clock = clock

    @property
    def name(self) -> str:
        return f"webhook:{self._subscriber.name}"

    @property
    def start(self) -> StartAt:
        return self._subscriber.start

    async def send(self, event: CaseEvent) -> None:
        body = event.model_dump_json().encode()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signed_headers(self._key, str(event.id), int(self._clock()), body),
        }
        request = self._client.build_request(
            "POST", self._url, content=body, headers=headers, timeout=self._subscriber.timeout_s
        )
        try:
            response = await self._client.send(request, stream=True)
            try:
                status = response.status_code
                if 200 <= status < 300:
                    return
                detail = await _start_of(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError("timeout", f"no answer in time: {exc!r}") from None
        except httpx.HTTPError as exc:
            raise TransientDeliveryError("unreachable", f"{type(exc).__name__}: {exc}") from None
        reason = f"HTTP {status}" + (f": {detail}" if detail else "")
        if is_retried(status):
            wait = retry_after_s(response.headers.get("retry-after"), datetime.now(UTC))
            raise TransientDeliveryError(f"http_{status}", reason, retry_after=wait)
        raise RefusedDeliveryError(f"http_{status}", reason)


async def _start_of(response: httpx.Response) -> str:
    """The first bytes of a refusal's body, for the record (never the whole of it)."""
    received = b""
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) >= REASON_BYTES:
            break
    return received[:REASON_BYTES].decode(errors="replace").strip()
