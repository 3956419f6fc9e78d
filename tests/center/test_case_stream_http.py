"""The live stream over real HTTP: a uvicorn server in-process, read with httpx streaming.

(httpx's ASGI transport buffers whole responses, so it cannot read an endless stream.)
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from center import CaseService, CenterServer, create_app
from tests.center.factories import DETECTED, alert, cleared, sensor_info


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningCenter:
    base_url: str
    server: CenterServer
    task: asyncio.Task[None]


@pytest.fixture
async def center(service: CaseService) -> AsyncIterator[RunningCenter]:
    port = _free_port()
    config = uvicorn.Config(
        create_app(service),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
    )
    server = CenterServer(config, service.broadcaster)
    task = asyncio.create_task(server.serve(), name="uvicorn")
    async with asyncio.timeout(5):
        while not server.started:
            assert not task.done(), "uvicorn stopped before it started"
            await asyncio.sleep(0.01)
    try:
        yield RunningCenter(f"http://127.0.0.1:{port}", server, task)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=5)


async def _frames(lines: AsyncIterator[str]) -> AsyncGenerator[dict[str, str]]:
    """Parse an SSE stream into {field: value} frames; comment lines are skipped."""
    fields: dict[str, str] = {}
    async for line in lines:
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


async def test_stream_delivers_opened_and_cleared(
    service: CaseService, center: RunningCenter
) -> None:
    opened = alert()
    async with (
        asyncio.timeout(10),
        httpx.AsyncClient(base_url=center.base_url) as client,
        client.stream("GET", "/api/v1/cases/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = _frames(response.aiter_lines())
        hello = await anext(frames)  # sent once the stream has subscribed
        assert hello == {"retry": "3000"}
        await service.handle_alert(opened, sensor_info(), DETECTED)
        await service.handle_alert(cleared(opened), sensor_info(), DETECTED)
        received = [await anext(frames), await anext(frames)]
        await frames.aclose()

    assert [event["event"] for event in received] == ["opened", "cleared"]
    first = json.loads(received[0]["data"])
    assert first["type"] == "opened"
    assert (first["case"]["class_code"], first["case"]["status"]) == ("0103", "open")
    assert received[0]["id"] == received[1]["id"] == str(first["case"]["id"])
    assert json.loads(received[1]["data"])["case"]["status"] == "cleared"


async def test_server_stops_with_a_stream_open(service: CaseService, center: RunningCenter) -> None:
    async with (
        asyncio.timeout(10),
        httpx.AsyncClient(base_url=center.base_url) as client,
        client.stream("GET", "/api/v1/cases/stream") as response,
    ):
        frames = _frames(response.aiter_lines())
        assert await anext(frames) == {"retry": "3000"}
        center.server.should_exit = True
        async with asyncio.timeout(3):
            await center.task
        assert [frame async for frame in frames] == []  # the stream ended cleanly
    assert service.broadcaster.subscriber_count == 0
