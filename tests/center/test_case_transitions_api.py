"""Moving cases through the 7 steps over the API (SQLite and PostgreSQL): the answers, the
audit trail, the system's own moves, and the sensor that never closes a case."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from center import Accounts, CaseBroadcaster, CaseService, CaseStore, create_app
from center.auth import Role
from center.case_log import CaseLog
from rules.alerts import Severity
from tests.center.auth import bearer, role_tokens
from tests.center.factories import DETECTED, T0, alert, cleared, sensor_info, transition

NOW = DETECTED + timedelta(minutes=10)


@pytest.fixture
def service(store: CaseStore) -> CaseService:
    return CaseService(store, CaseBroadcaster(), clock=lambda: NOW)


@pytest.fixture
async def client(service: CaseService, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    """Signed in as the operator 王工 (the actor of the moves below)."""
    tokens = await role_tokens(accounts, {Role.OPERATOR: "王工"})
    transport = httpx.ASGITransport(app=create_app(service, auth=accounts))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://center", headers=bearer(tokens[Role.OPERATOR])
    ) as client:
        yield client


async def _open(service: CaseService, severity: Severity = "urgent") -> int:
    await service.handle_alert(alert(severity=severity), sensor_info(), DETECTED)
    items, _ = await service.store.list_cases()
    return items[0].id


async def _move(
    client: httpx.AsyncClient, case_id: int, actor: str = "王工", **body: str
) -> httpx.Response:
    return await client.post(f"/api/v1/cases/{case_id}/transitions", json={"actor": actor, **body})


async def _history(client: httpx.AsyncClient, case_id: int) -> list[tuple[Any, ...]]:
    response = await client.get(f"/api/v1/cases/{case_id}/history")
    assert response.status_code == 200
    assert response.json()["case_id"] == case_id
    return [
        (h["actor"], h["action"], h["from_step"], h["to_step"], h["note"])
        for h in response.json()["items"]
    ]


async def test_an_urgent_case_is_registered_by_the_system_then_acknowledged_and_dispatched(
    client: httpx.AsyncClient, service: CaseService
) -> None:
    case_id = await _open(service, "urgent")
    case = (await client.get(f"/api/v1/cases/{case_id}")).json()
    assert (case["step"], case["status"], case["detected_late"]) == ("register", "open", False)
    assert (case["acknowledged_at"], case["acknowledged_by"]) == (None, None)
    assert case["next_actions"] == ["dismiss", "acknowledge", "dispatch"]
    history = await _history(client, case_id)
    assert [h[:4] for h in history] == [
        ("system", "discover", None, "discover"),
        ("system", "register", "discover", "register"),
    ]
    assert history[0][4] == "rule cover-tilt on st-1.cover-01"
    assert "urgent coordination center" in history[1][4]
    entries = (await client.get(f"/api/v1/cases/{case_id}/history")).json()["items"]
    assert {entry["at"] for entry in entries} == {"2026-07-01T08:01:00Z"}  # when it arrived

    acked = await _move(client, case_id, action="acknowledge", note="接警")
    assert acked.status_code == 200, acked.text
    assert (acked.json()["step"], acked.json()["acknowledged_by"]) == ("register", "王工")
    assert acked.json()["acknowledged_at"] == "2026-07-01T08:11:00Z"
    assert acked.json()["next_actions"] == ["dismiss", "dispatch"]
    again = await _move(client, case_id, action="acknowledge")
    assert (again.status_code, again.json()["detail"]) == (409, "the case is already acknowledged")
    sent = await _move(client, case_id, action="dispatch", note="金水区市政抢修队")
    assert sent.json()["step"] == "dispatch"
    assert [h[:5] for h in (await _history(client, case_id))[2:]] == [
        ("王工", "acknowledge", "register", "register", "接警"),
        ("王工", "dispatch", "register", "dispatch", "金水区市政抢修队"),
    ]


@pytest.mark.parametrize("severity", ["maintenance", "warning"])
async def test_other_cases_wait_at_discover_for_an_operator(
    client: httpx.AsyncClient, service: CaseService, severity: Severity
) -> None:
    case_id = await _open(service, severity)
    case = (await client.get(f"/api/v1/cases/{case_id}")).json()
    assert (case["step"], case["next_actions"]) == ("discover", ["register", "dismiss"])
    assert [entry[1] for entry in await _history(client, case_id)] == ["discover"]


async def test_the_whole_loop_by_action_and_by_step(
    client: httpx.AsyncClient, service: CaseService
) -> None:
    case_id = await _open(service, "maintenance")
    moves = [
        {"action": "register"},
        {"to": "dispatch", "note": "to 金水区 市政"},
        {"action": "handle"},
        {"to": "verify"},
        {"action": "rework", "note": "cover still rocks"},
        {"action": "verify"},
        {"action": "close", "note": "cover re-seated, sensor faulty"},  # the sensor alarms still
        {"to": "evaluate", "note": "按时处置"},
    ]
    steps = []
    for move in moves:
        response = await _move(client, case_id, **move)
        assert response.status_code == 200, response.text
        steps.append(response.json()["step"])
    assert steps == ["register", "dispatch", "handle", "verify", "handle", "verify", "close",
                     "evaluate"]  # fmt: skip
    history = await _history(client, case_id)
    assert [(h[1], h[2], h[3]) for h in history[1:]] == [
        ("register", "discover", "register"),
        ("dispatch", "register", "dispatch"),
        ("handle", "dispatch", "handle"),
        ("verify", "handle", "verify"),
        ("rework", "verify", "handle"),
        ("verify", "handle", "verify"),
        ("close", "verify", "close"),
        ("evaluate", "close", "evaluate"),
    ]
    assert {h[0] for h in history[1:]} == {"王工"}
    assert history[5][4] == "cover still rocks"
    entry = (await client.get(f"/api/v1/cases/{case_id}/history")).json()["items"][-1]
    assert entry["at"] == "2026-07-01T08:11:00Z"  # the service's clock
    case = (await client.get(f"/api/v1/cases/{case_id}")).json()
    assert (case["updated_at"], case["next_actions"]) == ("2026-07-01T08:11:00Z", ["reopen"])


async def test_a_refused_transition_is_409_with_the_reason_and_changes_nothing(
    client: httpx.AsyncClient, service: CaseService
) -> None:
    case_id = await _open(service, "urgent")
    assert (await _move(client, case_id, action="dispatch")).status_code == 200
    events_before = await service.store.newest_event_id()
    response = await _move(client, case_id, action="close")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "close needs the case at verify, it is at dispatch (allowed: handle)",
        "step": "dispatch",
        "action": "close",
        "allowed": ["handle"],
    }
    by_step = await _move(client, case_id, to="evaluate")
    assert by_step.status_code == 409
    assert by_step.json()["action"] is None
    assert by_step.json()["detail"].startswith("no action leads from dispatch to evaluate")
    no_note = await _move(client, case_id, action="handle")
    assert no_note.status_code == 200
    rework = await _move(client, case_id, action="redispatch")
    assert (rework.status_code, rework.json()["detail"]) == (
        409,
        "redispatch needs a note saying why",
    )
    assert (await client.get(f"/api/v1/cases/{case_id}")).json()["step"] == "handle"
    assert len(await _history(client, case_id)) == 4  # discover, register, dispatch, handle
    assert await service.store.newest_event_id() == events_before + 1  # the handle only


async def test_unknown_case_is_404(client: httpx.AsyncClient) -> None:
    moved = await _move(client, 999, action="register")
    assert (moved.status_code, moved.json()) == (404, {"detail": "case 999 not found"})
    history = await client.get("/api/v1/cases/999/history")
    assert (history.status_code, history.json()) == (404, {"detail": "case 999 not found"})


@pytest.mark.parametrize(
    "body",
    [
        {"actor": "王工"},  # neither action nor to
        {"actor": "王工", "action": "register", "to": "register"},  # both
        {"actor": "王工", "action": "teleport"},
        {"actor": "王工", "to": "limbo"},
        {"actor": "", "action": "register"},
        {"actor": " 王工", "action": "register"},
        {"actor": "system", "action": "register"},  # the center's own name
        {"actor": "System", "action": "register"},
        {"actor": "王工", "action": "register", "note": "x" * 1001},
        {"actor": "王工", "action": "register", "rating": 5},  # unknown field
    ],
)
async def test_a_bad_body_is_422(
    client: httpx.AsyncClient, service: CaseService, body: dict[str, Any]
) -> None:
    case_id = await _open(service, "maintenance")
    response = await client.post(f"/api/v1/cases/{case_id}/transitions", json=body)
    assert response.status_code == 422, response.text
    assert (await client.get(f"/api/v1/cases/{case_id}")).json()["step"] == "discover"


async def test_sensor_recovery_awaits_verification_and_never_closes(
    client: httpx.AsyncClient, service: CaseService
) -> None:
    opened = alert()
    case_id = await _open(service, "urgent")
    await service.handle_alert(cleared(opened), sensor_info(), DETECTED + timedelta(minutes=5))
    case = (await client.get(f"/api/v1/cases/{case_id}")).json()
    assert (case["status"], case["step"], case["awaiting_verification"]) == (
        "cleared",
        "register",
        True,
    )
    assert case["cleared_at"] == "2026-07-01T08:05:10Z"
    assert case["ended_before_seen"] is False
    assert len(await _history(client, case_id)) == 2  # the sensor moved no step
    for move in ({"action": "dispatch"}, {"action": "handle"}, {"action": "verify"}):
        assert (await _move(client, case_id, **move)).json()["awaiting_verification"] is True
    closed = (await _move(client, case_id, action="close")).json()  # no note: sensor agrees
    assert (closed["step"], closed["awaiting_verification"]) == ("close", False)


async def test_a_condition_back_reopens_a_closed_case_to_be_acknowledged_again(
    client: httpx.AsyncClient, service: CaseService
) -> None:
    opened = alert()
    case_id = await _open(service, "urgent")
    await service.handle_alert(cleared(opened), sensor_info(), DETECTED)
    for action in ("acknowledge", "dispatch", "handle", "verify", "close"):
        assert (await _move(client, case_id, action=action)).status_code == 200
    flapping = transition(opened, "flapping", timedelta(minutes=8), flags=("flapping",))
    await service.handle_alert(flapping, sensor_info(), flapping.at + timedelta(seconds=1))
    case = (await client.get(f"/api/v1/cases/{case_id}")).json()
    assert (case["status"], case["flapping"], case["step"]) == ("open", True, "register")
    assert (case["acknowledged_by"], case["ack_due_at"]) == (None, "2026-07-01T08:13:11Z")
    assert "acknowledge" in case["next_actions"]
    history = await _history(client, case_id)
    assert [(h[0], h[1], h[2], h[3]) for h in history[-2:]] == [
        ("王工", "close", "verify", "close"),
        ("system", "reopen", "close", "register"),
    ]


async def test_a_condition_back_on_an_open_case_moves_no_step(
    client: httpx.AsyncClient, service: CaseService
) -> None:
    opened = alert()
    case_id = await _open(service, "urgent")
    await service.handle_alert(cleared(opened), sensor_info(), DETECTED)
    for action in ("dispatch", "handle"):
        assert (await _move(client, case_id, action=action)).status_code == 200
    flapping = transition(opened, "flapping", timedelta(minutes=8), flags=("flapping",))
    await service.handle_alert(flapping, sensor_info(), DETECTED)
    case = (await client.get(f"/api/v1/cases/{case_id}")).json()
    assert (case["status"], case["step"], case["awaiting_verification"]) == (
        "open",
        "handle",
        False,
    )


async def test_a_transition_its_event_and_its_audit_entry_are_one_transaction(
    client: httpx.AsyncClient, service: CaseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = await _open(service, "maintenance")
    newest = await service.store.newest_event_id()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")  # after the step and the audit entry were written

    monkeypatch.setattr(CaseLog, "event", broken)
    response = await _move(client, case_id, action="register")
    assert response.status_code == 503
    monkeypatch.undo()
    assert (await client.get(f"/api/v1/cases/{case_id}")).json()["step"] == "discover"
    assert len(await _history(client, case_id)) == 1
    assert await service.store.newest_event_id() == newest


async def test_each_transition_is_an_event_with_its_audit_entry(
    client: httpx.AsyncClient, service: CaseService
) -> None:
    case_id = await _open(service, "maintenance")
    async with service.broadcaster.subscribe() as live:
        await _move(client, case_id, action="register", note="受理")
        published = await anext(live)
    (stored,) = await service.store.events_after(published.id - 1)
    assert stored == published
    assert (stored.type, stored.case.step, stored.at) == ("transition", "register", NOW)
    assert stored.transition is not None
    assert (stored.transition.actor, stored.transition.note) == ("王工", "受理")


async def test_cases_are_listed_by_arrival_not_by_device_clock(
    client: httpx.AsyncClient, service: CaseService
) -> None:
    ahead = alert(sensor_id="st-1.cover-01", started_at=T0 + timedelta(hours=3))  # clock ahead
    await service.handle_alert(ahead, sensor_info("st-1.cover-01"), DETECTED)
    later = alert(sensor_id="st-1.cover-02", started_at=T0)
    await service.handle_alert(later, sensor_info("st-1.cover-02"), DETECTED + timedelta(minutes=2))

    page = (await client.get("/api/v1/cases")).json()
    assert [c["sensor_id"] for c in page["items"]] == ["st-1.cover-02", "st-1.cover-01"]
    assert [(c["opened_at"], c["detected_at"]) for c in page["items"]] == [
        ("2026-07-01T08:00:10Z", "2026-07-01T08:03:00Z"),
        ("2026-07-01T11:00:10Z", "2026-07-01T08:01:00Z"),
    ]
    since = (await client.get("/api/v1/cases", params={"since": "2026-07-01T08:02:00Z"})).json()
    assert [c["sensor_id"] for c in since["items"]] == ["st-1.cover-02"]
