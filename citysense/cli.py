"""The `citysense` command line. `citysense --help` needs no running service.

The entry point is :func:`main`. Every refusal is one line on stderr,
``citysense <command>: error: <message>``, with exit code 2 for a bad path, file, URL or option
(click's usage errors included) and 1 for a broker or API that cannot be reached; no usage box,
no traceback. Tests that drive ``app`` through ``typer.testing.CliRunner`` take the same path:
the app's root command is a :class:`CitysenseGroup`, whose ``main`` does the printing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar

import typer
from typer.core import TyperGroup, TyperOption
from typer.main import get_command

from citysense.cli_common import (
    BAD_INPUT,
    FAILED,
    Host,
    Port,
    Seed,
    Verbose,
    check_host,
    configure_logging,
    console,
    fail,
    rules_option,
)

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

PROG = "citysense"
SettingsT = TypeVar("SettingsT", bound="BaseSettings")


class CitysenseGroup(TyperGroup):
    """The root command: runs the command line and turns every refusal into one line."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, PROG, complete_var, False, windows_expand_args, **extra)
        sys.exit(self._run(argv, complete_var, windows_expand_args, **extra))

    def _run(self, argv: list[str], complete_var: str | None, expand: bool, **extra: Any) -> int:
        try:
            result = super().main(argv, PROG, complete_var, False, expand, **extra)
        except typer.TyperException as exc:  # click's usage errors, CliError, BadParameter
            if type(exc).__name__ == "NoArgsIsHelpError":
                # rich help is printed when the error is made; plain help is its message
                if help_text := exc.format_message().strip():
                    typer.echo(help_text)
                return BAD_INPUT
            message = " ".join(exc.format_message().split())
            typer.echo(f"{self._command_path(argv)}: error: {message}", err=True)
            return exc.exit_code
        except typer.Abort:
            typer.echo(f"{self._command_path(argv)}: error: aborted", err=True)
            return FAILED
        # typer returns the code of a typer.Exit (or of --help: 0), else the command's None
        return result if isinstance(result, int) else 0

    def _command_path(self, argv: Sequence[str]) -> str:
        """``citysense lab run``: the (sub)commands named on the command line."""
        words = [PROG]
        command: Any = self
        for arg in argv:
            if arg.startswith("-"):
                continue  # the groups' own options (--help, --version) take no value
            commands = getattr(command, "commands", None)
            if not commands or arg not in commands:
                break
            words.append(arg)
            command = commands[arg]
        return " ".join(words)


def _flags_without_a_type() -> None:
    """Flags as flags in `--help`: typer's rich help shows `--json <bool>` (its plain help does
    not), though a flag takes no value."""
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag or self.count else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_a_type()

app = typer.Typer(
    cls=CitysenseGroup,
    name=PROG,
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


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The `citysense` script and `python -m citysense`: run the command line, exit."""
    get_command(app).main(argv, PROG)
    raise AssertionError("unreachable: CitysenseGroup.main exits")  # pragma: no cover


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        console.print(f"citysense {version('citysense')}")
        raise typer.Exit()


@app.callback()
def _root(
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
        typer.Option(
            file_okay=False, help="Where cases and dead letters go (default: a fresh temp dir)."
        ),
    ] = None,
    broker: Annotated[
        Literal["auto", "mosquitto", "embedded"],
        typer.Option(
            help="auto: Mosquitto if installed, else the embedded amqtt broker; "
            "or force mosquitto / embedded."
        ),
    ] = "auto",
    rules: RulesFile = None,
    verbose: Verbose = False,
) -> None:
    """The whole system on this machine: broker, ingest + rules + center, a simulated city."""
    from citysense.demo import DemoError, run_demo

    configure_logging(verbose)
    _checked_rules(rules)
    if data_dir is not None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            fail(f"--data-dir {data_dir}: {exc.strerror or exc}")
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
            fail(f"demo cannot start: {exc}")
    console.print("demo stopped")


@app.command()
def serve(
    port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="HTTP port (default: env CITYSENSE_CENTER_PORT, else 8000)."
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            callback=check_host,
            help="HTTP bind address (default: env CITYSENSE_CENTER_HOST, else 127.0.0.1).",
        ),
    ] = None,
    mqtt_host: Annotated[
        str | None,
        typer.Option(
            callback=check_host,
            help="MQTT broker host (default: env CITYSENSE_INGEST_MQTT_HOST, else 127.0.0.1).",
        ),
    ] = None,
    mqtt_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="MQTT broker port (default: env CITYSENSE_INGEST_MQTT_PORT, else 1883).",
        ),
    ] = None,
    rules: RulesFile = None,
    verbose: Verbose = False,
) -> None:
    """Ingest + rules + center on one node.

    Configured by CITYSENSE_INGEST_* and CITYSENSE_CENTER_* environment variables.
    """
    from center import CenterError
    from center.settings import CenterSettings
    from citysense.node import build_node, run_node
    from ingest.settings import IngestSettings
    from ingest.sinks.settings import SinkSettings
    from rules import RuleError

    configure_logging(verbose)
    ingest = _from_environment(IngestSettings)
    center = _from_environment(CenterSettings)
    sinks = _from_environment(SinkSettings)
    _checked_rules(rules)
    # typer has checked the types; the options win over the environment
    center = center.model_copy(
        update={k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    )
    options = {"mqtt_port": mqtt_port, "mqtt_host": mqtt_host, "rules_path": rules}
    ingest = ingest.model_copy(update={k: v for k, v in options.items() if v is not None})
    _check_listen(center.host, center.port)

    async def run() -> None:
        async with build_node(ingest, center, sinks) as node:
            console.print(f"serving on http://{center.host}:{center.port}/")
            await run_node(node)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())
    except (RuleError, CenterError) as exc:
        fail(f"cannot serve: {exc}")


def _check_listen(host: str, port: int) -> None:
    """A port in use or an address not of this machine: one line (exit 2) before anything starts
    (uvicorn would log it after the node has started, and exit 3)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port/--host")


def _from_environment(settings: type[SettingsT]) -> SettingsT:
    """Settings from the environment; a bad variable is one line naming it (exit 2)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return settings()
    except SettingsError as exc:  # a list or object variable that is not JSON
        fail(f"bad configuration: {exc} (JSON expected)")
    except ValidationError as exc:
        prefix = str(settings.model_config.get("env_prefix", ""))
        reasons = "; ".join(
            f"{(prefix + '__'.join(map(str, error['loc']))).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        fail(f"bad configuration: {reasons}")


# Commands that live in their own modules (imports inside them stay lazy for a fast --help).
from citysense.cli_config import config_app  # noqa: E402
from citysense.cli_edge import edge  # noqa: E402
from citysense.cli_lab import lab_app  # noqa: E402
from citysense.cli_provision import provision_app  # noqa: E402
from citysense.cli_recording import record, replay  # noqa: E402
from citysense.cli_rejects import rejects_app  # noqa: E402
from citysense.cli_rules import rules_app  # noqa: E402
from citysense.cli_scenarios import backtest, score, simulate  # noqa: E402
from citysense.cli_users import users_app  # noqa: E402

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
app.add_typer(users_app, name="users")


if __name__ == "__main__":
    main()
