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


class CaseNotFoundError(CenterError, LookupError):
    """No case has that id."""


class TransitionRefusedError(CenterError):
    """A lifecycle transition the case's step does not allow, with the reason.

    ``step`` is where the case is, ``action`` what was asked (``None`` when a target step was
    asked for and no action leads there), ``allowed`` the actions its step allows."""

    def __init__(self, reason: str, *, step: str, action: str | None, allowed: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step
        self.action = action
        self.allowed = allowed
