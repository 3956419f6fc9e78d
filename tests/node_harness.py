"""A whole node (ingest + rules + center on a free HTTP port) against a test broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from center.auth import AccountExistsError, Role
from center.settings import CenterSettings
from citysense.broker import MosquittoBroker, free_port
from citysense.node import Node, build_node, node_tasks, serve_until_stopped
from ingest.settings import IngestSettings
from ingest.sinks.settings import SinkSettings


@asynccontextmanager
async def serving_node(
    broker: MosquittoBroker,
    data_dir: Path,
    tasks: Mapping[str, Coroutine[Any, Any, None]] | None = None,
    *,
    rules_path: Path | None = None,
    allowed_lateness_s: float = 6.0,
    victoria_url: str | None = None,
    center_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[Node]:
    """Serve a fresh node (own SQLite, own ingest client id) with extra named tasks;
    ``center_options`` are more ``CenterSettings`` (delivery, escalation...)."""
    ingest = IngestSettings(
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        dead_letter_path=data_dir / "dead_letters.jsonl",
        snapshot_path=data_dir / "rules.snapshot",
        rules_path=rules_path,
        allowed_lateness_s=allowed_lateness_s,
    )
    center = CenterSettings(
        database_url=f"sqlite+aiosqlite:///{data_dir / 'cases.db'}",
        port=free_port(),
        **(center_options or {}),
    )
    sinks = SinkSettings(recorder_dir=data_dir / "journal", victoria_url=victoria_url)
    async with build_node(ingest, center, sinks) as node:
        server = node.server()
        running = {**node_tasks(node), **(tasks or {})}
        serving = asyncio.create_task(serve_until_stopped(server, running))
        try:
            yield node
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, timeout=10)


def base_url(node: Node) -> str:
    return f"http://127.0.0.1:{node.center.port}"


async def node_token(node: Node, role: Role = Role.ADMIN) -> str:
    """A new API token of ``role`` on the node's database (its user ``test-<role>``)."""
    name = f"test-{role.value}"
    with contextlib.suppress(AccountExistsError):  # a node restarted on the same data
        await node.accounts.add_user(name, role, None)
    token, _ = await node.accounts.issue_token(name, "tests", role)
    return token


async def node_client(node: Node, role: Role = Role.ADMIN, **options: Any) -> httpx.AsyncClient:
    """An HTTP client of the serving node, signed in with a token of ``role``."""
    token = await node_token(node, role)
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=base_url(node), headers=headers, **options)
