"""`citysense provision ca | server | station | service`: credentials for the production broker.

Each command prints one line per file (created, kept, replaced, added, restored) and ends with
exit code 2 and one line on stderr (``citysense provision <command>: error: ...``) when it cannot
go ahead. docs/broker.md has the walk-through.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, NoReturn

import typer

from citysense.cli_common import check_host, console, fail
from citysense.provision import (
    CA_DAYS,
    DEFAULT_DIR,
    SERVER_CERT_DAYS,
    STATION_INSTALL_DIR,
    ProvisionError,
    Service,
    Step,
    create_ca,
    issue_server,
    provision,
    service_account,
    station_account,
)

provision_app = typer.Typer(
    help="Broker credentials: the CA, the broker's certificate, station and service accounts.",
    no_args_is_help=True,
)

Dir = Annotated[
    Path,
    typer.Option(
        "--dir",
        envvar="CITYSENSE_PROVISION_DIR",
        help="Where the CA, the broker's files and the account bundles live.",
    ),
]
Rotate = Annotated[
    bool,
    typer.Option(
        "--rotate", help="Issue new credentials (password, key, certificate) in any case."
    ),
]


def _report(steps: list[Step]) -> None:
    for step in steps:
        console.print(str(step), highlight=False, soft_wrap=True, markup=False)


def _fail(error: ProvisionError) -> NoReturn:
    fail(str(error))


@provision_app.command("ca")
def ca(
    directory: Dir = DEFAULT_DIR,
    days: Annotated[int, typer.Option(min=1, help="Validity of the CA certificate.")] = CA_DAYS,
) -> None:
    """Create the CA that signs the broker's and every client's certificate (once)."""
    try:
        _report(create_ca(directory, days=days))
    except ProvisionError as exc:
        _fail(exc)


@provision_app.command("server")
def server(
    names: Annotated[
        list[str], typer.Argument(help="DNS names and IP addresses stations use to reach it.")
    ],
    directory: Dir = DEFAULT_DIR,
    days: Annotated[
        int, typer.Option(min=1, help="Validity of the broker's certificate.")
    ] = SERVER_CERT_DAYS,
) -> None:
    """The broker's TLS certificate (DIR/broker/server.crt and server.key)."""
    try:
        _report(issue_server(directory, names, days=days))
    except ProvisionError as exc:
        _fail(exc)


@provision_app.command("station")
def station(
    station_id: Annotated[str, typer.Argument(help="The station id; also its MQTT username.")],
    directory: Dir = DEFAULT_DIR,
    rotate: Rotate = False,
    mqtt_host: Annotated[
        str | None,
        typer.Option(
            callback=check_host,
            help="The broker's name for mqtt.env, as in its certificate (default: the one the "
            "bundle's mqtt.env has, else none).",
        ),
    ] = None,
    mqtt_port: Annotated[
        int, typer.Option(min=1, max=65535, help="The broker's TLS port for mqtt.env.")
    ] = 8883,
    install_dir: Annotated[
        str, typer.Option(help="Where the bundle goes on the station (paths in mqtt.env).")
    ] = str(STATION_INSTALL_DIR),
    broker_host: Annotated[
        str | None, typer.Option("--broker-host", callback=check_host, hidden=True)
    ] = None,
    broker_port: Annotated[
        int | None, typer.Option("--broker-port", min=1, max=65535, hidden=True)
    ] = None,
) -> None:
    """A base station's password entry, client certificate and mqtt.env (DIR/stations/ID/)."""
    # --broker-host and --broker-port: the old names of --mqtt-host and --mqtt-port (hidden)
    mqtt_host = mqtt_host if broker_host is None else broker_host
    mqtt_port = mqtt_port if broker_port is None else broker_port
    try:
        account = station_account(
            station_id,
            install_dir=PurePosixPath(install_dir),
            broker_host=mqtt_host,
            broker_port=mqtt_port,
        )
        _report(provision(directory, account, rotate=rotate))
    except ProvisionError as exc:
        _fail(exc)


@provision_app.command("service")
def service(
    name: Annotated[Service, typer.Argument(help="The service account.")],
    directory: Dir = DEFAULT_DIR,
    rotate: Rotate = False,
) -> None:
    """Ingest's or the center's account (username citysense-NAME; DIR/services/NAME/)."""
    try:
        _report(provision(directory, service_account(name), rotate=rotate))
    except ProvisionError as exc:
        _fail(exc)
