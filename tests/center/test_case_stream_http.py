"""The live stream over real HTTP: a uvicorn server in-process, read with httpx streaming.

(httpx's ASGI transport buffers whole responses, so it cannot read an endless stream.)
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import uvicorn

from center import Accounts, Action, CaseService, CenterServer, create_app
from center.api import cases as cases_api
from center.auth import AuthMiddleware, Role
from tests.center.auth import PASSWORD, bearer
from tests.center.factories import DETECTED, T0, alert, cleared, open_acknowledged, sensor_info


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
    token: str
    """A viewer's."""

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=bearer(self.token))


@pytest.fixture
async def center(
    service: CaseService, accounts: Accounts, tokens: dict[Role, str]
) -> AsyncIterator[RunningCenter]:
    port = _free_port()
    config = uvicorn.Config(
        create_app(service, auth=accounts),
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
        yield RunningCenter(f"http://127.0.0.1:{port}", server, task, tokens[Role.VIEWER])
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


async def test_stream_delivers_events_with_their_ids(
    service: CaseService, center: RunningCenter
) -> None:
    opened = alert()
    async with (
        asyncio.timeout(10),
        center.client() as client,
        client.stream("GET", "/api/v1/cases/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = _frames(response.aiter_lines())
        hello = await anext(frames)  # sent once the stream has subscribed
        assert hello == {"id": "0", "retry": "3000"}  # no event yet: resume after 0
        case = await open_acknowledged(service, opened, DETECTED, sensor=sensor_info())
        await service.handle_alert(cleared(opened), sensor_info(), DETECTED)
        received = [await anext(frames) for _ in range(4)]
        await frames.aclose()

    assert [event["event"] for event in received] == [
        "opened",
        "transition",
        "transition",
        "recovered",
    ]
    first = json.loads(received[0]["data"])
    assert first["type"] == "opened"
    assert (first["case"]["class_code"], first["case"]["status"]) == ("0103", "open")
    ids = [int(event["id"]) for event in received]
    assert ids == sorted(set(ids))
    assert [json.loads(event["data"])["id"] for event in received] == ids
    last = json.loads(received[3]["data"])["case"]
    assert (last["status"], last["step"], last["awaiting_verification"]) == (
        "cleared",
        "register",
        True,
    )
    assert last["acknowledged_by"] == case.acknowledged_by == "值班员"


async def _read(
    where: RunningCenter | httpx.AsyncClient,
    count: int,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, int] | None = None,
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Connect (to a base URL or with a client), read the hello frame and ``count`` events,
    disconnect."""
    if isinstance(where, RunningCenter):
        async with where.client() as client:
            return await _read(client, count, headers=headers, params=params)
    async with (
        asyncio.timeout(10),
        where.stream("GET", "/api/v1/cases/stream", headers=headers, params=params) as answer,
    ):
        assert answer.status_code == 200
        frames = _frames(answer.aiter_lines())
        hello = await anext(frames)
        events = [await anext(frames) for _ in range(count)]
        await frames.aclose()
    return hello, events


async def _stored_ids(service: CaseService, after: int) -> list[int]:
    return [event.id for event in await service.store.events_after(after, 10_000)]


async def _open_and_clear(service: CaseService, n: int) -> None:
    """Four events: opened, registered, acknowledged, recovered."""
    opened = alert(sensor_id=f"st-1.cover-{n:02d}", started_at=T0 + timedelta(minutes=n))
    sensor = sensor_info(opened.sensor_id)
    await open_acknowledged(service, opened, DETECTED, sensor=sensor)
    await service.handle_alert(cleared(opened), sensor, DETECTED)


async def test_resume_with_last_event_id_gets_every_missed_event_once(
    service: CaseService, center: RunningCenter
) -> None:
    await _open_and_clear(service, 0)  # 4 events before the client ever connects
    hello, seen = await _read(center, 0)
    start = int(hello["id"])
    assert start == (await service.store.newest_event_id()) == 4
    await _open_and_clear(service, 1)
    _, seen = await _read(center, 2, headers={"Last-Event-ID": str(start)})
    last = int(seen[-1]["id"])  # the client saw 2 of the 4, then lost its connection

    await _open_and_clear(service, 2)  # while it is away
    case_id = json.loads(seen[0]["data"])["case"]["id"]
    await service.transition(case_id, action=Action.DISPATCH, actor="crew-7")
    missed = await _stored_ids(service, last)
    assert len(missed) == 2 + 4 + 1

    _, resumed = await _read(center, len(missed), headers={"Last-Event-ID": str(last)})
    assert [int(event["id"]) for event in resumed] == missed
    assert resumed[-1]["event"] == "transition"
    assert json.loads(resumed[-1]["data"])["transition"]["actor"] == "crew-7"
    for _ in range(500):  # every client that left is unsubscribed
        if not service.broadcaster.subscriber_count:
            break
        await asyncio.sleep(0.01)
    assert service.broadcaster.subscriber_count == 0


async def test_a_client_away_for_30_s_resumes_with_every_event_it_missed_once(
    service: CaseService, center: RunningCenter
) -> None:
    """The acceptance's case, in real time: a client reads, goes away for 30 s while cases
    open, recover and move every few seconds, and resumes with its last id."""
    await _open_and_clear(service, 0)
    hello, _ = await _read(center, 0)
    await _open_and_clear(service, 1)
    _, seen = await _read(center, 3, headers={"Last-Event-ID": hello["id"]})
    last = int(seen[-1]["id"])  # it saw 3 of the 4, then went away
    away_until = asyncio.get_running_loop().time() + 30
    n = 2
    while asyncio.get_running_loop().time() < away_until:
        await _open_and_clear(service, n)
        n += 1
        await asyncio.sleep(min(5.0, max(0.0, away_until - asyncio.get_running_loop().time())))
    missed = await _stored_ids(service, last)
    assert len(missed) == 1 + 4 * (n - 2) >= 1 + 4 * 6
    _, resumed = await _read(center, len(missed), headers={"Last-Event-ID": str(last)})
    assert [int(event["id"]) for event in resumed] == missed  # every one, once, in order


async def test_resume_by_query_parameter_and_the_header_wins(
    service: CaseService, center: RunningCenter
) -> None:
    await _open_and_clear(service, 0)
    await _open_and_clear(service, 1)
    _, by_query = await _read(center, 3, params={"last_event_id": 5})
    assert [int(event["id"]) for event in by_query] == [6, 7, 8]
    _, both = await _read(center, 1, headers={"Last-Event-ID": "7"}, params={"last_event_id": 2})
    assert [int(event["id"]) for event in both] == [8]


async def test_an_id_beyond_the_newest_replays_nothing_and_skips_nothing(
    service: CaseService, center: RunningCenter
) -> None:
    await _open_and_clear(service, 0)
    async with (
        asyncio.timeout(10),
        center.client() as client,
        client.stream("GET", "/api/v1/cases/stream", headers={"Last-Event-ID": "9999"}) as answer,
    ):
        frames = _frames(answer.aiter_lines())
        assert (await anext(frames))["id"] == "4"  # another database's id: start at the newest
        await _open_and_clear(service, 1)
        assert [(await anext(frames))["id"] for _ in range(4)] == ["5", "6", "7", "8"]
        await frames.aclose()


@pytest.mark.parametrize("value", ["abc", "-1"])
async def test_a_bad_resume_id_is_422(center: RunningCenter, value: str) -> None:
    async with center.client() as client:
        header = await client.get("/api/v1/cases/stream", headers={"Last-Event-ID": value})
        query = await client.get("/api/v1/cases/stream", params={"last_event_id": value})
    assert (header.status_code, query.status_code) == (422, 422)


async def test_resume_while_events_keep_coming_misses_none_and_repeats_none(
    service: CaseService, center: RunningCenter
) -> None:
    """Clients drop and resume while a writer keeps making events: across every switch from
    the log to the live broadcast, each client sees exactly the events the table holds."""
    writing = asyncio.Event()

    async def writer() -> None:
        for n in range(30):
            await _open_and_clear(service, n)
            writing.set()
            await asyncio.sleep(0)

    async def follower(chunk: int) -> list[int]:
        seen: list[int] = []
        await writing.wait()
        headers: dict[str, str] = {"Last-Event-ID": "0"}
        async with center.client() as client:
            while len(seen) < 120:  # 30 cases x 4 events, `chunk` per connection
                _, events = await _read(client, min(chunk, 120 - len(seen)), headers=headers)
                seen.extend(int(event["id"]) for event in events)
                headers = {"Last-Event-ID": str(seen[-1])}
        return seen

    task = asyncio.create_task(writer())
    results = await asyncio.gather(*(follower(chunk) for chunk in (2, 5, 11, 50)))
    await task
    stored = await _stored_ids(service, 0)
    assert len(stored) == 120
    for seen in results:
        assert seen == stored


async def test_server_stops_with_a_stream_open(service: CaseService, center: RunningCenter) -> None:
    async with (
        asyncio.timeout(10),
        center.client() as client,
        client.stream("GET", "/api/v1/cases/stream") as response,
    ):
        frames = _frames(response.aiter_lines())
        assert await anext(frames) == {"id": "0", "retry": "3000"}
        center.server.should_exit = True
        async with asyncio.timeout(3):
            await center.task
        assert [frame async for frame in frames] == []  # the stream ended cleanly
    assert service.broadcaster.subscriber_count == 0


async def test_the_stream_follows_a_browser_session_and_refuses_no_credential(
    service: CaseService, center: RunningCenter, accounts: Accounts
) -> None:
    """EventSource sends the session cookie: the dashboard streams with it."""
    await accounts.add_user("ana", Role.VIEWER, PASSWORD)
    async with httpx.AsyncClient(base_url=center.base_url) as browser:
        nobody = await browser.get("/api/v1/cases/stream")
        assert (nobody.status_code, nobody.headers["content-type"]) == (401, "application/json")
        signed_in = await browser.post(
            "/api/v1/session", json={"username": "ana", "password": PASSWORD}
        )
        cookie = {"Cookie": f"citysense_session={signed_in.cookies['citysense_session']}"}
        async with (
            asyncio.timeout(10),
            browser.stream("GET", "/api/v1/cases/stream", headers=cookie) as answer,
        ):
            assert answer.status_code == 200
            frames = _frames(answer.aiter_lines())
            assert (await anext(frames))["id"] == "0"
            await service.handle_alert(alert(), sensor_info(), DETECTED)
            assert (await anext(frames))["event"] == "opened"
            await frames.aclose()


@pytest.mark.parametrize("ended_by", ["revoking the token", "signing out", "disabling the user"])
async def test_a_stream_ends_once_its_credential_lapses(
    service: CaseService,
    center: RunningCenter,
    accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
    ended_by: str,
) -> None:
    monkeypatch.setattr(AuthMiddleware, "stream_recheck_s", 0.0)  # at every chunk, not a minute
    await accounts.add_user("ana", Role.VIEWER, PASSWORD)
    token, record = await accounts.issue_token("ana", "t", Role.VIEWER)
    async with httpx.AsyncClient(base_url=center.base_url) as client:
        if ended_by == "signing out":
            signed_in = await client.post(
                "/api/v1/session", json={"username": "ana", "password": PASSWORD}
            )
            headers = {"Cookie": f"citysense_session={signed_in.cookies['citysense_session']}"}
        else:
            headers = bearer(token)
        async with (
            asyncio.timeout(10),
            client.stream("GET", "/api/v1/cases/stream", headers=headers) as answer,
        ):
            frames = _frames(answer.aiter_lines())
            assert (await anext(frames))["id"] == "0"
            await _open_and_clear(service, 0)
            assert (await anext(frames))["event"] == "opened"
            if ended_by == "revoking the token":
                await accounts.revoke_token(record.id)
            elif ended_by == "signing out":
                assert (await client.delete("/api/v1/session", headers=headers)).status_code == 204
            else:
                await accounts.disable("ana")
            await _open_and_clear(service, 1)
            rest = [frame async for frame in frames]
        assert len(rest) <= 3  # what was on its way; the stream ended at the next check
        again = await client.get("/api/v1/cases/stream", headers=headers)
        assert again.status_code == 401


async def test_an_idle_stream_sends_keepalive_comments(
    center: RunningCenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream writes ``: ping`` after 15 s without a frame: proxies keep the connection,
    and a client sees a dead one. Here every 0.2 s, to see a few."""
    assert cases_api.KEEPALIVE_S == 15.0  # what docs/cases.md promises
    monkeypatch.setattr(cases_api, "KEEPALIVE_S", 0.2)
    lines: list[str] = []
    async with (
        center.client() as client,
        client.stream("GET", "/api/v1/cases/stream") as response,
    ):
        assert response.status_code == 200
        async with asyncio.timeout(5):
            async for line in response.aiter_lines():
                lines.append(line)
                if lines.count(": ping") == 2:
                    break
    assert lines[0] == ": connected"
    assert lines.count(": ping") == 2
