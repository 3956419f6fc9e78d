"""The `citysense` command line. `citysense --help` needs no running service."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from citysense.cli_common import Host, Port, Seed, configure_logging, console, rules_option

app = typer.Typer(
    help="citysense: IoT sensing and edge ingestion for digital city management (GB/T 30428).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
RulesFile = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        exists=True,
        dir_okay=False,
        help="Rules YAML (default: the built-in rules; serve: CITYSENSE_INGEST_RULES_PATH).",
    ),
]


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        console.print(f"citysense {version('citysense')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """citysense: IoT sensing and edge ingestion for digital city management (GB/T 30428)."""


def _checked_rules(path: Path | None) -> None:
    """A rules file that cannot be used is refused before anything starts (exit 2)."""
    if path is not None:
        rules_option(path)


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
    rules: RulesFile = None,
    verbose: bool = False,
) -> None:
    """The whole system on this machine: broker, ingest + rules + center, a simulated city."""
    from citysense.demo import DemoError, run_demo

    configure_logging(verbose)
    _checked_rules(rules)
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
                    rules_path=rules,
                )
            )
        except DemoError as exc:
            console.print(f"[red]demo cannot start[/]: {exc}")
            raise typer.Exit(2) from None
    console.print("demo stopped")


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="HTTP port [env CITYSENSE_CENTER_PORT].")] = None,
    host: Annotated[
        str | None, typer.Option(help="HTTP bind address [env CITYSENSE_CENTER_HOST].")
    ] = None,
    mqtt_host: Annotated[
        str | None, typer.Option(help="Broker host [env CITYSENSE_INGEST_MQTT_HOST].")
    ] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(help="Broker port [env CITYSENSE_INGEST_MQTT_PORT].")
    ] = None,
    rules: RulesFile = None,
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
    _checked_rules(rules)
    # typer has checked the types; the options win over the environment
    center = center.model_copy(
        update={k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    )
    options = {"mqtt_port": mqtt_port, "mqtt_host": mqtt_host, "rules_path": rules}
    ingest = ingest.model_copy(update={k: v for k, v in options.items() if v is not None})

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
from citysense.cli_lab import lab_app  # noqa: E402
from citysense.cli_provision import provision_app  # noqa: E402
from citysense.cli_recording import record, replay  # noqa: E402
from citysense.cli_rejects import rejects_app  # noqa: E402
from citysense.cli_rules import rules_app  # noqa: E402
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
app.add_typer(lab_app, name="lab")
app.add_typer(rules_app, name="rules")


if __name__ == "__main__":
    app()
