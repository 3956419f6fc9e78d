"""`citysense edge`: one base station's edge agent, configured from flags, env and a TOML file."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from citysense.cli_common import Verbose, check_host, configure_logging, fail

if TYPE_CHECKING:
    from edge.driver import SensorDriver
    from edge.drivers import UdpGatewayDriver
    from edge.settings import EdgeSettings


def edge(
    station: Annotated[
        str | None,
        typer.Argument(
            help="Station id (env CITYSENSE_EDGE_STATION_ID); with the simulated driver, a "
            "station of the simulated city."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="CITYSENSE_EDGE_CONFIG",
            help="TOML config file (docs/edge.md); flags and CITYSENSE_EDGE_* override it.",
        ),
    ] = None,
    driver: Annotated[
        Literal["simulated", "udp"] | None,
        typer.Option(help="Where readings come from (default: the config's, else simulated)."),
    ] = None,
    mqtt_host: Annotated[
        str | None,
        typer.Option(
            callback=check_host, help="MQTT broker host (default: the config's, else 127.0.0.1)."
        ),
    ] = None,
    mqtt_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="MQTT broker port (default: the config's, else 1883)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the simulated city (default: the config's, else 7).")
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between samples and between batches (default: the config's, else 1)."
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run one base station's edge agent: simulated sensors or a UDP/JSON gateway feed.

    Settings, highest first: these flags, CITYSENSE_EDGE_* variables, the --config file.
    """
    from edge.config import EdgeConfigError, load_edge_settings
    from edge.drivers import DriverError

    configure_logging(verbose)
    flags = {
        "station_id": station,
        "driver": driver,
        "mqtt_host": mqtt_host,
        "mqtt_port": mqtt_port,
        "seed": seed,
        "sample_interval_s": interval,
        "batch_interval_s": interval,
    }
    try:
        settings = load_edge_settings(config, flags)
        sensors, udp = _driver(settings)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(settings, sensors, udp))
    except (EdgeConfigError, DriverError) as exc:
        fail(f"bad configuration: {exc}")


def _driver(settings: EdgeSettings) -> tuple[SensorDriver, UdpGatewayDriver | None]:
    """The configured driver, behind report-by-exception when that is on; and the UDP feed."""
    from edge.config import EdgeConfigError
    from edge.drivers import UdpGatewayDriver
    from edge.exception import ReportByException
    from simulator.city import build_city
    from simulator.fleet import SimulatedStation

    driver: SensorDriver
    udp = None
    if settings.driver == "udp":
        driver = udp = UdpGatewayDriver(settings.sensors, settings.udp)
    else:
        city = build_city(seed=settings.seed)
        try:
            driver = SimulatedStation(city.station(settings.station_id), seed=settings.seed)
        except KeyError:
            ids = ", ".join(s.station_id for s in city.stations)
            message = f"no station {settings.station_id!r} in the simulated city; stations: {ids}"
            raise EdgeConfigError(message) from None
    if settings.report.enabled:
        driver = ReportByException(driver, settings.report)
    return driver, udp


async def _run(settings: EdgeSettings, driver: SensorDriver, udp: UdpGatewayDriver | None) -> None:
    """Run the agent until SIGTERM (systemd's stop) or SIGINT, then say goodbye."""
    from edge.agent import EdgeAgent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        source = "simulated sensors"
        if udp is not None:
            await stack.enter_async_context(udp)
            host, port = udp.address
            source = f"UDP feed on {host}:{port}"
        agent = EdgeAgent.from_settings(settings, driver)
        exception = "on" if settings.report.enabled else "off"
        typer.echo(
            f"edge {settings.station_id}: {len(driver.sensors())} sensors, {source}, "
            f"report-by-exception {exception}, broker {settings.mqtt_host}:{settings.mqtt_port}",
            err=True,
        )
        running = asyncio.create_task(agent.run(), name=f"edge-{settings.station_id}")
        stopping = asyncio.create_task(stop.wait(), name="edge-stop-signal")
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        agent.close()
        typer.echo(f"edge {settings.station_id}: stopped; {_summary(driver, udp)}", err=True)


def _summary(driver: SensorDriver, udp: UdpGatewayDriver | None) -> str:
    from edge.exception import ReportByException

    parts = []
    if udp is not None:
        feed = udp.stats
        refused = ", ".join(f"{r} {n}" for r, n in sorted(feed.rejected.items())) or "none"
        parts.append(
            f"feed: {feed.accepted} readings accepted, {feed.dropped} dropped, refused: {refused}"
        )
    if isinstance(driver, ReportByException):
        report = driver.stats
        parts.append(f"forwarded {sum(report.forwarded.values())}, suppressed {report.suppressed}")
    return "; ".join(parts) or "no counters"
