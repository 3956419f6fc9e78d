"""Incidents: labelled anomalies injected on top of normal physics.

An incident knows which sensors it touches, when it is going on, how it changes what those
sensors read, and which GB/T 30428 case it should become. Each incident is its own ground
truth: a scenario lists what it injected and checks which cases the platform opened.

Vehicle rocking is not here: it is normal physics (``simulator.physics``) and must open no case.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from protocol import SensorInfo
from simulator.city import City
from simulator.incident_base import ExpectedCase, Incident, InjectedIncident, Window
from simulator.incidents_cover import CoverOpen, Flooding, GasLeak
from simulator.incidents_utility import PoleCreep, PoleFall, PressureBurst

__all__ = [
    "INCIDENT_TYPES",
    "CoverOpen",
    "ExpectedCase",
    "Flooding",
    "GasLeak",
    "Incident",
    "InjectedIncident",
    "PoleCreep",
    "PoleFall",
    "PressureBurst",
    "Window",
    "build_incident",
    "suits",
]

INCIDENT_TYPES: dict[str, type[Window]] = {
    kind.kind: kind for kind in (CoverOpen, PressureBurst, PoleFall, PoleCreep, Flooding, GasLeak)
}
"""Incident classes by their ``kind`` label."""

PARAMS: dict[str, tuple[str, ...]] = {
    "cover_open": ("angle_deg",),
    "pressure_burst": ("drop_mpa", "radius_m"),
    "pole_fall": ("angle_deg", "vibration_g"),
    "pole_creep": ("rate_deg_per_day",),
    "flooding": ("level_m", "radius_m"),
    "gas_leak": ("ppm",),
}
"""The parameters a scenario may give each kind (all in the units their names say)."""


def suits(kind: str, sensor: SensorInfo) -> bool:
    """Whether an incident of ``kind`` can happen at ``sensor``; pick random targets with it."""
    return _type(kind).suits(sensor)


def build_incident(
    kind: str,
    city: City,
    sensor_id: str,
    start: datetime,
    duration: timedelta,
    params: Mapping[str, float] | None = None,
) -> InjectedIncident:
    """The incident of ``kind`` at ``sensor_id``, as a scenario file declares it.

    A burst is seen by the pressure sensors within ``radius_m`` (default 1,500 m); a flood
    fills every cover within ``radius_m`` (default 300 m) of ``sensor_id``.
    """
    incident_type = _type(kind)
    params = dict(params or {})
    unknown = sorted(set(params) - set(PARAMS[kind]))
    if unknown:
        allowed = ", ".join(PARAMS[kind]) or "none"
        raise ValueError(f"{kind} takes no {', '.join(unknown)}; its parameters: {allowed}")
    sensor = city.sensor(sensor_id)
    if not incident_type.suits(sensor):
        raise ValueError(
            f"{kind} cannot happen at {sensor_id} ({sensor.kind.value}, class {sensor.class_code})"
        )
    incident: InjectedIncident
    if kind == "pressure_burst":
        incident = PressureBurst.near(city, sensor_id, start, duration, **params)
    elif kind == "flooding":
        incident = Flooding.around(city, sensor_id, start, duration, **params)
    elif kind == "cover_open":
        incident = CoverOpen(sensor_id, start, duration, **params)
    elif kind == "pole_fall":
        incident = PoleFall(sensor_id, start, duration, **params)
    elif kind == "pole_creep":
        incident = PoleCreep(sensor_id, start, duration, **params)
    else:
        incident = GasLeak(sensor_id, start, duration, **params)
    return incident


def _type(kind: str) -> type[Window]:
    try:
        return INCIDENT_TYPES[kind]
    except KeyError:
        raise ValueError(
            f"unknown incident kind {kind!r}; known: {', '.join(INCIDENT_TYPES)}"
        ) from None
