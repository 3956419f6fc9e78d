"""Builders for the alerts and sensors the center tests feed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from center.case_query import CaseFilter
from center.lifecycle import Action, Step
from center.schemas import CaseEvent, CaseOut
from center.service import CaseService
from ingest.fakes import MemoryAlerts, MemoryDeadLetters, MemorySink
from ingest.pipeline import IngestPipeline
from ingest.rules_control import RulesControl
from protocol import SensorInfo, SensorKind
from rules import DEFAULT_RULES_FILE, ClockPolicy, RuleEngine, parse_rules
from rules.alerts import Alert, AlertState, CaseTarget, Evidence, Severity
from tests.factories import sensor_info as sensor_info  # the center tests build sensors here

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
DETECTED = T0 + timedelta(minutes=1)


def alert(
    state: AlertState = "open",
    *,
    rule_id: str = "cover-tilt",
    station_id: str = "st-1",
    sensor_id: str = "st-1.cover-01",
    kind: SensorKind = SensorKind.COVER,
    started_at: datetime = T0,
    at: datetime | None = None,
    target: CaseTarget | None = None,
    value: float = 35.0,
    severity: Severity = "urgent",
) -> Alert:
    opened_at = at if at is not None else started_at + timedelta(seconds=10)
    return Alert(
        rule_id=rule_id,
        title="井盖倾斜 cover tilted",
        state=state,
        severity=severity,
        station_id=station_id,
        sensor_id=sensor_id,
        kind=kind,
        field="tilt_deg",
        value=value,
        threshold=15.0,
        started_at=started_at,
        at=opened_at,
        target=target if target is not None else CaseTarget("component"),
        evidence=(
            Evidence(started_at, value),
            Evidence(started_at + timedelta(seconds=10), value + 1),
        ),
    )


async def open_acknowledged(
    service: CaseService,
    raised: Alert,
    detected_at: datetime,
    actor: str = "值班员",
    sensor: SensorInfo | None = None,
) -> CaseOut:
    """An urgent case the system registers and an operator acknowledges at once: three events
    (opened, the system's register, the operator's acknowledge), what the delivery tests
    count on."""
    await service.handle_alert(raised, sensor, detected_at)
    (case,), _ = await service.store.list_cases(CaseFilter(sensor_id=raised.sensor_id))
    return await service.transition(case.id, action=Action.ACKNOWLEDGE, actor=actor)


def transition(opened: Alert, state: str, after: timedelta, **changes: object) -> Alert:
    """Another transition of an open alert's incident (member, flapping)."""
    return replace(opened, state=state, at=opened.at + after, **changes)  # type: ignore[arg-type]


def cleared(opened: Alert, after: timedelta = timedelta(minutes=5)) -> Alert:
    """The clear transition of an open alert."""
    return Alert(
        rule_id=opened.rule_id,
        title=opened.title,
        state="cleared",
        severity=opened.severity,
        station_id=opened.station_id,
        sensor_id=opened.sensor_id,
        kind=opened.kind,
        field=opened.field,
        value=2.0,
        threshold=opened.threshold,
        started_at=opened.started_at,
        at=opened.at + after,
        target=opened.target,
    )


def case_out(case_id: int) -> CaseOut:
    """A case as the API shows it, for tests of the fan-out that need no store."""
    return CaseOut(
        id=case_id,
        rule_id="cover-tilt",
        title="井盖倾斜 cover tilted",
        severity="urgent",
        category="component",
        class_code="0114",
        class_name="无主井盖",
        major_name="公用设施",
        station_id="st-1",
        sensor_id="st-1.cover-99",
        sensor_kind=SensorKind.COVER,
        component_id=None,
        grid_code=None,
        district_code=None,
        lon=None,
        lat=None,
        address="",
        status="open",
        field="tilt_deg",
        trigger_value=35.0,
        threshold=15.0,
        started_at=T0,
        opened_at=T0,
        cleared_at=None,
        detected_at=DETECTED,
        updated_at=DETECTED,
        evidence=[],
        unregistered=True,
        members=["st-1.cover-99"],
        flags=[],
        flapping=False,
        step=Step.DISCOVER,
        detected_late=False,
        ended_before_seen=False,
        priority=3,
    )


def case_event(event_id: int, case_id: int | None = None) -> CaseEvent:
    """An ``opened`` event, for tests of the fan-out and the stream that need no store."""
    return CaseEvent(
        id=event_id,
        type="opened",
        at=DETECTED,
        case=case_out(event_id if case_id is None else case_id),
    )


def rules_control(tmp_path: Path) -> RulesControl:
    """Rules control over the built-in rules, read from a file in ``tmp_path`` (so PUT works)."""
    text = DEFAULT_RULES_FILE.read_text(encoding="utf-8")
    pipeline = IngestPipeline(
        engine=RuleEngine(parse_rules(text), clock=ClockPolicy(allowed_lateness=0)),
        alerts=MemoryAlerts(),
        dead_letters=MemoryDeadLetters(),
        sinks=[MemorySink()],
    )
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return RulesControl(pipeline, text, path)
