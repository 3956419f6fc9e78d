"""The urgent-handling center: alerts become cases, stored, served over HTTP and streamed live.

The composition root builds the pieces in this order::

    await migrate(settings.database_url)
    engine = create_engine(settings.database_url)
    service = CaseService(CaseStore(engine), CaseBroadcaster())
    app = create_app(service, health=..., metrics=...)

serves it with ``CenterServer(uvicorn.Config(app, ...), service.broadcaster)`` (which ends live
streams when it stops, else uvicorn waits on open dashboards), and finally
``await engine.dispose()``.
"""

from center.app import create_app
from center.broadcast import CaseBroadcaster
from center.db import create_engine
from center.errors import AlertRejectedError, CenterError, MigrationError, StoreError
from center.migrate import migrate
from center.schemas import CaseEvent, CaseOut, CasePage, EvidencePoint
from center.server import CenterServer
from center.service import CaseService, CaseStats
from center.settings import CenterSettings
from center.store import CaseStore

__all__ = [
    "AlertRejectedError",
    "CaseBroadcaster",
    "CaseEvent",
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
    "StoreError",
    "create_app",
    "create_engine",
    "migrate",
]
