"""The urgent-handling center: alerts become cases, stored, moved through GB/T 30428's 7 steps
(``center.lifecycle``) with an audit trail, served over HTTP and streamed live (resumable).

The composition root builds the pieces in this order::

    await migrate(settings.database_url)
    engine = create_engine(settings.database_url)
    store = CaseStore(engine, late_after=settings.detected_late_after)
    service = CaseService(store, CaseBroadcaster())
    accounts = Accounts(AccountStore(engine), session_ttl=settings.session_ttl)
    app = create_app(service, auth=accounts, secure_cookies=settings.production, ...)

serves it with ``CenterServer(uvicorn.Config(app, ...), service.broadcaster)`` (which ends live
streams when it stops, else uvicorn waits on open dashboards), and finally ``store.close()``
(its writer thread) and ``await engine.dispose()``.
"""

from center.app import create_app
from center.auth import Accounts, AccountStore
from center.broadcast import CaseBroadcaster
from center.case_log import CaseChange
from center.db import create_engine
from center.errors import (
    AlertRejectedError,
    CaseNotFoundError,
    CenterError,
    MigrationError,
    StoreError,
    TransitionRefusedError,
)
from center.lifecycle import Action, Step
from center.migrate import migrate
from center.schemas import (
    CaseEvent,
    CaseHistory,
    CaseOut,
    CasePage,
    EvidencePoint,
    TransitionIn,
    TransitionOut,
)
from center.server import CenterServer
from center.service import CaseService, CaseStats
from center.settings import CenterSettings
from center.store import CaseStore

__all__ = [
    "AccountStore",
    "Accounts",
    "Action",
    "AlertRejectedError",
    "CaseBroadcaster",
    "CaseChange",
    "CaseEvent",
    "CaseHistory",
    "CaseNotFoundError",
    "CaseOut",
    "CasePage",
    "CaseService",
    "CaseStats",
    "CaseStore",
    "CenterError",
    "CenterServer",
    "CenterSettings",
    "EvidencePoint",
    "MigrationError",
    "Step",
    "StoreError",
    "TransitionIn",
    "TransitionOut",
    "TransitionRefusedError",
    "create_app",
    "create_engine",
    "migrate",
]
