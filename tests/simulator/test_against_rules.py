"""The simulated physics meets the default rules: rocking never opens a case, an open cover does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rules import Alert, RuleEngine, load_rules
from simulator import City, CoverOpen, SimulatedStation, build_city

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)


def _run(
    station: SimulatedStation, seconds: int, *, due_only: bool = False
) -> tuple[list[Alert], int, int]:
    """Feed ``seconds`` of readings to the default rules, every second (``due_only``: only what
    the devices' reporting policies send): the alerts, the tilt spikes, the readings sent."""
    engine = RuleEngine(load_rules())
    read = station.read_due if due_only else station.read
    alerts: list[Alert] = []
    spikes = sent = 0
    for second in range(seconds):
        readings = read(T0 + timedelta(seconds=second))
        spikes += sum(r.values.get("tilt_deg", 0.0) > 15.0 for r in readings)
        sent += len(readings)
        if readings:
            alerts += engine.process(station.station_id, readings)
    return alerts, spikes, sent


def _covers_only_city() -> City:
    return build_city(
        seed=7,
        stations_per_district=2,
        covers_per_station=8,
        pressure_per_station=0,
        poles_per_station=0,
        districts=["410105"],
    )


def test_hours_of_traffic_rock_covers_but_open_no_case() -> None:
    city = _covers_only_city()
    for station in city.stations:
        alerts, spikes, _ = _run(SimulatedStation(station, city.seed), 4 * 3600)
        assert spikes > 100
        assert alerts == []


def test_an_open_cover_opens_one_case_and_clears_it() -> None:
    city = build_city(seed=7, stations_per_district=1, districts=["410105"])
    station = SimulatedStation(city.stations[0], city.seed)
    cover = station.sensors()[0].sensor_id
    station.inject(CoverOpen(cover, T0 + timedelta(seconds=60), timedelta(minutes=3)))
    alerts, _, _ = _run(station, 600)
    assert [(a.sensor_id, a.state) for a in alerts] == [(cover, "open"), (cover, "cleared")]
    _assert_opened_then_cleared(*alerts)


def _assert_opened_then_cleared(opened: Alert, cleared: Alert) -> None:
    """The case starts when the cover opened (the rules may debounce for up to 30 s, GB/T
    41401) and clears after it closed at 4 min."""
    assert T0 + timedelta(seconds=60) <= opened.started_at <= T0 + timedelta(seconds=90)
    assert T0 + timedelta(minutes=4) <= cleared.at <= T0 + timedelta(minutes=5)


def test_event_driven_reports_of_rocking_open_no_case() -> None:
    city = _covers_only_city()
    for station in city.stations:
        alerts, _, sent = _run(SimulatedStation(station, city.seed), 2 * 3600, due_only=True)
        assert sent > len(station.sensors)
        assert alerts == []


def test_event_driven_reports_of_an_open_cover_open_one_case() -> None:
    city = build_city(seed=7, stations_per_district=1, districts=["410105"])
    station = SimulatedStation(city.stations[0], city.seed)
    cover = station.sensors()[0].sensor_id
    station.inject(CoverOpen(cover, T0 + timedelta(seconds=60), timedelta(minutes=3)))
    alerts, _, _ = _run(station, 600, due_only=True)
    assert [(a.sensor_id, a.state) for a in alerts] == [(cover, "open"), (cover, "cleared")]
    _assert_opened_then_cleared(*alerts)
