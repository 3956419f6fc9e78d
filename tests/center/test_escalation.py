"""Acknowledgement deadlines: an urgent or critical case not acknowledged in time (or, once
dispatched, not taken on in time) is escalated (an `escalated` event, priority one up), at
growing intervals, at most N times; with an injected clock, so every step is at an exact time."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from center import CaseBroadcaster, CaseEvent, CaseService, CaseStore
from center.escalation import MAX_PRIORITY, EscalationPolicy, initial_priority
from center.lifecycle import Action
from tests.center.factories import DETECTED, alert, case_event, sensor_info

MINUTE = timedelta(minutes=1)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(DETECTED)


@pytest.fixture
def escalating(engine: AsyncEngine, clock: Clock) -> CaseService:
    """The default deadlines: urgent 5 min, critical 2 min, doubling, 3 times."""
    return CaseService(CaseStore(engine), CaseBroadcaster(), clock=clock)


async def escalations_at(service: CaseService, clock: Clock, after: timedelta) -> int:
    clock.now = DETECTED + after
    return await service.escalate_due()


def test_the_schedule_grows_and_ends() -> None:
    policy = EscalationPolicy()
    due = policy.due("urgent", DETECTED)
    assert due == DETECTED + 5 * MINUTE
    first = policy.escalate("urgent", 3, 0, due, due)
    assert (first.level, first.priority_from, first.priority_to) == (1, 3, 4)
    assert first.next_due_at == due + 10 * MINUTE
    assert first.next_due_at is not None
    second = policy.escalate("urgent", 4, 1, first.next_due_at, first.next_due_at)
    assert second.next_due_at == first.next_due_at + 20 * MINUTE
    assert second.next_due_at is not None
    third = policy.escalate("urgent", 5, 2, second.next_due_at, second.next_due_at)
    assert (third.level, third.priority_to, third.next_due_at) == (3, 6, None)
    assert policy.escalate("urgent", MAX_PRIORITY, 0, due, due).priority_to == MAX_PRIORITY
    assert policy.due("maintenance", DETECTED) is None
    assert EscalationPolicy(max_escalations=0).due("urgent", DETECTED) is None
    with pytest.raises(ValueError, match="not due"):
        policy.escalate("urgent", 3, 0, due, due - timedelta(seconds=1))


async def test_an_urgent_case_nobody_acknowledges_is_escalated_three_times(
    escalating: CaseService, clock: Clock
) -> None:
    case = await escalating.store.record_alert(alert(severity="urgent"), sensor_info(), DETECTED)
    assert case is not None
    assert (case.step, case.priority, case.escalations) == ("register", 3, 0)
    assert case.ack_due_at == DETECTED + 5 * MINUTE
    async with escalating.broadcaster.subscribe() as live:
        assert await escalations_at(escalating, clock, 5 * MINUTE - timedelta(seconds=1)) == 0
        assert await escalations_at(escalating, clock, 5 * MINUTE) == 1
        assert await escalations_at(escalating, clock, 14 * MINUTE) == 0  # next: 5 + 10
        assert await escalations_at(escalating, clock, 15 * MINUTE) == 1
        assert await escalations_at(escalating, clock, 35 * MINUTE) == 1  # 15 + 20: the last
        assert await escalations_at(escalating, clock, 24 * 60 * MINUTE) == 0
        escalating.broadcaster.close()
        events = [event async for event in live]
    assert [e.type for e in events] == ["escalated"] * 3
    details = [e.escalation for e in events]
    assert [(d.level, d.priority_from, d.priority_to) for d in details if d] == [
        (1, 3, 4),
        (2, 4, 5),
        (3, 5, 6),
    ]
    assert [e.at for e in events] == [DETECTED + m * MINUTE for m in (5, 15, 35)]
    assert [d.next_due_at for d in details if d] == [
        DETECTED + 15 * MINUTE,
        DETECTED + 35 * MINUTE,
        None,
    ]
    final = await escalating.store.get_case(case.id)
    assert final is not None
    assert (final.priority, final.escalations, final.ack_due_at) == (6, 3, None)
    assert escalating.escalated == 3
    stored = await escalating.store.events_after(0)
    assert [e.type for e in stored][-3:] == ["escalated"] * 3  # in the log: webhooks, MQTT


async def test_a_critical_case_has_two_minutes(escalating: CaseService, clock: Clock) -> None:
    case = await escalating.store.record_alert(alert(severity="critical"), sensor_info(), DETECTED)
    assert case is not None
    assert (case.priority, case.ack_due_at) == (4, DETECTED + 2 * MINUTE)
    assert await escalations_at(escalating, clock, 2 * MINUTE) == 1


@pytest.mark.parametrize(
    "action", [Action.ACKNOWLEDGE, Action.DISPATCH], ids=["acknowledge", "dispatch"]
)
async def test_a_persons_first_action_is_the_acknowledgement(
    escalating: CaseService, clock: Clock, action: Action
) -> None:
    seen = await escalating.store.record_alert(alert(sensor_id="st-1.a"), None, DETECTED)
    late = await escalating.store.record_alert(alert(sensor_id="st-1.b"), None, DETECTED)
    assert seen is not None
    assert late is not None
    assert (seen.acknowledged_at, seen.acknowledged_by) == (None, None)  # the system's register
    clock.now = DETECTED + 4 * MINUTE
    acked = await escalating.transition(seen.id, action=Action.ACKNOWLEDGE, actor="值班员")
    assert (acked.step, acked.ack_due_at, acked.priority) == ("register", None, 3)
    assert (acked.acknowledged_at, acked.acknowledged_by) == (clock.now, "值班员")
    assert await escalations_at(escalating, clock, 5 * MINUTE) == 1  # only the other one
    clock.now = DETECTED + 6 * MINUTE
    after = await escalating.transition(late.id, action=action, actor="王工")
    assert (after.acknowledged_at, after.acknowledged_by, after.priority) == (clock.now, "王工", 4)
    if action is Action.DISPATCH:  # acknowledged by dispatching: now the crew's deadline runs
        assert (after.ack_due_at, after.escalations) == (clock.now + 5 * MINUTE, 0)
    else:
        assert (after.ack_due_at, after.escalations) == (None, 1)  # kept
        assert await escalations_at(escalating, clock, 60 * MINUTE) == 0


async def test_a_dispatched_case_not_taken_on_is_escalated(
    escalating: CaseService, clock: Clock
) -> None:
    case = await escalating.store.record_alert(alert(), None, DETECTED)
    assert case is not None
    await escalating.transition(case.id, action=Action.ACKNOWLEDGE, actor="值班员")
    clock.now = DETECTED + MINUTE
    sent = await escalating.transition(case.id, action=Action.DISPATCH, actor="值班员")
    assert sent.ack_due_at == DETECTED + 6 * MINUTE
    assert await escalations_at(escalating, clock, 6 * MINUTE) == 1
    clock.now = DETECTED + 7 * MINUTE
    taken = await escalating.transition(case.id, action=Action.HANDLE, actor="王工")
    assert (taken.ack_due_at, taken.priority, taken.acknowledged_by) == (None, 4, "值班员")
    assert await escalations_at(escalating, clock, 60 * MINUTE) == 0


async def test_a_redispatch_starts_a_new_deadline(escalating: CaseService, clock: Clock) -> None:
    case = await escalating.store.record_alert(alert(), None, DETECTED)
    assert case is not None
    assert await escalations_at(escalating, clock, 5 * MINUTE) == 1
    await escalating.transition(case.id, action=Action.DISPATCH, actor="值班员")
    await escalating.transition(case.id, action=Action.HANDLE, actor="王工")
    clock.now = DETECTED + 8 * MINUTE
    back = await escalating.transition(
        case.id, action=Action.REDISPATCH, actor="王工", note="not ours: water company"
    )
    assert (back.ack_due_at, back.escalations, back.priority) == (
        DETECTED + 13 * MINUTE,
        0,
        4,
    )
    assert await escalations_at(escalating, clock, 13 * MINUTE) == 1


async def test_no_deadline_for_cases_the_system_did_not_register(
    escalating: CaseService, clock: Clock
) -> None:
    """Maintenance cases, and late (backlog) emergencies, wait at discover for an operator (who
    acknowledges them by registering them); once an operator dispatches an emergency, its
    crew's deadline runs."""
    quiet = await escalating.store.record_alert(
        alert(sensor_id="st-1.m", severity="maintenance"), None, DETECTED
    )
    late = await escalating.store.record_alert(
        alert(sensor_id="st-1.l"), None, DETECTED + 60 * MINUTE
    )
    assert quiet is not None
    assert late is not None
    assert (quiet.priority, quiet.ack_due_at, late.step, late.ack_due_at) == (
        1,
        None,
        "discover",
        None,
    )
    assert await escalations_at(escalating, clock, 600 * MINUTE) == 0
    registered = await escalating.transition(late.id, action=Action.REGISTER, actor="值班员")
    assert (registered.ack_due_at, registered.acknowledged_by) == (None, "值班员")
    assert Action.ACKNOWLEDGE not in registered.next_actions
    dispatched = await escalating.transition(late.id, action=Action.DISPATCH, actor="值班员")
    assert dispatched.ack_due_at == clock.now + 5 * MINUTE


async def test_the_deadlines_are_the_stores_setting(engine: AsyncEngine, clock: Clock) -> None:
    policy = EscalationPolicy({"urgent": timedelta(seconds=30)}, factor=3, max_escalations=1)
    service = CaseService(CaseStore(engine, escalation=policy), CaseBroadcaster(), clock=clock)
    case = await service.store.record_alert(alert(), None, DETECTED)
    assert case is not None
    assert case.ack_due_at == DETECTED + timedelta(seconds=30)
    assert await escalations_at(service, clock, timedelta(seconds=30)) == 1
    assert await escalations_at(service, clock, 600 * MINUTE) == 0  # one only


def test_events_stored_before_priorities_are_read_with_their_severitys() -> None:
    old = case_event(7).model_dump(mode="json")
    del old["case"]["priority"], old["case"]["ack_due_at"], old["case"]["escalations"]
    del old["escalation"]
    event = CaseEvent.model_validate(old)
    assert (event.case.priority, event.case.escalations) == (initial_priority("urgent"), 0)
