"""Option types and helpers shared by the CLI's command modules."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rules import RuleSet

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


RulesOption = Annotated[
    Path | None, typer.Option("--rules", help="Rules YAML (default: the built-in rules).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def one_line(exc: Exception) -> str:
    """An error as one line (a YAML error's position spans several)."""
    return " ".join(str(exc).split())


def rules_option(path: Path | None) -> RuleSet:
    """The rule set of a ``--rules`` option, or a one-line refusal (exit 2)."""
    from rules import DEFAULT_RULES_FILE, RuleError, load_rules

    try:
        return load_rules(path or DEFAULT_RULES_FILE)
    except RuleError as exc:
        raise typer.BadParameter(one_line(exc), param_hint="--rules") from None
