"""Run the simulated city's edge agents against a broker, with cover incidents now and then."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from edge.agent import EdgeAgent
from protocol import SensorKind
from simulator.city import City, build_city
from simulator.fleet import SimulatedStation
from simulator.incidents import CoverOpen

FIRST_INCIDENT_AFTER_S = 5.0


async def inject_cover_incidents(
    stations: Mapping[str, SimulatedStation],
    *,
    seed: int,
    every: float,
    duration: float,
    console: Console,
) -> None:
    """Open a random cover every ``every`` seconds (the first after 5 s), for ``duration`` s."""
    rng = random.Random(seed)
    covers = [
        (station, sensor.sensor_id)
        for station in stations.values()
        for sensor in station.sensors()
        if sensor.kind is SensorKind.COVER
    ]
    await asyncio.sleep(FIRST_INCIDENT_AFTER_S)
    while True:
        station, sensor_id = rng.choice(covers)
        start = datetime.now(UTC)
        station.inject(CoverOpen(sensor_id, start, timedelta(seconds=duration)))
        console.print(f"[yellow]incident[/]: cover {sensor_id} opened at {start:%H:%M:%S}")
        await asyncio.sleep(every)


def city_tasks(
    city: City,
    *,
    mqtt_host: str,
    mqtt_port: int,
    incident_every: float,
    console: Console,
) -> dict[str, Coroutine[Any, Any, None]]:
    """One edge agent per station plus the incident injector, as named coroutines."""
    stations = {s.station_id: SimulatedStation(s, seed=city.seed) for s in city.stations}
    tasks: dict[str, Coroutine[Any, Any, None]] = {
        f"edge-{station_id}": EdgeAgent(station_id, simulated, host=mqtt_host, port=mqtt_port).run()
        for station_id, simulated in stations.items()
    }
    tasks["incidents"] = inject_cover_incidents(
        stations,
        seed=city.seed,
        every=incident_every,
        duration=incident_every * 1.5,
        console=console,
    )
    return tasks


def describe(city: City) -> str:
    sensors = sum(len(s.sensors) for s in city.stations)
    return (
        f"city: {len(city.stations)} stations, {sensors} sensors "
        f"in districts {', '.join(city.districts)}"
    )


async def run_city(
    *, mqtt_host: str, mqtt_port: int, seed: int, incident_every: float, console: Console
) -> None:
    city = build_city(seed=seed)
    console.print(describe(city))
    async with asyncio.TaskGroup() as group:
        for name, coro in city_tasks(
            city,
            mqtt_host=mqtt_host,
            mqtt_port=mqtt_port,
            incident_every=incident_every,
            console=console,
        ).items():
            group.create_task(coro, name=name)
