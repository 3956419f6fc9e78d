"""Simulated base stations: physics plus injected incidents behind the edge driver interface."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from protocol import Reading, SensorInfo, SensorKind
from simulator.city import City, Station
from simulator.devices import LOW_BATTERY_V, Battery
from simulator.incidents import CoverOpen, Incident
from simulator.physics import SensorModel, aware_utc, model_for
from simulator.reporting import Reporter, ReportPolicy, default_policy
from simulator.weather import Weather

Effect = Callable[[str, dict[str, float], datetime], dict[str, float]]
"""How an incident changes one sensor's values: ``(sensor_id, values, ts) -> values``."""


def powered(sensor: SensorInfo) -> bool:
    """Poles and street lamps have mains power; covers and pressure loggers run on batteries."""
    return sensor.kind is SensorKind.POLE


class SimulatedStation:
    """One base station's sensors, simulated; implements ``edge.driver.SensorDriver``.

    ``read`` samples every sensor (a live demo at a fixed rate); ``read_due`` samples every
    sensor too but returns only what each device's ``ReportPolicy`` would send (heartbeats,
    alarms, recoveries), for runs in simulated time. Both draw measurement noise from the same
    streams, so use one of them per station and run.
    """

    def __init__(
        self,
        station: Station,
        seed: int,
        *,
        policies: Mapping[SensorKind, ReportPolicy] | None = None,
        weather: Weather | None = None,
    ) -> None:
        self.station = station
        self.seed = seed
        self.policies = dict(policies or {})
        self._weather = weather if weather is not None else Weather(seed)
        self._models: dict[str, SensorModel] = {}
        self._reporters: dict[str, Reporter] = {}
        self._incidents: list[Incident] = []
        self._effects: dict[str, list[tuple[Incident, Effect]]] = {}

    @property
    def station_id(self) -> str:
        return self.station.station_id

    @property
    def incidents(self) -> tuple[Incident, ...]:
        return tuple(self._incidents)

    def sensors(self) -> Sequence[SensorInfo]:
        return self.station.sensors

    def model(self, sensor_id: str) -> SensorModel:
        """The physics of one of the station's sensors, built on first use."""
        return self._model(self.station.sensor(sensor_id))

    def _model(self, sensor: SensorInfo) -> SensorModel:
        model = self._models.get(sensor.sensor_id)
        if model is None:
            model = model_for(sensor, self.seed, weather=self._weather)
            self._models[sensor.sensor_id] = model
        return model

    def policy(self, sensor: SensorInfo) -> ReportPolicy:
        """The sensor's reporting policy: the station's for its kind, else the default."""
        return self.policies.get(sensor.kind) or default_policy(sensor.kind, powered(sensor))

    def inject(self, incident: Incident) -> None:
        touched = [s for s in self.station.sensors if incident.applies_to(s.sensor_id)]
        if not touched:
            raise ValueError(f"{incident!r} touches no sensor of {self.station_id}")
        suits = getattr(incident, "suits", None)
        for sensor in touched:
            if suits is not None and not suits(sensor):
                raise ValueError(
                    f"{type(incident).__name__} cannot touch {sensor.sensor_id} "
                    f"({sensor.kind.value}, class {sensor.class_code})"
                )
        effect = _effect(incident)
        for sensor in touched:
            self._effects.setdefault(sensor.sensor_id, []).append((incident, effect))
        self._incidents.append(incident)

    def set_low_battery(
        self, sensor_id: str, since: datetime, volts: float = LOW_BATTERY_V
    ) -> None:
        """From ``since`` on, the sensor's battery reads about ``volts``."""
        battery = getattr(self.model(sensor_id), "battery", None)
        if not isinstance(battery, Battery):
            raise ValueError(f"{sensor_id} has no battery")
        battery.run_low(since, volts)

    def read(self, ts: datetime) -> list[Reading]:
        """One reading per sensor, stamped ``ts`` (converted to UTC)."""
        ts = aware_utc(ts)
        return [self._read(sensor, ts) for sensor in self.station.sensors]

    def read_due(self, ts: datetime) -> list[Reading]:
        """The readings the devices report at ``ts`` under their policies (often none)."""
        ts = aware_utc(ts)
        due = []
        for sensor in self.station.sensors:
            reading = self._read(sensor, ts)
            reporter = self._reporters.get(sensor.sensor_id)
            if reporter is None:
                reporter = self._reporters[sensor.sensor_id] = Reporter(self.policy(sensor))
            if reporter.offer(ts, reading.values):
                due.append(reading)
        return due

    def _read(self, sensor: SensorInfo, ts: datetime) -> Reading:
        sensor_id = sensor.sensor_id
        values = self._model(sensor).sample(ts)
        for incident, effect in self._effects.get(sensor_id, ()):
            if incident.active(ts):
                values = effect(sensor_id, values, ts)
        return Reading(sensor_id=sensor_id, kind=sensor.kind, ts=ts, values=values)


def _effect(incident: Incident) -> Effect:
    affect = getattr(incident, "affect", None)
    if callable(affect):
        return affect  # type: ignore[no-any-return]
    return lambda _sensor_id, values, ts: incident.apply(values, ts)


class SimulatedFleet:
    """Every station of a city, simulated; routes incidents to the stations they touch."""

    def __init__(
        self, city: City, *, policies: Mapping[SensorKind, ReportPolicy] | None = None
    ) -> None:
        self.city = city
        weather = Weather(city.seed)
        self.stations: dict[str, SimulatedStation] = {
            station.station_id: SimulatedStation(
                station, city.seed, policies=policies, weather=weather
            )
            for station in city.stations
        }

    def inject(self, incident: Incident) -> None:
        for station in self._touched(incident):
            station.inject(incident)

    def set_low_battery(
        self, sensor_id: str, since: datetime, volts: float = LOW_BATTERY_V
    ) -> None:
        self.stations[self.city.station_of(sensor_id).station_id].set_low_battery(
            sensor_id, since, volts
        )

    def _touched(self, incident: Incident) -> list[SimulatedStation]:
        sensor_ids = getattr(incident, "sensor_ids", None)
        if sensor_ids is None:
            touched = [
                station
                for station in self.stations.values()
                if any(incident.applies_to(s.sensor_id) for s in station.sensors())
            ]
        else:
            try:
                owners = {self.city.station_of(sensor_id).station_id for sensor_id in sensor_ids}
            except KeyError as missing:
                raise ValueError(f"{incident!r} touches {missing}, not in the city") from None
            touched = [self.stations[owner] for owner in sorted(owners)]
        if not touched:
            raise ValueError(f"{incident!r} touches no sensor in the city")
        return touched


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
