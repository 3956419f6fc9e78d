"""`citysense demo`: a broker, one node (ingest + rules + center) and a simulated city."""

from __future__ import annotations

import secrets
import socket
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Literal

from rich.console import Console

from center.auth import AccountExistsError, Accounts, Role
from center.settings import CenterSettings
from citysense.broker import MosquittoBroker, free_port
from citysense.embedded_broker import embedded_broker
from citysense.node import build_node, node_tasks, serve_until_stopped
from citysense.runtime import runtime_tasks, tune
from citysense.simulate import city_tasks, describe
from citysense.victoria import VictoriaMetrics
from ingest.settings import IngestSettings
from ingest.sinks.settings import SinkSettings
from simulator.city import build_city

BrokerChoice = Literal["auto", "mosquitto", "embedded"]


class DemoError(RuntimeError):
    """The demo cannot start, and the user can fix why."""


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DemoError(f"{host}:{port} is taken ({exc.strerror}); pass --port") from None


async def run_demo(
    *,
    host: str,
    port: int,
    seed: int,
    incident_every: float,
    data_dir: Path,
    console: Console,
    broker_choice: BrokerChoice = "auto",
    rules_path: Path | None = None,
) -> None:
    check_port_free(host, port)
    if broker_choice == "mosquitto" and not MosquittoBroker.available():
        raise DemoError("mosquitto is not on PATH (Debian: apt-get install mosquitto)")
    async with AsyncExitStack() as stack:
        mqtt_port = free_port()
        use_mosquitto = broker_choice == "mosquitto" or (
            broker_choice == "auto" and MosquittoBroker.available()
        )
        if use_mosquitto:
            broker = stack.enter_context(MosquittoBroker(port=mqtt_port))
            console.print(f"broker: mosquitto at {broker.url}")
        else:
            await stack.enter_async_context(embedded_broker("127.0.0.1", mqtt_port))
            console.print(f"broker: embedded amqtt at mqtt://127.0.0.1:{mqtt_port}")
        ingest = IngestSettings(
            mqtt_port=mqtt_port,
            dead_letter_path=data_dir / "dead_letters.jsonl",
            snapshot_path=data_dir / "rules.snapshot",
            rules_path=rules_path,
        )
        center = CenterSettings(
            database_url=f"sqlite+aiosqlite:///{data_dir / 'cases.db'}", host=host, port=port
        )
        store_url = None
        if VictoriaMetrics.available():
            store = stack.enter_context(VictoriaMetrics(data_dir / "victoria-metrics"))
            store_url = store.url
            console.print(f"time-series store: victoria-metrics at {store.url}")
        else:
            console.print("time-series store: none (victoria-metrics not installed); journal only")
        sinks = SinkSettings(recorder_dir=data_dir / "recordings", victoria_url=store_url)
        node = await stack.enter_async_context(build_node(ingest, center, sinks))
        city = build_city(seed=seed)
        tasks = city_tasks(
            city,
            mqtt_host="127.0.0.1",
            mqtt_port=mqtt_port,
            incident_every=incident_every,
            console=console,
        )
        tasks.update(node_tasks(node) | runtime_tasks())
        console.print(f"{describe(city)}; data in {data_dir}")
        password = await demo_operator(node.accounts)
        console.print(
            f"sign in as [bold]{DEMO_USER}[/], password [bold]{password}[/] (new at each start);"
            " more users: citysense users add NAME --role ROLE"
            f" --database-url {center.database_url}",
            soft_wrap=True,
        )
        console.print(f"[bold green]dashboard: http://{host}:{port}/[/]  (Ctrl-C stops everything)")
        tune()
        await serve_until_stopped(node.server(), tasks)


DEMO_USER = "operator"


async def demo_operator(accounts: Accounts) -> str:
    """The demo's own operator account with a fresh random password (the same account when the
    demo starts again on a --data-dir): it watches the dashboard and moves cases. No admin:
    the demo needs none, and ``citysense users`` makes one on its database if wanted."""
    password = secrets.token_urlsafe(12)
    try:
        await accounts.add_user(DEMO_USER, Role.OPERATOR, password)
    except AccountExistsError:
        await accounts.set_password(DEMO_USER, password)
    return password
