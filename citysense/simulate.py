"""Run the simulated city's edge agents against a broker, with cover incidents now and then."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from edge.agent import EdgeAgent
from simulator.city import City, build_city
from simulator.fleet import SimulatedFleet, schedule_cover_incidents

FIRST_INCIDENT_AFTER_S = 5.0
MIN_INCIDENT_S = 45.0
"""An opened cover stays open at least this long: longer than the cover-open rule's 20 s hold,
so every incident of the demo becomes a case, however often they come."""


async def inject_cover_incidents(
    fleet: SimulatedFleet, *, every: float, duration: float, console: Console
) -> None:
    """Open a random cover every ``every`` seconds (the first after 5 s), for ``duration`` s."""
    first = datetime.now(UTC) + timedelta(seconds=FIRST_INCIDENT_AFTER_S)
    schedule = schedule_cover_incidents(
        fleet.city,
        rng_seed=fleet.city.seed,
        start=first,
        every=timedelta(seconds=every),
        duration=timedelta(seconds=duration),
    )
    for incident in schedule:
        await asyncio.sleep(max(0.0, (incident.start - datetime.now(UTC)).total_seconds()))
        fleet.inject(incident)
        console.print(
            f"[yellow]incident[/]: cover {incident.sensor_id} opened at {incident.start:%H:%M:%S}"
        )


def city_tasks(
    city: City,
    *,
    mqtt_host: str,
    mqtt_port: int,
    incident_every: float,
    console: Console,
) -> dict[str, Coroutine[Any, Any, None]]:
    """One edge agent per station plus the incident injector, as named coroutines."""
    fleet = SimulatedFleet(city)
    tasks: dict[str, Coroutine[Any, Any, None]] = {
        f"edge-{station_id}": EdgeAgent(station_id, simulated, host=mqtt_host, port=mqtt_port).run()
        for station_id, simulated in fleet.stations.items()
    }
    tasks["incidents"] = inject_cover_incidents(
        fleet,
        every=incident_every,
        duration=max(incident_every * 1.5, MIN_INCIDENT_S),
        console=console,
    )
    return tasks


def describe(city: City) -> str:
    sensors = sum(len(s.sensors) for s in city.stations)
    return (
        f"city: {len(city.stations)} stations, {sensors} sensors "
        f"in {', '.join(f'{d.code} {d.name}' for d in city.districts)}"
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
