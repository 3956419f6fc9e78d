"""schemathesis against the OpenAPI document, the app in-process (ASGI), on SQLite and
PostgreSQL: every check on (the CLI's ``--checks all``: no 5xx, only documented status codes,
bodies that match their schemas, valid data accepted, invalid data refused…), its phases
(examples, coverage, fuzzing, stateful), a bounded number of examples, seeded and
derandomized so that CI sees the same requests every run.

The run signs in as an admin with an API token (``tests/center/auth.py``), so every route is
reached past the access check; the access table itself is ``test_auth_routes.py``'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.python.asgi import shutdown_lifespans
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from center import CaseBroadcaster, CaseService, CaseStore, create_app, create_engine
from center.auth import Role
from ingest.dead_letters import JsonlDeadLetters
from ingest.registry import StationRegistry
from tests.center.auth import accounts_on, bearer, role_tokens
from tests.center.factories import DETECTED, T0, alert, rules_control, sensor_info

MAX_EXAMPLES = 20
"""Per operation and phase: about 1,500 requests a backend, about 20 s."""
SEED = 30428
ASKED_WITH = {"last-event-id", "content-type"}
"""Request headers shown with a failure."""
REFUSING = ["/api/v1/rules", "/api/v1/rules/shadow", "/api/v1/users", "/api/v1/tokens"]
"""Their 422 also refuses what the document cannot describe: a rule file (YAML, the rules'
meaning), a weak password, a token of a role above its user's."""


@dataclass
class Found:
    """What a run did: requests sent, and each failure as ``operation check status``."""

    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)

    def report(self) -> str:
        lines = [f"{self.requests} requests, {sum(self.failures.values())} failures"]
        lines += [f"{n} x {key}: {self.samples.get(key, '')}" for key, n in self.failures.items()]
        return "\n".join(lines)


def run(schema: schemathesis.BaseSchema) -> Found:
    found = Found()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            found.requests += len(recorder.interactions)
            for case_id, checks in recorder.checks.items():
                for check in (c for c in checks if c.status == Status.FAILURE):
                    interaction = recorder.interactions.get(case_id)
                    response = None if interaction is None else interaction.response
                    status = None if response is None else response.status_code
                    key = f"{recorder.label} {check.name} {status}"
                    found.failures[key] += 1
                    if interaction is not None:
                        request = interaction.request
                        body = request.body if request.body is None else request.body[:200]
                        headers = {
                            k: v for k, v in request.headers.items() if k.lower() in ASKED_WITH
                        }
                        found.samples.setdefault(
                            key, f"{request.method} {request.uri} {headers} {body!r}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found.failures[f"error: {event}"] += 1
    return found


@pytest.fixture
async def app_and_token(database_url: str, tmp_path: Path) -> tuple[FastAPI, str]:
    """The app with every optional part, on a store with three cases; an admin's token.

    schemathesis calls the app on an event loop of its own (a thread) and an asyncpg
    connection belongs to one loop: the cases and accounts are made here through an engine
    without a pool, and the app's engine is disposed on the app's loop, as its lifespan ends.
    """
    setup = create_async_engine(database_url, poolclass=NullPool)
    service = CaseService(CaseStore(setup), CaseBroadcaster(), clock=lambda: DETECTED)
    for n in range(3):
        opened = alert(sensor_id=f"st-1.cover-{n:02d}", started_at=T0 + timedelta(minutes=n))
        await service.handle_alert(opened, sensor_info(opened.sensor_id), DETECTED)
    tokens = await role_tokens(accounts_on(setup))
    await setup.dispose()
    letters = JsonlDeadLetters(tmp_path / "dead_letters.jsonl")
    letters.write("citysense/v1/stations/st-1/telemetry", b"{", "not_json", "", DETECTED)
    engine = create_engine(database_url)
    app = create_app(
        CaseService(CaseStore(engine), CaseBroadcaster(), clock=lambda: DETECTED),
        auth=accounts_on(engine),
        health=dict,
        metrics=bytes,
        registry=StationRegistry(),
        rejects=letters,
        rules=rules_control(tmp_path),
    )

    own = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with own(app) as state:
            yield state
        await engine.dispose()

    app.router.lifespan_context = lifespan
    return app, tokens[Role.ADMIN]


# Hypothesis warns when it renders a large generated request for its report (seen once in a
# full run, on the SSE stream); a remark about the report, not a failure of the API.
@pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
def test_the_api_keeps_to_its_document(app_and_token: tuple[FastAPI, str]) -> None:
    app, token = app_and_token
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": bearer(token),
            "max-stream-events": 1,
            "request-timeout": 10,
            "operations": [
                # The stream never ends: what it sent within 0.2 s is its answer.
                {"include-path": "/api/v1/cases/stream", "request-timeout": 0.2},
                {
                    "include-path": REFUSING,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422"]
                        }
                    },
                },
            ],
            "cache": {"enabled": False},
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "mode": "all",
                # Parameters it does not know are ignored, as HTTP wants for headers: a request
                # is not invalid for carrying one.
                "allow-extra-parameters": False,
            },
        }
    )
    try:
        schema = schemathesis.openapi.from_asgi(
            "/openapi.json", app, config=config, headers=bearer(token)
        )
        found = run(schema)
    finally:
        shutdown_lifespans()  # on the app's loop: disposes its engine
    print(found.report())  # the numbers, with -s
    assert found.requests > 500
    assert not found.failures, found.report()
