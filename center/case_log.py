"""What a change writes beside the case, in the same transaction: its audit trail entries
(``case_transitions``), its events (``case_events``), who acknowledged it, and its
acknowledgement deadline (``center.escalation``): armed as the system registers a live urgent
or critical case (for an operator to acknowledge) and as such a case enters ``dispatch`` (for
its crew to take it on), disarmed by the acknowledgement and as the case leaves the step."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from center import lifecycle
from center.db import CaseEventRow, CaseRow, CaseTransitionRow
from center.escalation import EscalationPolicy
from center.lifecycle import Action, Step
from center.schemas import CaseEvent, CaseEventType, CaseOut, EscalationOut, TransitionOut

_AUDIT_TABLE = cast(Table, CaseTransitionRow.__table__)
_EVENT_TABLE = cast(Table, CaseEventRow.__table__)
_INSERT_AUDIT = _AUDIT_TABLE.insert().returning(_AUDIT_TABLE.c.id)
_INSERT_EVENT = _EVENT_TABLE.insert().returning(_EVENT_TABLE.c.id)
"""Audit entries and events are written with Core inserts built once, not through the ORM's
unit of work: the case row's own changes go out with the transaction's last flush. A case is
written several times a second under load, and the ORM's flushes were most of its cost."""

AWAITING = frozenset({Step.REGISTER, Step.DISPATCH})
"""The steps at which an acknowledgement deadline may run."""


@dataclass(frozen=True, slots=True)
class CaseChange:
    """A case after a change, and the events the change wrote (in id order)."""

    case: CaseOut
    events: list[CaseEvent] = field(default_factory=list)


def event_from_row(row: CaseEventRow) -> CaseEvent:
    return CaseEvent.model_validate({**row.data, "id": row.id})


class CaseLog:
    """Writes one transaction's audit entries and events at wall time ``at``."""

    def __init__(
        self, session: Session, at: datetime, escalation: EscalationPolicy | None = None
    ) -> None:
        self._session = session
        self._at = at
        self._escalation = escalation or EscalationPolicy()
        self.events: list[CaseEvent] = []

    def event(
        self,
        type_: CaseEventType,
        row: CaseRow,
        transition: TransitionOut | None = None,
        escalation: EscalationOut | None = None,
    ) -> None:
        """Store an event with the case as ``row`` holds it now."""
        draft = CaseEvent(
            id=0,
            type=type_,
            at=self._at,
            case=CaseOut.model_validate(row),
            transition=transition,
            escalation=escalation,
        )
        stored = draft.model_dump(mode="json", exclude={"id"})
        values = {"case_id": row.id, "type": type_, "at": self._at, "data": stored}
        event_id = self._session.execute(_INSERT_EVENT, values).scalar_one()
        self.events.append(draft.model_copy(update={"id": event_id}))

    def _audit(
        self, row: CaseRow, action: str, actor: str, note: str, source: Step | None
    ) -> TransitionOut:
        values = {
            "case_id": row.id,
            "at": self._at,
            "actor": actor,
            "action": action,
            "from_step": None if source is None else source.value,
            "to_step": row.step,
            "note": note,
        }
        entry_id = self._session.execute(_INSERT_AUDIT, values).scalar_one()
        return TransitionOut.model_validate({"id": entry_id, **values})

    def discovered(self, row: CaseRow, note: str) -> None:
        """The first audit entry of a new case, and its ``opened`` event."""
        entry = self._audit(row, lifecycle.DISCOVERED, lifecycle.SYSTEM, note, None)
        self.event("opened", row, entry)

    def move(
        self, row: CaseRow, action: Action, actor: str, note: str, *, live: bool = True
    ) -> None:
        """Apply ``action`` to the case (refused by the lifecycle with the reason, or done:
        the step, its audit entry and a ``transition`` event). ``live``: the system acts on an
        alert that arrived in time (an acknowledgement deadline runs only for those)."""
        source = Step(row.step)
        target = lifecycle.apply(
            source,
            action,
            note=note,
            sensor_active=row.status == "open",
            acknowledged=row.acknowledged_at is not None,
        )
        row.step = target.value
        row.updated_at = self._at
        person = actor != lifecycle.SYSTEM
        if action is Action.REOPEN and not person:  # a new occurrence: to acknowledge again
            row.acknowledged_at = row.acknowledged_by = None
        if person and row.acknowledged_at is None:
            row.acknowledged_at, row.acknowledged_by = self._at, actor
        # Deadlines: a new owner must take it on, the center acknowledge what the system put
        # on its board; acknowledged or moved on, the wait is over.
        if target is Step.DISPATCH or (target is Step.REGISTER and not person and live):
            self._arm(row)
        elif action is Action.ACKNOWLEDGE or target is not source:
            row.ack_due_at = None
        entry = self._audit(row, action.value, actor, note, source)
        self.event("transition", row, entry)

    def _arm(self, row: CaseRow) -> None:
        row.ack_due_at = self._escalation.due(row.severity, self._at)
        row.escalations = 0

    def escalate(self, row: CaseRow) -> None:
        """Escalate a case whose acknowledgement deadline passed: priority one up, the next
        deadline further away (or none after the last), an ``escalated`` event."""
        if row.ack_due_at is None or Step(row.step) not in AWAITING:
            raise ValueError(f"case {row.id} has no acknowledgement deadline running")
        step = self._escalation.escalate(
            row.severity, row.priority, row.escalations, row.ack_due_at, self._at
        )
        row.priority = step.priority_to
        row.escalations = step.level
        row.ack_due_at = step.next_due_at
        row.updated_at = self._at
        detail = EscalationOut(
            level=step.level,
            overdue_since=step.overdue_since,
            priority_from=step.priority_from,
            priority_to=step.priority_to,
            next_due_at=step.next_due_at,
        )
        self.event("escalated", row, escalation=detail)

    def change(self, row: CaseRow) -> CaseChange:
        return CaseChange(CaseOut.model_validate(row), list(self.events))
