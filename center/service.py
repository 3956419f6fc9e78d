"""The port ingest calls: an alert in, a stored case and a live event out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from center.broadcast import CaseBroadcaster
from center.errors import AlertRejectedError
from center.schemas import CaseEvent
from center.store import CaseStore
from protocol import SensorInfo
from rules.alerts import Alert

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CaseStats:
    """What became of the alerts handed to the service."""

    opened: int = 0
    duplicates: int = 0
    cleared: int = 0
    members: int = 0
    reopened: int = 0
    unmatched_clears: int = 0
    unmatched_changes: int = 0
    rejected: int = 0


class CaseService:
    """Turn alerts into cases: store first, then tell live subscribers."""

    def __init__(self, store: CaseStore, broadcaster: CaseBroadcaster) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.stats = CaseStats()

    async def handle_alert(
        self, alert: Alert, sensor: SensorInfo | None, detected_at: datetime
    ) -> None:
        """Record one alert transition.

        ``sensor`` is the registry's entry for ``alert.sensor_id`` (``None`` if unknown);
        ``detected_at`` is the wall time ingest saw the readings. Raises ``AlertRejectedError``
        for an alert that cannot become a case and ``StoreError`` when the store fails (the
        caller should not acknowledge the readings then: the retried alert is de-duplicated).
        """
        try:
            case = await self.store.record_alert(alert, sensor, detected_at)
        except AlertRejectedError as exc:
            self.stats.rejected += 1
            log.error("alert %s on %s rejected: %s", alert.rule_id, alert.sensor_id, exc)
            raise
        if alert.state == "open":
            if case is None:
                self.stats.duplicates += 1
                log.debug("duplicate alert %s on %s", alert.rule_id, alert.sensor_id)
                return
            self.stats.opened += 1
            log.info("case %d opened: %s %s", case.id, case.class_code, case.title)
            self.broadcaster.publish(CaseEvent(type="opened", case=case))
            return
        if alert.state in ("member", "flapping"):
            if case is None:
                self.stats.unmatched_changes += 1
                log.info(
                    "%s alert %s on %s has no case", alert.state, alert.rule_id, alert.sensor_id
                )
                return
            if alert.state == "member":
                self.stats.members += 1
                log.info("case %d: %s joined", case.id, alert.member_id)
                self.broadcaster.publish(CaseEvent(type="updated", case=case))
            else:
                self.stats.reopened += 1
                log.info("case %d re-opened: flapping", case.id)
                self.broadcaster.publish(CaseEvent(type="reopened", case=case))
            return
        if case is None:
            self.stats.unmatched_clears += 1
            log.info("cleared alert %s on %s has no open case", alert.rule_id, alert.sensor_id)
            return
        self.stats.cleared += 1
        log.info("case %d cleared", case.id)
        self.broadcaster.publish(CaseEvent(type="cleared", case=case))
