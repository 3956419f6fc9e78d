"""Simulated base stations: physics plus injected incidents behind the edge driver interface."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from protocol import Reading, SensorInfo, SensorKind
from simulator.city import City, Station
from simulator.incidents import CoverOpen, Incident
from simulator.physics import SensorModel, aware_utc, model_for


class SimulatedStation:
    """One base station's sensors, simulated; implements ``edge.driver.SensorDriver``."""

    def __init__(self, station: Station, seed: int) -> None:
        self.station = station
        self._models: dict[str, SensorModel] = {
            sensor.sensor_id: model_for(sensor, seed) for sensor in station.sensors
        }
        self._incidents: list[Incident] = []

    @property
    def station_id(self) -> str:
        return self.station.station_id

    @property
    def incidents(self) -> tuple[Incident, ...]:
        return tuple(self._incidents)

    def sensors(self) -> Sequence[SensorInfo]:
        return self.station.sensors

    def inject(self, incident: Incident) -> None:
        if not any(incident.applies_to(sensor_id) for sensor_id in self._models):
            raise ValueError(f"{incident!r} touches no sensor of {self.station_id}")
        self._incidents.append(incident)

    def read(self, ts: datetime) -> list[Reading]:
        """One reading per sensor, stamped ``ts`` (converted to UTC)."""
        ts = aware_utc(ts)
        return [self._read(sensor, ts) for sensor in self.station.sensors]

    def _read(self, sensor: SensorInfo, ts: datetime) -> Reading:
        values = self._models[sensor.sensor_id].sample(ts)
        for incident in self._incidents:
            if incident.applies_to(sensor.sensor_id) and incident.active(ts):
                values = incident.apply(values, ts)
        return Reading(sensor_id=sensor.sensor_id, kind=sensor.kind, ts=ts, values=values)


class SimulatedFleet:
    """Every station of a city, simulated; routes incidents to the stations they touch."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.stations: dict[str, SimulatedStation] = {
            station.station_id: SimulatedStation(station, city.seed) for station in city.stations
        }

    def inject(self, incident: Incident) -> None:
        touched = [
            station
            for station in self.stations.values()
            if any(incident.applies_to(sensor.sensor_id) for sensor in station.sensors())
        ]
        if not touched:
            raise ValueError(f"{incident!r} touches no sensor in the city")
        for station in touched:
            station.inject(incident)


def schedule_cover_incidents(
    city: City,
    rng_seed: int,
    start: datetime,
    every: timedelta,
    duration: timedelta,
    count: int | None = None,
    angle_deg: float = 75.0,
) -> Iterator[CoverOpen]:
    """Cover-open incidents at ``start``, ``start + every``, ... on covers picked by the seed.

    Yields ``count`` incidents, or without end when ``count`` is None.
    """
    if every <= timedelta(0):
        raise ValueError(f"every must be positive, not {every}")
    covers = [s.sensor_id for s in city.sensors if s.kind is SensorKind.COVER]
    if not covers:
        raise ValueError("the city has no covers to open")
    rng = random.Random(rng_seed)
    n = 0
    while count is None or n < count:
        yield CoverOpen(rng.choice(covers), start + n * every, duration, angle_deg)
        n += 1
