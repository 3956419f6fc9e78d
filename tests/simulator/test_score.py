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
    result = score(truth(incident("pressure_burst", "p", 10, cls="0402")), [], RULES)
    document = result.as_dict()["kinds"][0]
    assert document["recall"] is None
    assert document["status"] == "no rule watches pressure.pressure_mpa yet"


def test_a_case_on_a_no_emergency_incident_is_a_false_alarm() -> None:
    creep = incident("pole_creep", "pole", 10, cls=None)
    result = score(truth(creep), [case("pole", 11, 3, cls="0117")], RULES)
    assert result.false_alarms == 1
    assert result.kinds[0].recall is None
