"""Acknowledgement deadlines: an urgent or critical case nobody acknowledged in time, or
dispatched and not taken on in time, is escalated, again and again at growing intervals, a
bounded number of times.

Two waits are timed, both by this policy (``center.case_log`` arms and disarms them):

- **The center's**: the system registers a live urgent or critical case as it opens (or
  re-opens it when its condition comes back) and puts it on the urgent center's board. The
  deadline runs until an operator acknowledges it (``acknowledge``, 接警确认, or any move such
  as ``dispatch`` or ``dismiss``).
- **The owner's**: whenever such a case enters ``dispatch`` (an operator's dispatch, or a
  ``redispatch`` to another owner) the deadline runs again until the owner takes it on
  (``handle``, 签收) or it leaves ``dispatch``.

Missed, the case is escalated: an ``escalated`` case event (so the dashboard, the live stream,
webhooks and MQTT all see it again), its ``priority`` one level up, and the next deadline
``factor`` times further away, measured from the escalation. After ``max_escalations`` the case
is left at its raised priority (nobody is re-notified forever).

Priority is a number, 1 (lowest) to ``MAX_PRIORITY``; a case starts at its severity's level
(``initial_priority``) and is never lowered by the system.

Pure: no I/O, no clock reads; times are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

PRIORITY_OF_SEVERITY: Final[Mapping[str, int]] = {
    "maintenance": 1,
    "warning": 2,
    "urgent": 3,
    "critical": 4,
}
MAX_PRIORITY: Final = 9


def initial_priority(severity: str) -> int:
    """The priority a case starts at: its severity's level."""
    return PRIORITY_OF_SEVERITY.get(severity, 1)


def _default_deadlines() -> dict[str, timedelta]:
    return {"urgent": timedelta(minutes=5), "critical": timedelta(minutes=2)}


@dataclass(frozen=True, slots=True)
class Escalation:
    """One escalation: the ``level``-th of this wait, the deadline that passed, the
    priority before and after, and when the next one is due (``None`` after the last)."""

    level: int
    overdue_since: datetime
    priority_from: int
    priority_to: int
    next_due_at: datetime | None


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """``deadlines``: how long a case of each severity may wait to be acknowledged or taken on
    (severities without one are never escalated); ``factor``: each later deadline is this many
    times the one before; ``max_escalations``: per wait."""

    deadlines: Mapping[str, timedelta] = field(default_factory=_default_deadlines)
    factor: float = 2.0
    max_escalations: int = 3

    def __post_init__(self) -> None:
        if any(d <= timedelta(0) for d in self.deadlines.values()):
            raise ValueError(f"acknowledgement deadlines must be positive: {self.deadlines}")
        if self.factor < 1:
            raise ValueError(f"escalation factor {self.factor} must be >= 1")
        if self.max_escalations < 0:
            raise ValueError(f"max_escalations {self.max_escalations} must be >= 0")

    def due(self, severity: str, since: datetime) -> datetime | None:
        """When a case that started waiting (registered by the system, or dispatched) at
        ``since`` must have been acknowledged or taken on; ``None`` when its severity has no
        deadline (or escalation is off)."""
        deadline = self.deadlines.get(severity)
        if deadline is None or self.max_escalations == 0:
            return None
        return since + deadline

    def escalate(
        self, severity: str, priority: int, escalations: int, due_at: datetime, now: datetime
    ) -> Escalation:
        """The escalation of a case whose deadline ``due_at`` passed (``now >= due_at``) after
        ``escalations`` earlier escalations of this wait."""
        if now < due_at:
            raise ValueError(f"not due: {now.isoformat()} is before {due_at.isoformat()}")
        level = escalations + 1
        deadline = self.deadlines.get(severity, timedelta(0))
        next_due = (
            now + deadline * self.factor**level
            if level < self.max_escalations and deadline > timedelta(0)
            else None
        )
        return Escalation(
            level=level,
            overdue_since=due_at,
            priority_from=priority,
            priority_to=min(priority + 1, MAX_PRIORITY),
            next_due_at=next_due,
        )
