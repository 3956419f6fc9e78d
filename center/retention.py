"""Retention: closed cases and dead letters are kept for a while, then deleted by a periodic task
of the node (``citysense serve``); docs/cases.md, "Retention".

- A case at ``close`` or ``evaluate`` whose sensor recovered and that has not changed for
  ``closed_cases`` is deleted with its audit trail and events (``CaseStore.purge_closed``),
  unless a delivery subscriber (a webhook, the MQTT topic) has not confirmed all its events
  yet (``delivered_through``: the lowest cursor): an event is never deleted before every
  subscriber has it, however long one is down or stopped.
- A dead letter received more than ``dead_letters`` ago is deleted (``JsonlDeadLetters.prune``;
  the files also rotate by size, ingest's ``dead_letter_max_bytes`` × ``dead_letter_keep``).

``None`` keeps them for ever. The clock is injected: a test runs a pass at any time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from center.errors import StoreError
from center.store import CaseStore

log = logging.getLogger(__name__)


class ExpiringLetters(Protocol):
    """Dead letters that can be pruned by age (``ingest.dead_letters.JsonlDeadLetters``)."""

    def prune(self, before: datetime) -> int:
        """Delete the letters received before ``before`` (blocking); how many."""
        ...


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    closed_cases: timedelta | None = timedelta(days=730)
    dead_letters: timedelta | None = timedelta(days=30)

    @classmethod
    def from_days(cls, closed_cases: float, dead_letters: float) -> RetentionPolicy:
        """From the settings' days, where 0 keeps for ever."""
        return cls(
            timedelta(days=closed_cases) if closed_cases > 0 else None,
            timedelta(days=dead_letters) if dead_letters > 0 else None,
        )


@dataclass(frozen=True, slots=True)
class Purged:
    cases: int = 0
    dead_letters: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Retention:
    def __init__(
        self,
        store: CaseStore,
        policy: RetentionPolicy,
        *,
        dead_letters: ExpiringLetters | None = None,
        clock: Callable[[], datetime] = _utc_now,
        delivered_through: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.dead_letters = dead_letters
        self.clock = clock
        self.delivered_through = delivered_through
        """The event id every delivery subscriber confirmed (``None``: none is configured)."""

    async def run_once(self) -> Purged:
        """One pass at the clock's time now."""
        now = self.clock()
        cases = letters = 0
        if self.policy.closed_cases is not None:
            cases = await self.store.purge_closed(
                now - self.policy.closed_cases, delivered_through=self.delivered_through()
            )
        if self.dead_letters is not None and self.policy.dead_letters is not None:
            letters = await asyncio.to_thread(
                self.dead_letters.prune, now - self.policy.dead_letters
            )
        return Purged(cases, letters)

    async def run(self, every: timedelta) -> None:
        """A pass now and then one every ``every``, for ever. A pass that fails (the database
        or the disk) is logged and tried again at the next."""
        while True:
            try:
                purged = await self.run_once()
            except (StoreError, OSError) as exc:
                log.warning("retention pass failed, trying again in %s: %s", every, exc)
            else:
                if purged.cases or purged.dead_letters:
                    log.info(
                        "retention: deleted %d closed cases, %d dead letters",
                        purged.cases,
                        purged.dead_letters,
                    )
            await asyncio.sleep(every.total_seconds())
