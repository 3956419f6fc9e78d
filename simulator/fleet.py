"""Simulated base stations: physics plus injected incidents behind the edge driver interface."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from protocol import Reading, SensorInfo, SensorKind
from simulator.city import City, Station
from simulator.devices import LOW_BATTERY_V, Battery
from simulator.incidents import CoverOpen, Incident
from simulator.physics import SensorModel, Street, aware_utc, model_for
from simulator.reporting import ReportPolicy, default_policy, micros
from simulator.sampling import Effect, SimulatedSensor, Ticks
from simulator.weather import Weather


def powered(sensor: SensorInfo) -> bool:
    """Poles and street lamps have mains power; covers and pressure loggers run on batteries."""
    return sensor.kind is SensorKind.POLE


class SimulatedStation:
    """One base station's sensors, simulated; implements ``edge.driver.SensorDriver``.

    ``read`` samples every sensor (a live demo at a fixed rate); ``read_due`` samples every
    sensor too but returns only what each device's ``ReportPolicy`` would send (heartbeats,
    alarms, recoveries); ``reports`` returns the same for a span of ticks, sampling only where
    a report can fall (runs in simulated time). All draw measurement noise from the same
    streams, so use one of them per station and run.
    """

    def __init__(
        self,
        station: Station,
        seed: int,
        *,
        policies: Mapping[SensorKind, ReportPolicy] | None = None,
        weather: Weather | None = None,
        street: Street | None = None,
    ) -> None:
        self.station = station
        self.seed = seed
        self.policies = dict(policies or {})
        self.street = street or Street()
        self._weather = weather if weather is not None else Weather(seed)
        self._devices: dict[str, SimulatedSensor] = {}
        self._incidents: list[Incident] = []

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
        return self._device(self.station.sensor(sensor_id)).model

    def _device(self, sensor: SensorInfo) -> SimulatedSensor:
        device = self._devices.get(sensor.sensor_id)
        if device is None:
            model = model_for(sensor, self.seed, weather=self._weather, street=self.street)
            device = SimulatedSensor(sensor, model, self.policy(sensor))
            self._devices[sensor.sensor_id] = device
        return device

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
            self._device(sensor).touch(incident, effect)
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
        t_us = micros(ts)
        readings = []
        for sensor in self.station.sensors:
            device = self._device(sensor)
            readings.append(device.reading(t_us, device.values_at(t_us, ts), ts))
        return readings

    def read_due(self, ts: datetime) -> list[Reading]:
        """The readings the devices report at ``ts`` under their policies (often none)."""
        ts = aware_utc(ts)
        t_us = micros(ts)
        due = []
        for sensor in self.station.sensors:
            device = self._device(sensor)
            values = device.values_at(t_us, ts)
            if device.reporter.offer_us(t_us, values):
                due.append(device.reading(t_us, values, ts))
        return due

    def reports(self, ticks: Ticks, first: int, stop: int) -> list[tuple[int, Reading]]:
        """What the devices report at ticks ``first`` .. ``stop - 1`` with the time of each
        (microseconds since the epoch), in time order, sensors in station order within a tick."""
        found = []
        for order, sensor in enumerate(self.station.sensors):
            device = self._device(sensor)
            found += [(t_us, order, values) for t_us, values in device.reports(ticks, first, stop)]
        found.sort(key=lambda item: (item[0], item[1]))
        devices = [self._device(sensor) for sensor in self.station.sensors]
        return [(t_us, devices[order].reading(t_us, values)) for t_us, order, values in found]


def _effect(incident: Incident) -> Effect:
    affect = getattr(incident, "affect", None)
    if callable(affect):
        return affect  # type: ignore[no-any-return]
    return lambda _sensor_id, values, ts: incident.apply(values, ts)


class SimulatedFleet:
    """Every station of a city, simulated; routes incidents to the stations they touch."""

    def __init__(
        self,
        city: City,
        *,
        policies: Mapping[SensorKind, ReportPolicy] | None = None,
        street: Street | None = None,
    ) -> None:
        self.city = city
        weather = Weather(city.seed)
        self.stations: dict[str, SimulatedStation] = {
            station.station_id: SimulatedStation(
                station, city.seed, policies=policies, weather=weather, street=street
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
