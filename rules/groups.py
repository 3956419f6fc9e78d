"""Open incidents, and alerts of one cause in one area grouped into one incident.

Every open incident is kept here under its key (rule, first sensor, start) with its members. A
rule with ``group`` lets an alert within ``within_m`` of an open incident's first sensor, within
``window`` of its opening, join it as a member (a burst felt by neighbours, covers lifted by one
flood) instead of opening a case of its own; with ``min_sensors`` > 1 an incident opens only once
that many sensors within ``within_m`` are in alarm together ("at least K sensors within R m").
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rules.state import Incident

Locate = Callable[[str], tuple[float, float] | None]
"""Where a sensor is (longitude, latitude), or None when unknown."""
Key = tuple[str, str, float]

EARTH_M_PER_DEG = 111_320.0


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular distance; exact enough for a few kilometres."""
    mean_lat = math.radians((a[1] + b[1]) / 2)
    dx = (a[0] - b[0]) * math.cos(mean_lat) * EARTH_M_PER_DEG
    dy = (a[1] - b[1]) * EARTH_M_PER_DEG
    return math.hypot(dx, dy)


class Groups:
    def __init__(self, locate: Locate | None = None) -> None:
        self.locate: Locate = locate or (lambda _sensor_id: None)
        self.incidents: dict[Key, Incident] = {}
        self.armed: dict[str, dict[str, tuple[float, float]]] = {}
        """Rule id -> sensor -> (condition start, held since): waiting for neighbours."""

    def _register(
        self, rule_id: str, first: str, start: float, at: float, members: list[str]
    ) -> Incident:
        key = (rule_id, first, start)
        incident = self.incidents.get(key)
        if incident is None:
            incident = self.incidents[key] = Incident(rule_id, first, start, at, self.locate(first))
        for member in members:
            incident.members[member] = True
        return incident

    def join(self, rule: object, sensor_id: str, at: float) -> Incident | None:
        group = getattr(getattr(rule, "rule", None), "group", None)
        rule_id: str = getattr(rule, "id", "")
        if group is None:
            return None
        where = self.locate(sensor_id)
        if where is None:
            return None
        best: Incident | None = None
        for incident in self.incidents.values():
            if incident.rule_id != rule_id or incident.where is None:
                continue
            if abs(at - incident.opened) > group.window or sensor_id in incident.members:
                continue
            if distance_m(where, incident.where) <= group.within_m and (
                best is None or incident.opened < best.opened
            ):
                best = incident
        if best is not None:
            best.members[sensor_id] = True
        return best

    def arm(self, rule: object, sensor_id: str, since: float, at: float) -> Incident | None:
        """The incident that opens now that ``sensor_id``'s condition has held, or None while it
        waits for ``min_sensors`` neighbours."""
        group = getattr(getattr(rule, "rule", None), "group", None)
        rule_id: str = getattr(rule, "id", "")
        if group is None or group.min_sensors <= 1:
            return self._register(rule_id, sensor_id, since, at, [sensor_id])
        armed = self.armed.setdefault(rule_id, {})
        armed[sensor_id] = (since, at)
        where = self.locate(sensor_id)
        if where is None:
            return None
        near = []
        for other, (other_since, held_at) in armed.items():
            spot = self.locate(other)
            if spot is None or abs(at - held_at) > group.window:
                continue
            if distance_m(where, spot) <= group.within_m:
                near.append((other_since, other))
        if len(near) < group.min_sensors:
            return None
        near.sort()
        first_since, first = near[0]
        for _since, member in near:
            armed.pop(member, None)
        return self._register(rule_id, first, first_since, at, [m for _s, m in near])

    def disarm(self, rule_id: str, sensor_id: str) -> None:
        self.armed.get(rule_id, {}).pop(sensor_id, None)

    def opened(self, rule: object, first: str, start: float, at: float) -> None:
        self._register(getattr(rule, "id", ""), first, start, at, [first])

    def reopen(self, rule_id: str, first: str, start: float, sensor_id: str, at: float) -> None:
        self._register(rule_id, first, start, at, [sensor_id])

    def restore(self, rule_id: str, first: str, start: float, members: list[str]) -> None:
        self._register(rule_id, first, start, start, members)

    def leave(self, rule_id: str, first: str, start: float, sensor_id: str) -> bool:
        """``sensor_id`` recovered; True when that ends the incident (all members recovered)."""
        key = (rule_id, first, start)
        incident = self.incidents.get(key)
        if incident is None:
            return True
        incident.members[sensor_id] = False
        if any(incident.members.values()):
            return False
        del self.incidents[key]
        return True

    def members(self, rule_id: str, first: str, start: float) -> tuple[str, ...]:
        incident = self.incidents.get((rule_id, first, start))
        return tuple(incident.members) if incident is not None else ()

    def is_open(self, rule_id: str, first: str, start: float) -> bool:
        return (rule_id, first, start) in self.incidents

    def open_keys(self) -> list[Key]:
        return list(self.incidents)
