"""Which GB/T 30428 class a case gets."""

from __future__ import annotations

import pytest

from center.classify import classify
from center.errors import AlertRejectedError
from protocol import SensorKind
from rules.alerts import CaseTarget
from tests.center.factories import alert, sensor_info


def test_component_rule_takes_the_watched_assets_class() -> None:
    case_class = classify(alert(), sensor_info(class_code="0111"))
    assert (case_class.category, case_class.code, case_class.name) == (
        "component",
        "0111",
        "燃气井盖",
    )
    assert case_class.major_name == "公用设施"


def test_explicit_target_code_wins() -> None:
    case_class = classify(alert(target=CaseTarget("event", "0406")), sensor_info())
    assert (case_class.category, case_class.code, case_class.name) == ("event", "0406", "道路积水")
    assert case_class.major_name == "突发事件"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (SensorKind.COVER, ("component", "0114", "无主井盖")),
        (SensorKind.POLE, ("component", "0117", "立杆/电杆")),
        (SensorKind.PRESSURE, ("event", "0402", "自来水管破裂")),
    ],
)
def test_unregistered_sensor_falls_back_by_kind(
    kind: SensorKind, expected: tuple[str, str, str]
) -> None:
    case_class = classify(alert(kind=kind), None)
    assert (case_class.category, case_class.code, case_class.name) == expected


def test_event_rule_without_code_is_other_event() -> None:
    assert classify(alert(target=CaseTarget("event")), sensor_info()).code == "0499"


def test_unknown_code_is_rejected() -> None:
    with pytest.raises(AlertRejectedError, match="0999"):
        classify(alert(target=CaseTarget("event", "0999")), sensor_info())
