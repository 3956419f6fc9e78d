"""The case lifecycle as a pure state machine: every allowed transition, a sample of refused
ones with their reasons, and what the system does on its own."""

from __future__ import annotations

from datetime import timedelta

import pytest

from center import lifecycle
from center.errors import TransitionRefusedError
from center.lifecycle import Action, Step
from tests.center.factories import T0

D, R, P, H, V, C, E = (
    Step.DISCOVER,
    Step.REGISTER,
    Step.DISPATCH,
    Step.HANDLE,
    Step.VERIFY,
    Step.CLOSE,
    Step.EVALUATE,
)

# The whole table, written out again here: (from, action, to, needs a note).
ALLOWED = [
    (D, Action.REGISTER, R, False),
    (D, Action.DISMISS, C, True),
    (R, Action.ACKNOWLEDGE, R, False),
    (R, Action.DISMISS, C, True),
    (R, Action.DISPATCH, P, False),
    (P, Action.HANDLE, H, False),
    (H, Action.REDISPATCH, P, True),
    (V, Action.REDISPATCH, P, True),
    (H, Action.VERIFY, V, False),
    (V, Action.REWORK, H, True),
    (V, Action.CLOSE, C, False),
    (C, Action.EVALUATE, E, False),
    (C, Action.REOPEN, R, True),
    (E, Action.REOPEN, R, True),
]


def test_the_table_is_exactly_the_allowed_transitions() -> None:
    table = {
        (step, t.action, t.target, t.needs_note)
        for t in lifecycle.TRANSITIONS
        for step in t.sources
    }
    assert table == set(ALLOWED)


@pytest.mark.parametrize(("source", "action", "target", "needs_note"), ALLOWED)
def test_every_allowed_transition(
    source: Step, action: Action, target: Step, needs_note: bool
) -> None:
    assert lifecycle.apply(source, action, note="checked on site") is target
    assert action in lifecycle.allowed_actions(source, acknowledged=False)
    if target is not source:  # the target step names it too (acknowledge stays: by name only)
        assert lifecycle.action_to(source, target) is action
    if needs_note:
        with pytest.raises(TransitionRefusedError, match=f"{action} needs a note saying why"):
            lifecycle.apply(source, action, note="  ")
    else:
        assert lifecycle.apply(source, action) is target


REFUSED = [
    (D, Action.DISPATCH, "dispatch needs the case at register, it is at discover"),
    (D, Action.CLOSE, "close needs the case at verify, it is at discover"),
    (R, Action.HANDLE, "handle needs the case at dispatch, it is at register"),
    (P, Action.VERIFY, "verify needs the case at handle, it is at dispatch"),
    (P, Action.DISMISS, "dismiss needs the case at discover or register, it is at dispatch"),
    (H, Action.CLOSE, r"close needs the case at verify, it is at handle \(allowed: redispatch,"),
    (V, Action.EVALUATE, "evaluate needs the case at close, it is at verify"),
    (C, Action.CLOSE, "close needs the case at verify, it is at close"),
    (E, Action.EVALUATE, r"evaluate needs the case at close, it is at evaluate \(allowed: reopen"),
    (H, Action.REOPEN, "reopen needs the case at close or evaluate, it is at handle"),
]


def test_a_case_is_acknowledged_once() -> None:
    assert Action.ACKNOWLEDGE in lifecycle.allowed_actions(R, acknowledged=False)
    assert Action.ACKNOWLEDGE not in lifecycle.allowed_actions(R, acknowledged=True)
    assert lifecycle.apply(R, Action.ACKNOWLEDGE, acknowledged=False) is R
    with pytest.raises(TransitionRefusedError, match="the case is already acknowledged") as again:
        lifecycle.apply(R, Action.ACKNOWLEDGE, acknowledged=True)
    assert again.value.allowed == ["dismiss", "dispatch"]
    with pytest.raises(TransitionRefusedError, match="acknowledge needs the case at register"):
        lifecycle.apply(P, Action.ACKNOWLEDGE)  # at dispatch the owner takes it on: handle


@pytest.mark.parametrize(("source", "action", "reason"), REFUSED)
def test_refused_transitions_say_why(source: Step, action: Action, reason: str) -> None:
    with pytest.raises(TransitionRefusedError, match=reason) as refused:
        lifecycle.apply(source, action, note="a note")
    error = refused.value
    assert (error.step, error.action) == (source.value, action.value)
    assert error.allowed == [a.value for a in lifecycle.allowed_actions(source)]
    assert error.reason == str(error)


@pytest.mark.parametrize(
    ("source", "target", "reason"),
    [
        (D, V, r"no action leads from discover to verify \(from discover: register \(register\)"),
        (H, C, "no action leads from handle to close"),
        (P, P, "the case is already at dispatch"),
        (R, R, "the case is already at register"),  # acknowledging is asked for by name
        (E, C, "no action leads from evaluate to close"),
    ],
)
def test_a_step_no_action_leads_to_is_refused(source: Step, target: Step, reason: str) -> None:
    with pytest.raises(TransitionRefusedError, match=reason) as refused:
        lifecycle.action_to(source, target)
    assert refused.value.action is None


def test_closing_while_the_sensor_still_alarms_needs_a_note() -> None:
    with pytest.raises(TransitionRefusedError, match="the sensor still reports the condition"):
        lifecycle.apply(V, Action.CLOSE, sensor_active=True)
    assert lifecycle.apply(V, Action.CLOSE, note="sensor faulty", sensor_active=True) is C
    assert lifecycle.apply(V, Action.CLOSE, sensor_active=False) is C


@pytest.mark.parametrize(
    ("severity", "late", "actions"),
    [
        ("critical", False, (Action.REGISTER,)),
        ("urgent", False, (Action.REGISTER,)),
        ("urgent", True, ()),
        ("critical", True, ()),
        ("warning", False, ()),
        ("maintenance", False, ()),
    ],
)
def test_live_emergencies_are_registered_by_the_system_for_an_operator_to_acknowledge(
    severity: str, late: bool, actions: tuple[Action, ...]
) -> None:
    assert lifecycle.opening_actions(severity, late) == actions
    assert lifecycle.awaits_acknowledgement(severity, late) is bool(actions)
    step = D
    for action in actions:
        step = lifecycle.apply(step, action, note=lifecycle.SYSTEM_NOTES[action])
    assert step is (R if actions else D)  # dispatching is the operator's


@pytest.mark.parametrize(
    ("step", "actions"),
    [(C, (Action.REOPEN,)), (E, (Action.REOPEN,)), (H, ()), (V, ()), (D, ()), (R, ())],
)
def test_a_condition_back_reopens_only_closed_cases(
    step: Step, actions: tuple[Action, ...]
) -> None:
    assert lifecycle.retrigger_actions(step) == actions
    for action in actions:  # the system's own notes make them valid
        step = lifecycle.apply(step, action, note=lifecycle.SYSTEM_NOTES[action])


@pytest.mark.parametrize(
    ("step", "recovered", "awaiting"),
    [(D, True, True), (P, True, True), (V, True, True), (C, True, False), (E, True, False),
     (P, False, False), (C, False, False)],
)  # fmt: skip
def test_a_recovered_sensor_leaves_the_case_awaiting_verification(
    step: Step, recovered: bool, awaiting: bool
) -> None:
    assert lifecycle.awaiting_verification(step, recovered) is awaiting


def test_detected_late_is_strictly_after_the_threshold() -> None:
    limit = timedelta(minutes=5)
    assert not lifecycle.detected_late(T0, T0 + limit, limit)
    assert lifecycle.detected_late(T0, T0 + limit + timedelta(seconds=1), limit)
    assert not lifecycle.detected_late(T0, T0 - timedelta(hours=1), limit)  # device clock ahead


def test_the_system_actor_and_the_first_entry_are_not_actions() -> None:
    assert lifecycle.SYSTEM == "system"
    assert lifecycle.DISCOVERED not in set(Action)
    assert [s.value for s in Step] == [
        "discover",
        "register",
        "dispatch",
        "handle",
        "verify",
        "close",
        "evaluate",
    ]
