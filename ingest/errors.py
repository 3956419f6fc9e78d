"""Ingest's own errors: what a sink tells its caller, whatever library sits behind it.

Adapters translate their library's exceptions (HTTP status codes, ``urllib3`` connection errors,
``OSError``) into these at their boundary, so the consumer decides on two cases only:

- ``TransientSinkError``: the store is unreachable or overloaded now. Stop acknowledging,
  keep the messages, try again later (after ``retry_after`` seconds when the store said so).
- ``PermanentSinkError``: the store refuses, and will refuse the same request again (a 4xx, a
  record that cannot be encoded). ``reason`` is a machine-readable code for a counter label,
  ``detail`` the store's own words, ``batches`` the batches whose readings were refused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchKey:
    """Identifies a telemetry batch: ``(station, boot epoch, sequence number)``."""

    station_id: str
    boot_epoch: int
    seq: int


class SinkError(Exception):
    """A sink could not take or store what it was given."""

    def __init__(self, sink: str, detail: str) -> None:
        super().__init__(f"{sink}: {detail}")
        self.sink = sink
        self.detail = detail


class TransientSinkError(SinkError):
    """Worth retrying later: the store is down, overloaded, or timed out.

    Nothing is dropped: what the sink had buffered stays buffered for the next ``flush()``.
    """

    def __init__(
        self, sink: str, detail: str, *, attempts: int = 1, retry_after: float | None = None
    ) -> None:
        super().__init__(sink, detail)
        self.attempts = attempts
        self.retry_after = retry_after
        """Seconds the store asked us to wait (``Retry-After``), when it said so."""


class PermanentSinkError(SinkError):
    """Refused for good: retrying the same request gives the same answer."""

    def __init__(
        self, sink: str, reason: str, detail: str, batches: tuple[BatchKey, ...] = ()
    ) -> None:
        super().__init__(sink, f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.batches = batches
        """The batches whose readings the store refused (the sink no longer holds them)."""
