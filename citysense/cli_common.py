"""Option types and helpers shared by the CLI's command modules.

Errors: a command refuses bad input by raising :class:`CliError` (or ``typer.BadParameter``);
``citysense.cli.main`` prints it as one line on stderr, ``citysense <command>: error: <message>``,
and exits with its code: :data:`BAD_INPUT` (2) for a bad path, file, URL or option, including a
broker or API that cannot be reached at all (:data:`UNREACHABLE`), :data:`FAILED` (1) for one
that fails mid-way.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn
from urllib.parse import urlsplit

import typer
from rich.console import Console, ConsoleDimensions

if TYPE_CHECKING:
    import httpx

    from rules import RuleSet

BAD_INPUT = 2
"""Exit code of a bad path, file, URL or option: the command line has to change."""
FAILED = 1
"""Exit code of a failure the command line is not to blame for (a broker or API that fails
mid-way, a station that rejects a config, a gate that fails)."""
UNREACHABLE = BAD_INPUT
"""Exit code when the broker or API an option names cannot be reached at all (refused, unknown
host, no answer to the connect): as far as the command can tell, that option is what is wrong."""
PIPE_WIDTH = 200
"""Width of tables and lines written to a pipe or file when COLUMNS is not set (rich's own
default there is 80, which squeezes a wide table into columns of a few letters)."""


class CliError(typer.TyperException):
    """A command's refusal: printed as one line on stderr, then exit ``exit_code``."""

    def __init__(self, message: str, exit_code: int = BAD_INPUT) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code


def fail(message: str, exit_code: int = BAD_INPUT) -> NoReturn:
    """Refuse with one line on stderr and ``exit_code`` (2: bad input, 1: a failure)."""
    raise CliError(message, exit_code)


class _Console(Console):
    """rich's Console, ``PIPE_WIDTH`` wide when it writes to a pipe or file and COLUMNS is not
    set; on a terminal, or with COLUMNS, rich decides as always."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        columns = os.environ.get("COLUMNS", "")
        if self._width is None and not columns.isdigit() and not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


console = _Console()
err_console = _Console(stderr=True)
"""Progress bars and failed gates: stderr, so `--json` output on stdout stays parseable."""


_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def is_host(value: str) -> bool:
    """A host name (RFC 1123 labels, IDN allowed) or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    else:
        return True
    name = value.removesuffix(".")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_name.split(".")
    return 0 < len(ascii_name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def check_host(value: str | None) -> str | None:
    """Option callback: a host that cannot be a host is refused before anything connects."""
    if value is not None and not is_host(value):
        raise typer.BadParameter(f"{value!r} is not a host name or IP address")
    return value


def check_url(value: str | None) -> str | None:
    """Option callback: an http(s) base URL with a valid host and port, or a refusal."""
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port  # out of range or not a number: ValueError
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(f"{value!r} is not an http:// or https:// URL")
    if not is_host(parts.hostname) or port == 0:
        raise typer.BadParameter(f"{value!r}: not a valid host or port")
    return value


Port = Annotated[int, typer.Option(min=1, max=65535, help="HTTP port of the dashboard and API.")]
Host = Annotated[str, typer.Option(callback=check_host, help="HTTP bind address.")]
MqttHost = Annotated[str, typer.Option(callback=check_host, help="MQTT broker host.")]
MqttPort = Annotated[int, typer.Option(min=1, max=65535, help="MQTT broker port.")]
Seed = Annotated[int, typer.Option(help="Seed of the simulated city.")]
Verbose = Annotated[
    bool, typer.Option("--verbose", help="Log at INFO level (default: warnings only).")
]


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


TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="CITYSENSE_TOKEN",
        show_default=False,
        help="API token, sent as a bearer token (citysense users token NAME --role ROLE"
        " --name WHAT). Prefer the environment variable: an option shows in the process list.",
    ),
]


def bearer_headers(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def refuse_unauthorized(api: str, answer: httpx.Response) -> None:
    """A 401 or 403 from a center is one line (exit 2: the token has to change)."""
    if answer.status_code not in (401, 403):
        return
    try:
        detail = str(answer.json()["detail"])
    except (ValueError, KeyError, TypeError):
        detail = answer.reason_phrase
    if answer.status_code == 401:
        fail(
            f"{api} refused the request (401 {detail}): give an API token with --token or "
            "CITYSENSE_TOKEN (citysense users token NAME --role ROLE --name WHAT)"
        )
    fail(f"{api} refused the request (403 {detail}): use a token of a role that may do it")
