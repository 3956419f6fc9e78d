"""Station registry and presence, kept from the stations' retained birth/death messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from protocol import SensorInfo, StationState


@dataclass(frozen=True, slots=True)
class Presence:
    status: str
    boot_epoch: int
    since: datetime


class StationRegistry:
    def __init__(self) -> None:
        self._sensors: dict[str, SensorInfo] = {}
        self._station_sensors: dict[str, tuple[str, ...]] = {}
        self._presence: dict[str, Presence] = {}

    def update(self, state: StationState) -> None:
        self._presence[state.station_id] = Presence(state.status, state.boot_epoch, state.ts)
        if state.status == "online":
            for old in self._station_sensors.get(state.station_id, ()):
                self._sensors.pop(old, None)
            self._station_sensors[state.station_id] = tuple(s.sensor_id for s in state.sensors)
            self._sensors.update((s.sensor_id, s) for s in state.sensors)

    def sensor(self, sensor_id: str) -> SensorInfo | None:
        return self._sensors.get(sensor_id)

    def location(self, sensor_id: str) -> tuple[float, float] | None:
        sensor = self._sensors.get(sensor_id)
        return None if sensor is None else (sensor.lon, sensor.lat)

    def presence(self, station_id: str) -> Presence | None:
        return self._presence.get(station_id)

    def counts(self) -> dict[str, int]:
        online = sum(1 for p in self._presence.values() if p.status == "online")
        return {
            "stations_online": online,
            "stations_offline": len(self._presence) - online,
            "sensors_registered": len(self._sensors),
        }
