"""Option types and helpers shared by the CLI's command modules."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)
"""Progress bars and failed gates: stderr, so `--json` output on stdout stays parseable."""

Port = Annotated[int, typer.Option(help="HTTP port of the dashboard and API.")]
Host = Annotated[str, typer.Option(help="HTTP bind address.")]
MqttHost = Annotated[str, typer.Option(help="MQTT broker host.")]
MqttPort = Annotated[int, typer.Option(help="MQTT broker port.")]
Seed = Annotated[int, typer.Option(help="Seed of the simulated city.")]


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
