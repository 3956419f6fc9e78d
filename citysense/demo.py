"""`citysense demo`: a broker, one node (ingest + rules + center) and a simulated city."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from rich.console import Console

from center.settings import CenterSettings
from citysense.broker import MosquittoBroker, free_port
from citysense.embedded_broker import embedded_broker
from citysense.node import build_node, serve_until_stopped
from citysense.simulate import city_tasks, describe
from ingest.settings import IngestSettings
from simulator.city import build_city


async def run_demo(
    *, host: str, port: int, seed: int, incident_every: float, data_dir: Path, console: Console
) -> None:
    async with AsyncExitStack() as stack:
        mqtt_port = free_port()
        if MosquittoBroker.available():
            broker = stack.enter_context(MosquittoBroker(port=mqtt_port))
            console.print(f"broker: mosquitto at {broker.url}")
        else:
            await stack.enter_async_context(embedded_broker("127.0.0.1", mqtt_port))
            console.print(f"broker: embedded amqtt at mqtt://127.0.0.1:{mqtt_port}")
        ingest = IngestSettings(
            mqtt_port=mqtt_port, dead_letter_path=data_dir / "dead_letters.jsonl"
        )
        center = CenterSettings(
            database_url=f"sqlite+aiosqlite:///{data_dir / 'cases.db'}", host=host, port=port
        )
        node = await stack.enter_async_context(build_node(ingest, center))
        city = build_city(seed=seed)
        tasks = city_tasks(
            city,
            mqtt_host="127.0.0.1",
            mqtt_port=mqtt_port,
            incident_every=incident_every,
            console=console,
        )
        tasks["ingest"] = node.consumer.run()
        console.print(f"{describe(city)}; data in {data_dir}")
        console.print(f"[bold green]dashboard: http://{host}:{port}/[/]  (Ctrl-C stops everything)")
        await serve_until_stopped(node.server(), tasks)
