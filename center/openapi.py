"""Write the HTTP API's OpenAPI document, as the running center serves it at /openapi.json.

    python -m center.openapi > docs/openapi.json

The committed document is checked against the code by the test suite.
"""

from __future__ import annotations

import json
from typing import Any

from center.app import create_app
from center.auth import Accounts, AccountStore
from center.broadcast import CaseBroadcaster
from center.db import create_engine
from center.service import CaseService
from center.store import CaseStore


def build_document() -> dict[str, Any]:
    # The engine is never connected: building the app only needs the service's shape.
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    service = CaseService(CaseStore(engine), CaseBroadcaster())
    app = create_app(service, auth=Accounts(AccountStore(engine)), health=dict, metrics=bytes)
    return app.openapi()


def render() -> str:
    return json.dumps(build_document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
