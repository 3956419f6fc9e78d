"""The case lifecycle: GB/T 30428's closed loop of 7 steps as a pure state machine.

discover (发现问题) → register (受理立案) → dispatch (任务派遣) → handle (问题处置) → verify
(现场核查) → close (案件结案) → evaluate (考核评价), with the ways back a real center needs:
a failed verification goes back to the owner (``rework``) or to another one (``redispatch``),
an owner hands back a case that is not theirs (``redispatch``), a report that is no case is
dismissed (``dismiss``), a closed case whose problem is back is re-opened (``reopen``).
``TRANSITIONS`` is the whole table (docs/cases.md draws it): an action is allowed from the steps
it names and leads to one step, and no two actions lead from one step to the same step, so a
request may name the target step instead of the action. Anything else is refused with a
``TransitionRefusedError`` that says why and what is allowed.

The sensor is not an operator: its recovery never moves the step. A case whose condition
cleared and that is not closed is *recovered, awaiting on-site verification*
(``awaiting_verification``); only a person closes it, after verifying on site. A condition
that comes back (a flapping re-trigger) re-opens a closed case (``retrigger_actions``): a hazard
nobody watches is worse than a case re-opened once too often.

Urgent and critical cases that arrive live are registered by the system as they open
(``opening_actions``) and go straight to the urgent center (its board, sound and notification,
webhooks, MQTT); the others wait at discover for an operator. There an operator acknowledges
the case (``acknowledge``, 接警确认: it is seen and someone owns it; the step stays at
register) and dispatches it (``dispatch``, 任务派遣) to the crew or department that handles it.
Acknowledging is the one action that does not move the step, and it is allowed once per
occurrence: a case is acknowledged by its first person's action (``acknowledge`` or any move),
and a re-opened case must be acknowledged again. A case the center learned of late (a backlog
after an outage, ``detected_late``) is recorded and marked, not registered automatically: an
operator checks it first.

Pure: no I/O, no clock reads; times are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from center.errors import TransitionRefusedError
from rules.alerts import EMERGENCY


class Step(StrEnum):
    """Where a case is in the 7-step loop."""

    DISCOVER = "discover"  # 发现问题: the sensor's rule opened it
    REGISTER = "register"  # 受理立案: accepted as a case
    DISPATCH = "dispatch"  # 任务派遣: sent to an owner (a department, the urgent center's crew)
    HANDLE = "handle"  # 问题处置: the owner is working on it
    VERIFY = "verify"  # 现场核查: reported done, to be verified on site
    CLOSE = "close"  # 案件结案: verified (or dismissed), closed
    EVALUATE = "evaluate"  # 考核评价: the handling was evaluated


class Action(StrEnum):
    """What a person (or the system) does to a case: a move, or `acknowledge` (to own it)."""

    REGISTER = "register"
    ACKNOWLEDGE = "acknowledge"
    DISMISS = "dismiss"
    DISPATCH = "dispatch"
    HANDLE = "handle"
    REDISPATCH = "redispatch"
    VERIFY = "verify"
    REWORK = "rework"
    CLOSE = "close"
    EVALUATE = "evaluate"
    REOPEN = "reopen"


DISCOVERED: Final = "discover"
"""The audit trail's action for a case's first entry (no step before it): the sensor's rule
discovered it. Not an ``Action``: nobody can ask for it."""

SYSTEM: Final = "system"
"""The actor of the center's own transitions; reserved, no person may act as it."""

CLOSED_STEPS: Final = frozenset({Step.CLOSE, Step.EVALUATE})


@dataclass(frozen=True, slots=True)
class Transition:
    action: Action
    sources: frozenset[Step]
    target: Step
    needs_note: bool
    meaning: str


def _t(
    action: Action, sources: Iterable[Step], target: Step, meaning: str, *, note: bool = False
) -> Transition:
    return Transition(action, frozenset(sources), target, note, meaning)


TRANSITIONS: Final[tuple[Transition, ...]] = (
    _t(Action.REGISTER, [Step.DISCOVER], Step.REGISTER, "受理立案: accept it as a case"),
    _t(
        Action.DISMISS,
        [Step.DISCOVER, Step.REGISTER],
        Step.CLOSE,
        "不予立案 / 作废: not a case (a false alarm, a duplicate); closes it, with the reason",
        note=True,
    ),
    _t(
        Action.ACKNOWLEDGE,
        [Step.REGISTER],
        Step.REGISTER,
        "接警确认: an operator has seen it and owns it (stops its escalation; the step stays)",
    ),
    _t(
        Action.DISPATCH,
        [Step.REGISTER],
        Step.DISPATCH,
        "任务派遣: send it to the crew or department that handles it (the note says which)",
    ),
    _t(Action.HANDLE, [Step.DISPATCH], Step.HANDLE, "问题处置: the owner takes it on"),
    _t(
        Action.REDISPATCH,
        [Step.HANDLE, Step.VERIFY],
        Step.DISPATCH,
        "回退 / 重新派遣: the owner hands it back (not theirs), or verification failed and it"
        " goes to another owner; with the reason",
        note=True,
    ),
    _t(Action.VERIFY, [Step.HANDLE], Step.VERIFY, "处置完成: reported done, to verify on site"),
    _t(
        Action.REWORK,
        [Step.VERIFY],
        Step.HANDLE,
        "核查不通过: verification on site failed, back to the same owner; with what is wrong",
        note=True,
    ),
    _t(Action.CLOSE, [Step.VERIFY], Step.CLOSE, "核查通过, 结案: verified on site, closed"),
    _t(Action.EVALUATE, [Step.CLOSE], Step.EVALUATE, "考核评价: the handling is evaluated"),
    _t(
        Action.REOPEN,
        [Step.CLOSE, Step.EVALUATE],
        Step.REGISTER,
        "重新立案: the problem is back (the sensor re-triggered, a citizen called); with why",
        note=True,
    ),
)
BY_ACTION: Final[dict[Action, Transition]] = {t.action: t for t in TRANSITIONS}


def allowed_actions(step: Step, *, acknowledged: bool = False) -> tuple[Action, ...]:
    """The actions allowed from ``step``, in table order (``acknowledge`` only while the case
    is not ``acknowledged``)."""
    return tuple(
        t.action
        for t in TRANSITIONS
        if step in t.sources and not (acknowledged and t.action is Action.ACKNOWLEDGE)
    )


def _refuse(
    reason: str, step: Step, action: str | None, *, acknowledged: bool = False
) -> TransitionRefusedError:
    allowed = allowed_actions(step, acknowledged=acknowledged)
    return TransitionRefusedError(
        reason, step=step.value, action=action, allowed=[a.value for a in allowed]
    )


def action_to(step: Step, target: Step) -> Action:
    """The action that leads from ``step`` to ``target``; refused when none does (a step is
    never its own target: ``acknowledge`` is asked for by name)."""
    for transition in TRANSITIONS:
        if step in transition.sources and transition.target is target is not step:
            return transition.action
    if step is target:
        reason = f"the case is already at {step}"
    else:
        allowed = ", ".join(f"{BY_ACTION[a].target} ({a})" for a in allowed_actions(step))
        reason = f"no action leads from {step} to {target} (from {step}: {allowed or 'none'})"
    raise _refuse(reason, step, None)


def apply(
    step: Step,
    action: Action,
    *,
    note: str = "",
    sensor_active: bool = False,
    acknowledged: bool = False,
) -> Step:
    """The step ``action`` leads to from ``step``.

    ``sensor_active``: the case's sensor still reports the condition. Closing such a case needs
    a note saying why (a faulty sensor, a hazard made safe but the sensor not reset): the sensor
    and the people on site disagree, and the record must say who was right.
    ``acknowledged``: someone already acknowledged the case (``acknowledge`` is refused then).
    """
    transition = BY_ACTION[action]
    ack = {"acknowledged": acknowledged}
    if step not in transition.sources:
        froms = " or ".join(s for s in Step if s in transition.sources)
        allowed = ", ".join(allowed_actions(step, **ack)) or "none"
        reason = f"{action} needs the case at {froms}, it is at {step} (allowed: {allowed})"
        raise _refuse(reason, step, action.value, **ack)
    if action is Action.ACKNOWLEDGE and acknowledged:
        raise _refuse("the case is already acknowledged", step, action.value, **ack)
    if transition.needs_note and not note.strip():
        raise _refuse(f"{action} needs a note saying why", step, action.value, **ack)
    if action is Action.CLOSE and sensor_active and not note.strip():
        reason = "the sensor still reports the condition: closing needs a note saying why"
        raise _refuse(reason, step, action.value, **ack)
    return transition.target


def awaiting_verification(step: Step, recovered: bool) -> bool:
    """The sensor recovered and the case is not closed: someone must verify it on site."""
    return recovered and step not in CLOSED_STEPS


def detected_late(event_time: datetime, detected_at: datetime, late_after: timedelta) -> bool:
    """The center learned of a transition more than ``late_after`` after its event time (a
    backlog from a station that was cut off).

    ``event_time`` is the alert's: when the rule's condition was met (the opening, not the start
    of a hold: a 30-minute hold is not a late detection), with device clocks already checked
    against the edge clock by the rules engine.
    """
    return detected_at - event_time > late_after


def awaits_acknowledgement(severity: str, late: bool) -> bool:
    """An urgent or critical case that arrived live: registered by the system, it waits for an
    operator to acknowledge it, against a deadline (``center.escalation``)."""
    return severity in EMERGENCY and not late


def opening_actions(severity: str, late: bool) -> tuple[Action, ...]:
    """What the system does to a case as it opens: urgent and critical cases that arrive live
    are registered, straight onto the urgent center's board, for an operator to acknowledge
    and dispatch; the rest wait at discover for an operator."""
    if awaits_acknowledgement(severity, late):
        return (Action.REGISTER,)
    return ()


def retrigger_actions(step: Step) -> tuple[Action, ...]:
    """What the system does when a case's condition comes back (flapping): a closed case is
    re-opened (to register, where it waits to be acknowledged again like a new one); an open
    one stays where the people are. Whether an acknowledgement deadline runs is
    ``awaits_acknowledgement``'s to say, as for a new case."""
    if step not in CLOSED_STEPS:
        return ()
    return (Action.REOPEN,)


SYSTEM_NOTES: Final[dict[Action, str]] = {
    Action.REGISTER: "registered automatically: an emergency reported live by a sensor, on the"
    " urgent coordination center's board",
    Action.REOPEN: "re-opened automatically: the sensor reports the condition again",
}
