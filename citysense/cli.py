"""The `citysense` command line. `citysense --help` needs no running service."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from citysense.cli_common import Host, Port, Seed, configure_logging, console

app = typer.Typer(
    help="citysense: IoT sensing and edge ingestion for digital city management (GB/T 30428).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def demo(
    port: Port = 8000,
    host: Host = "127.0.0.1",
    seed: Seed = 7,
    incident_every: Annotated[
        float, typer.Option(help="Seconds between cover incidents (each lasts at least 45 s).")
    ] = 20.0,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where cases and dead letters go (default: a fresh temp dir)."),
    ] = None,
    broker: Annotated[
        Literal["auto", "mosquitto", "embedded"],
        typer.Option(
            help="auto: Mosquitto if installed, else the embedded amqtt broker; "
            "or force mosquitto / embedded."
        ),
    ] = "auto",
    verbose: bool = False,
) -> None:
    """The whole system on this machine: broker, ingest + rules + center, a simulated city."""
    from citysense.demo import DemoError, run_demo

    configure_logging(verbose)
    with (
        tempfile.TemporaryDirectory(prefix="citysense-demo-") as scratch,
        contextlib.suppress(KeyboardInterrupt),
    ):
        try:
            asyncio.run(
                run_demo(
                    host=host,
                    port=port,
                    seed=seed,
                    incident_every=incident_every,
                    data_dir=data_dir or Path(scratch),
                    console=console,
                    broker_choice=broker,
                )
            )
        except DemoError as exc:
            console.print(f"[red]demo cannot start[/]: {exc}")
            raise typer.Exit(2) from None
    console.print("demo stopped")


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="HTTP port [env CITYSENSE_CENTER_PORT].")] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(help="Broker port [env CITYSENSE_INGEST_MQTT_PORT].")
    ] = None,
    verbose: bool = False,
) -> None:
    """Ingest + rules + center on one node.

    Configured by CITYSENSE_INGEST_* and CITYSENSE_CENTER_* environment variables.
    """
    from pydantic import ValidationError

    from center import CenterError
    from center.settings import CenterSettings
    from citysense.node import build_node, run_node
    from ingest.settings import IngestSettings
    from ingest.sinks.settings import SinkSettings
    from rules import RuleError

    configure_logging(verbose)
    try:
        ingest = IngestSettings()
        center = CenterSettings()
        sinks = SinkSettings()
    except ValidationError as exc:
        console.print(f"[red]bad configuration[/]: {exc}")
        raise typer.Exit(2) from None
    if port is not None:  # typer has checked the type already
        center = center.model_copy(update={"port": port})
    if mqtt_port is not None:
        ingest = ingest.model_copy(update={"mqtt_port": mqtt_port})

    async def main() -> None:
        async with build_node(ingest, center, sinks) as node:
            console.print(f"serving on http://{center.host}:{center.port}/")
            await run_node(node)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    except (RuleError, CenterError) as exc:
        console.print(f"[red]cannot serve[/]: {exc}")
        raise typer.Exit(2) from None


# Commands that live in their own modules (imports inside them stay lazy for a fast --help).
from citysense.cli_config import config_app  # noqa: E402
from citysense.cli_edge import edge  # noqa: E402
from citysense.cli_provision import provision_app  # noqa: E402
from citysense.cli_recording import record, replay  # noqa: E402
from citysense.cli_rejects import rejects_app  # noqa: E402
from citysense.cli_scenarios import backtest, score, simulate  # noqa: E402

app.command()(edge)
app.command()(simulate)
app.command()(record)
app.command()(replay)
app.command()(backtest)
app.command()(score)
app.add_typer(rejects_app, name="rejects")
app.add_typer(provision_app, name="provision")
app.add_typer(config_app, name="config")


if __name__ == "__main__":
    app()
