from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from rules import load_rules
from simulator.score import ScoredCase, score
from simulator.truth import GroundTruth, LabelledIncident

T0 = datetime(2026, 7, 1, tzinfo=UTC)
RULES = load_rules()


def incident(kind: str, sensor: str, start_min: int, cls: str | None = "0103") -> LabelledIncident:
    category: Literal["component", "event"] | None = None
    if cls is not None:
        category = "event" if kind == "pressure_burst" else "component"
    return LabelledIncident(
        id=f"{kind}-{sensor}",
        kind=kind,
        sensor_id=sensor,
        station_id="st-1",
        sensors=(sensor,),
        start=T0 + timedelta(minutes=start_min),
        end=T0 + timedelta(minutes=start_min + 5),
        expected_category=category,
        expected_class=cls,
    )


def case(sensor: str, start_min: float, delay_s: float, cls: str = "0103") -> ScoredCase:
    started = T0 + timedelta(minutes=start_min)
    return ScoredCase(
        sensor, "cover-open", "component", cls, started, started + timedelta(seconds=delay_s)
    )


def truth(*incidents: LabelledIncident, sensors: int = 100) -> GroundTruth:
    return GroundTruth("t", 1, T0, T0 + timedelta(days=1), sensors, 1, incidents, ())


def test_recall_delay_duplicates_and_false_alarms() -> None:
    result = score(
        truth(
            incident("cover_open", "a", 10),
            incident("cover_open", "b", 30),
            incident("cover_open", "c", 50),
        ),
        [
            case("a", 10, 4),
            case("a", 12, 3),  # a second case for the same incident
            case("b", 30, 10),
            case("c", 50, 5, cls="0114"),  # right sensor and time, wrong class
            case("z", 70, 3),  # nothing happened there
        ],
        RULES,
    )
    (kind,) = result.kinds
    assert (kind.detected, kind.duplicates, kind.wrong_class) == (2, 1, 1)
    assert kind.recall == 2 / 3
    assert kind.delay_percentile(50) == 7.0
    assert result.false_alarms == 1
    assert result.false_alarms_per_1000_sensor_days == 10.0


def test_kinds_without_a_rule_are_reported_not_scored_as_zero() -> None:
    no_pressure = RULES.model_copy(
        update={"rules": [r for r in RULES.rules if r.kind != "pressure"]}
    )
    result = score(truth(incident("pressure_burst", "p", 10, cls="0402")), [], no_pressure)
    document = result.as_dict()["kinds"][0]
    assert document["recall"] is None
    assert document["status"] == "no rule watches pressure.pressure_mpa yet"


def test_a_case_on_a_no_emergency_incident_is_a_false_alarm() -> None:
    creep = incident("pole_creep", "pole", 10, cls=None)  # a truth file from before severities
    result = score(truth(creep), [case("pole", 11, 3, cls="0117")], RULES)
    assert result.false_alarms == 1
    assert result.kinds[0].detected == 0


def creep(sensor: str = "pole") -> LabelledIncident:
    return replace(
        incident("pole_creep", sensor, 10, cls="0117"),
        end=T0 + timedelta(days=3),
        expected_severity="maintenance",
    )


def test_a_maintenance_case_on_creep_is_a_detection_an_urgent_one_a_false_alarm() -> None:
    maintenance = replace(case("pole", 600, 5, cls="0117"), severity="maintenance")
    urgent = replace(case("pole", 900, 5, cls="0117"), severity="urgent")
    result = score(truth(creep()), [maintenance, urgent], RULES)
    (kind,) = result.kinds
    assert (kind.detected, kind.emergency_cases, kind.emergency) == (1, 1, False)
    assert kind.delay_percentile(50) == 590 * 60 + 5
    assert result.false_alarms == 1
    assert result.as_dict()["kinds"][0]["status"].startswith("maintenance")


def test_a_maintenance_case_on_an_emergency_does_not_detect_it() -> None:
    slow = replace(case("a", 10, 4), severity="maintenance")
    (kind,) = score(truth(incident("cover_open", "a", 10)), [slow], RULES).kinds
    assert (kind.detected, kind.wrong_severity) == (0, 1)


def test_one_case_naming_the_neighbours_of_a_burst_is_one_detection() -> None:
    burst = replace(incident("pressure_burst", "p1", 10, cls="0402"), sensors=("p1", "p2", "p3"))
    started = T0 + timedelta(minutes=10)
    one = ScoredCase(
        "p2",
        "burst",
        "event",
        "0402",
        started,
        started + timedelta(seconds=20),
        severity="urgent",
        members=("p2", "p1", "p3"),
    )
    result = score(truth(burst), [one], RULES)
    (kind,) = result.kinds
    assert (kind.detected, kind.duplicates, result.false_alarms) == (1, 0, 0)


def test_cases_from_the_api_carry_severity_and_members_when_present() -> None:
    item = {
        "sensor_id": "p1",
        "rule_id": "burst",
        "category": "event",
        "class_code": "0402",
        "started_at": "2026-07-01T00:10:00+00:00",
        "opened_at": "2026-07-01T00:10:20+00:00",
        "detected_at": "2026-07-01T00:10:21+00:00",
    }
    old = ScoredCase.from_api(item)
    assert (old.severity, old.members, old.emergency) == (None, (), True)
    new = ScoredCase.from_api({**item, "severity": "maintenance", "members": ["p1", "p2"]})
    assert (new.severity, new.members, new.emergency) == ("maintenance", ("p1", "p2"), False)
