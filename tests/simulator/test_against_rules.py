"""The simulated physics meets the default rules: rocking never opens a case, an open cover does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rules import Alert, RuleEngine, load_rules
from simulator import CoverOpen, SimulatedStation, build_city

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)


def _run(station: SimulatedStation, seconds: int) -> tuple[list[Alert], int]:
    """Feed ``seconds`` of 1 Hz readings to the default rules: the alerts and the tilt spikes."""
    engine = RuleEngine(load_rules())
    alerts: list[Alert] = []
    spikes = 0
    for second in range(seconds):
        readings = station.read(T0 + timedelta(seconds=second))
        spikes += sum(r.values.get("tilt_deg", 0.0) > 15.0 for r in readings)
        alerts += engine.process(station.station_id, readings)
    return alerts, spikes


def test_hours_of_traffic_rock_covers_but_open_no_case() -> None:
    city = build_city(
        seed=7,
        stations_per_district=2,
        covers_per_station=8,
        pressure_per_station=0,
        poles_per_station=0,
        districts=["410105"],
    )
    for station in city.stations:
        alerts, spikes = _run(SimulatedStation(station, city.seed), 4 * 3600)
        assert spikes > 100
        assert alerts == []


def test_an_open_cover_opens_one_case_and_clears_it() -> None:
    city = build_city(seed=7, stations_per_district=1, districts=["410105"])
    station = SimulatedStation(city.stations[0], city.seed)
    cover = station.sensors()[0].sensor_id
    station.inject(CoverOpen(cover, T0 + timedelta(seconds=60), timedelta(seconds=20)))
    alerts, _ = _run(station, 600)
    assert [(a.sensor_id, a.state) for a in alerts] == [(cover, "open"), (cover, "cleared")]
    opened, cleared = alerts
    assert opened.started_at == T0 + timedelta(seconds=60)
    assert cleared.at == T0 + timedelta(seconds=80)


def _run_due(station: SimulatedStation, seconds: int) -> tuple[list[Alert], int]:
    """The same with what the devices would send under their reporting policies."""
    engine = RuleEngine(load_rules())
    alerts: list[Alert] = []
    sent = 0
    for second in range(seconds):
        readings = station.read_due(T0 + timedelta(seconds=second))
        sent += len(readings)
        if readings:
            alerts += engine.process(station.station_id, readings)
    return alerts, sent


def test_event_driven_reports_of_rocking_open_no_case() -> None:
    city = build_city(
        seed=7,
        stations_per_district=2,
        covers_per_station=8,
        pressure_per_station=0,
        poles_per_station=0,
        districts=["410105"],
    )
    for station in city.stations:
        alerts, sent = _run_due(SimulatedStation(station, city.seed), 2 * 3600)
        assert sent > len(station.sensors)
        assert alerts == []


def test_event_driven_reports_of_an_open_cover_open_one_case() -> None:
    city = build_city(seed=7, stations_per_district=1, districts=["410105"])
    station = SimulatedStation(city.stations[0], city.seed)
    cover = station.sensors()[0].sensor_id
    station.inject(CoverOpen(cover, T0 + timedelta(seconds=60), timedelta(seconds=20)))
    alerts, _ = _run_due(station, 600)
    assert [(a.sensor_id, a.state) for a in alerts] == [(cover, "open"), (cover, "cleared")]
    assert alerts[0].started_at == T0 + timedelta(seconds=60)
    assert alerts[1].at == T0 + timedelta(seconds=80)
