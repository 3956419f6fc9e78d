"""Ground truth of a scenario run: every labelled incident and injected fault.

Written next to the recording as ``<name>.truth.json`` (sorted keys, UTC timestamps), so the
same scenario and seed give a byte-identical file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from simulator.faults import Fault

TRUTH_VERSION = 1


@dataclass(frozen=True, slots=True)
class LabelledIncident:
    id: str
    kind: str
    sensor_id: str
    station_id: str
    sensors: tuple[str, ...]
    start: datetime
    end: datetime
    expected_category: Literal["component", "event"] | None
    expected_class: str | None
    """``None``: no emergency case should open (e.g. slow pole creep is maintenance)."""
    during_outage: bool = False
    """The station's link was down at some point during the incident."""
    expected_severity: str | None = None
    """critical / urgent for emergencies; ``maintenance`` for a case that is work to plan
    (pole creep: expected on the pole's class, and no critical or urgent case may open)."""

    @property
    def maintenance(self) -> bool:
        """A maintenance incident: an emergency case on it is a false alarm. Older truth
        files mark it by an expected class of None."""
        return self.expected_severity == "maintenance" or self.expected_class is None


@dataclass(frozen=True, slots=True)
class GroundTruth:
    scenario: str
    seed: int
    start: datetime
    end: datetime
    sensors: int
    stations: int
    incidents: tuple[LabelledIncident, ...]
    faults: tuple[Fault, ...]
    messages: dict[str, int] = field(default_factory=dict)
    """What the run published: telemetry, state, garbage, duplicates."""

    @property
    def sensor_days(self) -> float:
        return self.sensors * (self.end - self.start).total_seconds() / 86_400

    @property
    def named_stations(self) -> frozenset[str]:
        """Every station an incident or a fault names (not every station of the run)."""
        named = {i.station_id for i in self.incidents}
        named.update(f.station_id for f in self.faults if f.station_id is not None)
        return frozenset(named)

    def renamed(self, station: Callable[[str], str], sensor: Callable[[str], str]) -> GroundTruth:
        """The same truth with every station and sensor id renamed: a run replayed under ids
        of its own (``citysense replay --run-id``) is scored against this."""
        incidents = tuple(
            replace(
                i,
                station_id=station(i.station_id),
                sensor_id=sensor(i.sensor_id),
                sensors=tuple(sensor(s) for s in i.sensors),
            )
            for i in self.incidents
        )
        faults = tuple(
            replace(
                f,
                station_id=None if f.station_id is None else station(f.station_id),
                sensor_id=None if f.sensor_id is None else sensor(f.sensor_id),
            )
            for f in self.faults
        )
        return replace(self, incidents=incidents, faults=faults)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def write_truth(truth: GroundTruth, path: Path) -> None:
    document = {"version": TRUTH_VERSION, **_encode(asdict(truth))}
    path.write_text(json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_truth(path: Path) -> GroundTruth:
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("version") != TRUTH_VERSION:
        raise ValueError(f"{path}: ground-truth version {document.get('version')!r} unknown")
    incidents = tuple(
        LabelledIncident(
            **{
                **item,
                "sensors": tuple(item["sensors"]),
                "start": _time(item["start"]),
                "end": _time(item["end"]),
            }
        )
        for item in document["incidents"]
    )
    faults = tuple(
        Fault(
            **{
                **item,
                "start": _time(item["start"]),
                "end": _time(item["end"]) if item["end"] else None,
            }
        )
        for item in document["faults"]
    )
    return GroundTruth(
        scenario=document["scenario"],
        seed=document["seed"],
        start=_time(document["start"]),
        end=_time(document["end"]),
        sensors=document["sensors"],
        stations=document["stations"],
        incidents=incidents,
        faults=faults,
        messages=document["messages"],
    )
