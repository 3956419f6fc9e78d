"""The center's own errors; library errors are translated into these at the boundary."""

from __future__ import annotations


class CenterError(Exception):
    """Base of every error the center raises on purpose."""


class AlertRejectedError(CenterError, ValueError):
    """An alert that cannot become a case (unknown class, naive timestamp, wrong sensor)."""


class StoreError(CenterError, ConnectionError):
    """The case store failed: database unreachable, or an unexpected database error.

    A ``ConnectionError``, so a caller that knows nothing of the center (ingest) can tell it
    from a refusal (``ValueError``) and retry it."""


class MigrationError(StoreError):
    """The case store schema could not be brought up to date."""
