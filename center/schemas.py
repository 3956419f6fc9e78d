"""API schemas: what the HTTP API and the live stream show, kept apart from storage rows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field, model_validator

from center import lifecycle
from center.escalation import MAX_PRIORITY, initial_priority
from center.lifecycle import Action, Step
from protocol import SensorKind
from rules.alerts import Severity

CaseStatus = Literal["open", "cleared"]
"""The sensor's condition: ``open`` while the rule's condition holds, ``cleared`` once the
sensor recovered. Not the lifecycle (``step``): a sensor never closes a case."""
CaseEventType = Literal["opened", "updated", "reopened", "recovered", "transition", "escalated"]
"""``updated``: another sensor joined the incident; ``reopened``: a flapping condition
re-triggered a recovered case, whose condition is open again and marked ``flapping``;
``recovered``: the sensor recovered (the case awaits verification on site); ``transition``:
the case moved in the 7-step loop (``transition`` says who moved it, from where, to where);
``escalated``: an urgent or critical case was not taken on in time after its dispatch, its
priority went up (``escalation`` says by how much and when the next one is due)."""


class EvidencePoint(BaseModel):
    """One reading that made the case: its event time and the value of the rule's field."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    ts: AwareDatetime
    value: float


class CaseOut(BaseModel):
    """A case as the center shows it."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    rule_id: str
    title: str
    severity: Severity
    category: Literal["component", "event"]
    class_code: str = Field(pattern=r"^\d{4}$", description="GB/T 30428 class, e.g. 0103.")
    class_name: str = Field(description="Minor class name, e.g. 雨水井盖.")
    major_name: str = Field(description="Major class name, e.g. 公用设施.")
    station_id: str
    sensor_id: str
    sensor_kind: SensorKind
    component_id: str | None
    grid_code: str | None
    district_code: str | None = Field(description="First 6 digits of the component id.")
    lon: float | None
    lat: float | None
    address: str
    status: CaseStatus
    field: str = Field(description="The reading value the rule watches, e.g. tilt_deg.")
    trigger_value: float
    threshold: float
    started_at: AwareDatetime = Field(description="Event time the condition began.")
    opened_at: AwareDatetime = Field(description="Event time the alert opened.")
    cleared_at: AwareDatetime | None
    detected_at: AwareDatetime = Field(
        description="Wall time the center learned of the case (ingest saw the alert): cases"
        " are ordered and filtered by it, not by device time."
    )
    updated_at: AwareDatetime = Field(description="Wall time of the case's last change.")
    evidence: list[EvidencePoint]
    unregistered: bool = Field(description="The sensor was not in the station registry.")
    members: list[str] = Field(
        description="Every sensor of the incident, first sensor first (a burst felt by"
        " neighbours, covers lifted by one flood)."
    )
    flags: list[str] = Field(
        description="What was unusual about the readings: clock_reset, clock_skew, late."
    )
    flapping: bool = Field(
        description="The condition kept coming and going: re-opened instead of new cases."
    )
    step: Step = Field(
        description="Where the case is in the 7-step loop (GB/T 30428): discover, register,"
        " dispatch, handle, verify, close, evaluate."
    )
    detected_late: bool = Field(
        description="The center learned of it long after it opened (a backlog after an"
        " outage): recorded, not dispatched automatically."
    )
    ended_before_seen: bool = Field(
        description="Its condition had already ended when the center first learned of it:"
        " an incident inside an outage, for the record."
    )
    rules_version: int | None = Field(
        default=None,
        description="The version of the rule set that opened it (its text and diff: GET"
        " /api/v1/rules, history); null when it came from a backtest or an older node.",
    )
    priority: int = Field(
        ge=1,
        le=MAX_PRIORITY,
        description=f"1 (lowest) to {MAX_PRIORITY}: starts at its severity's level"
        " (maintenance 1, warning 2, urgent 3, critical 4), one up at each escalation.",
    )
    ack_due_at: AwareDatetime | None = Field(
        default=None,
        description="An urgent or critical case must be acknowledged (at register:"
        " `acknowledge` or a move) or, once dispatched, taken on (`handle`) by then, or it is"
        " escalated; null when no deadline runs.",
    )
    acknowledged_at: AwareDatetime | None = Field(
        default=None,
        description="When a person first acted on it (`acknowledge`, 接警确认, or a move) since"
        " it last opened; null while nobody has (a re-opened case is acknowledged again).",
    )
    acknowledged_by: str | None = Field(
        default=None, description="Who acknowledged it (the user's name); null while nobody has."
    )
    escalations: int = Field(
        default=0,
        ge=0,
        description="Escalations of its current wait (to be acknowledged, or taken on).",
    )

    @model_validator(mode="before")
    @classmethod
    def _priority_of_older_events(cls, data: Any) -> Any:
        """Events stored before cases had a priority start at their severity's."""
        if isinstance(data, dict) and "priority" not in data and "severity" in data:
            return {**data, "priority": initial_priority(str(data["severity"]))}
        return data

    @computed_field(  # type: ignore[prop-decorator]
        description="The sensor recovered and the case is not closed: recovered, awaiting"
        " verification on site."
    )
    @property
    def awaiting_verification(self) -> bool:
        return lifecycle.awaiting_verification(self.step, self.status == "cleared")

    @computed_field(  # type: ignore[prop-decorator]
        description="The actions its step allows (POST .../transitions)."
    )
    @property
    def next_actions(self) -> list[Action]:
        return list(
            lifecycle.allowed_actions(self.step, acknowledged=self.acknowledged_at is not None)
        )


class CasePage(BaseModel):
    items: list[CaseOut]
    total: int


class TransitionOut(BaseModel):
    """One entry of a case's audit trail: who moved it, when, from which step to which."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    case_id: int
    at: AwareDatetime = Field(description="Wall time of the transition.")
    actor: str = Field(description="Who: a person, or `system` for the center's own moves.")
    action: Action | Literal["discover"] = Field(
        description="`discover` is the first entry: the sensor's rule opened the case."
    )
    from_step: Step | None
    to_step: Step
    note: str


class CaseHistory(BaseModel):
    case_id: int
    items: list[TransitionOut] = Field(description="Oldest first.")


ONE_TARGET: dict[str, Any] = {
    "oneOf": [
        {"required": ["action"], "properties": {"action": {"not": {"type": "null"}}}},
        {"required": ["to"], "properties": {"to": {"not": {"type": "null"}}}},
    ]
}
"""The document says what ``_one_target`` checks: exactly one of ``action`` and ``to``."""


class TransitionIn(BaseModel):
    """A request to move a case: name the ``action`` or the step to go ``to`` (one of them)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_TARGET)

    action: Action | None = None
    to: Step | None = None
    note: str = Field("", max_length=1000, pattern=r"^[^\x00]*$")
    actor: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^\S(?:.*\S)?$",
        description="The signed-in user is the actor; leave it out, or name that user (any"
        " other name is refused, 403). `system` is reserved for the center.",
        json_schema_extra={"not": {"pattern": "^[Ss][Yy][Ss][Tt][Ee][Mm]$"}},
    )

    @model_validator(mode="after")
    def _one_target(self) -> TransitionIn:
        if (self.action is None) == (self.to is None):
            raise ValueError("give either action or to")
        if self.actor is not None and self.actor.lower() == lifecycle.SYSTEM:
            raise ValueError(f"actor {lifecycle.SYSTEM!r} is reserved for the center")
        return self


class TransitionRefusal(BaseModel):
    """Why a transition was refused (409)."""

    detail: str
    step: Step = Field(description="Where the case is.")
    action: str | None = Field(description="What was asked; null when a step was asked for.")
    allowed: list[Action] = Field(description="The actions its step allows.")


class EscalationOut(BaseModel):
    """What an ``escalated`` event says: which escalation, the deadline missed, the priority."""

    model_config = ConfigDict(frozen=True)

    level: int = Field(ge=1, description="The n-th escalation since the case was dispatched.")
    overdue_since: AwareDatetime = Field(description="The acknowledgement deadline missed.")
    priority_from: int
    priority_to: int
    next_due_at: AwareDatetime | None = Field(
        description="The next escalation, if it is still not taken on; null after the last."
    )


class CaseEvent(BaseModel):
    """A case change on the live stream, as stored in ``case_events``."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(description="Monotonic event id, the SSE `id:`; resume after it.")
    type: CaseEventType
    at: AwareDatetime = Field(description="Wall time of the change.")
    case: CaseOut = Field(description="The case after the change.")
    transition: TransitionOut | None = Field(
        default=None,
        description="The audit entry, with `transition` events and with `opened` (its first"
        " entry, `discover`).",
    )
    escalation: EscalationOut | None = Field(
        default=None, description="With `escalated` events: the escalation."
    )
