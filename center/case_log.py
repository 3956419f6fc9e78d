"""What a change writes beside the case, in the same transaction: its audit trail entries
(``case_transitions``), its events (``case_events``) and its acknowledgement deadline (armed
as an urgent or critical case enters ``dispatch``, disarmed as it leaves: ``center.escalation``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from center import lifecycle
from center.db import CaseEventRow, CaseRow, CaseTransitionRow
from center.escalation import EscalationPolicy
from center.lifecycle import Action, Step
from center.schemas import CaseEvent, CaseEventType, CaseOut, EscalationOut, TransitionOut


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
        self, session: AsyncSession, at: datetime, escalation: EscalationPolicy | None = None
    ) -> None:
        self._session = session
        self._at = at
        self._escalation = escalation or EscalationPolicy()
        self.events: list[CaseEvent] = []

    async def event(
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
        event_row = CaseEventRow(case_id=row.id, type=type_, at=self._at, data=stored)
        self._session.add(event_row)
        await self._session.flush()
        self.events.append(draft.model_copy(update={"id": event_row.id}))

    async def _audit(
        self, row: CaseRow, action: str, actor: str, note: str, source: Step | None
    ) -> TransitionOut:
        entry = CaseTransitionRow(
            case_id=row.id,
            at=self._at,
            actor=actor,
            action=action,
            from_step=None if source is None else source.value,
            to_step=row.step,
            note=note,
        )
        self._session.add(entry)
        await self._session.flush()
        return TransitionOut.model_validate(entry)

    async def discovered(self, row: CaseRow, note: str) -> None:
        """The first audit entry of a new case, and its ``opened`` event."""
        entry = await self._audit(row, lifecycle.DISCOVERED, lifecycle.SYSTEM, note, None)
        await self.event("opened", row, entry)

    async def move(self, row: CaseRow, action: Action, actor: str, note: str) -> None:
        """Apply ``action`` to the case (refused by the lifecycle with the reason, or done:
        the step, its audit entry and a ``transition`` event)."""
        source = Step(row.step)
        target = lifecycle.apply(source, action, note=note, sensor_active=row.status == "open")
        row.step = target.value
        row.updated_at = self._at
        if target is Step.DISPATCH:  # a new owner: the deadline to take it on starts now
            row.ack_due_at = self._escalation.due_on_dispatch(row.severity, self._at)
            row.escalations = 0
        elif source is Step.DISPATCH:  # taken on (handle): acknowledged
            row.ack_due_at = None
        entry = await self._audit(row, action.value, actor, note, source)
        await self.event("transition", row, entry)

    async def escalate(self, row: CaseRow) -> None:
        """Escalate a case whose acknowledgement deadline passed: priority one up, the next
        deadline further away (or none after the last), an ``escalated`` event."""
        if row.ack_due_at is None or Step(row.step) is not Step.DISPATCH:
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
        await self.event("escalated", row, escalation=detail)

    def change(self, row: CaseRow) -> CaseChange:
        return CaseChange(CaseOut.model_validate(row), list(self.events))
