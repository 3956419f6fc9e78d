"""The interface between the edge agent and the sensors behind a base station."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from protocol import Reading, SensorInfo


class SensorDriver(Protocol):
    """Where readings come from: simulated sensors today, radio gateways later.

    ``read`` is called on the event loop once per sample interval and must return promptly; a
    driver that blocks on hardware should hand its work to an executor itself.
    """

    def sensors(self) -> Sequence[SensorInfo]:
        """The sensors installed behind this station, announced in the birth message."""
        ...

    def read(self, ts: datetime) -> list[Reading]:
        """One reading per sensor that has one, stamped with the device time ``ts``."""
        ...
