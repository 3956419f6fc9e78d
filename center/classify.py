"""Which GB/T 30428 class an alert's case gets. Pure."""

from __future__ import annotations

from center.errors import AlertRejectedError
from protocol import CaseClass, SensorInfo, SensorKind, case_class
from rules.alerts import Alert

# The class of a case on a sensor the registry does not know.
UNREGISTERED_CLASS: dict[SensorKind, CaseClass] = {
    SensorKind.COVER: case_class("component", "0114"),  # 无主井盖
    SensorKind.POLE: case_class("component", "0117"),  # 立杆/电杆
    SensorKind.PRESSURE: case_class("event", "0402"),  # 自来水管破裂
}
OTHER_EVENT = case_class("event", "0499")


def classify(alert: Alert, sensor: SensorInfo | None) -> CaseClass:
    """The rule's explicit class; else the watched asset's class; else a fallback.

    A sensor missing from the registry falls back by kind (cover 0114 无主井盖, pole 0117,
    pressure event 0402); an event rule without a code on a known sensor becomes 0499 其他.
    """
    target = alert.target
    if target.code is not None:
        try:
            return case_class(target.category, target.code)
        except KeyError:
            raise AlertRejectedError(
                f"rule {alert.rule_id}: unknown GB/T 30428 {target.category} class {target.code}"
            ) from None
    if sensor is None:
        return UNREGISTERED_CLASS[alert.kind]
    if target.category == "component":
        return case_class("component", sensor.class_code)
    return OTHER_EVENT
