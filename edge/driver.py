"""The interface between the edge agent and the sensors behind a base station.

Implementations: ``simulator.fleet.SimulatedStation`` (simulated physics),
``edge.drivers.UdpGatewayDriver`` (a radio gateway's UDP/JSON feed), and
``edge.exception.ReportByException``, which wraps any of them. The rules for writing one are in
``docs/edge.md`` ("Sensor drivers").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from protocol import Reading, SensorInfo


class SensorDriver(Protocol):
    """Where readings come from: simulated sensors, a radio gateway's feed, a serial line.

    Both methods are called on the agent's event loop thread and must return promptly (well
    under a millisecond per sensor): a driver never blocks on I/O inside them. A driver that
    talks to hardware does its I/O in an asyncio task or protocol of its own (as
    ``UdpGatewayDriver`` does) or in an executor thread that hands readings over thread-safely
    (``loop.call_soon_threadsafe``), and ``read`` only hands over what was collected.

    The agent neither starts nor stops a driver. A driver holding sockets or ports is an async
    context manager that the caller enters before the agent runs; failing to start raises
    ``edge.drivers.DriverError``.

    Bad device data never raises: the driver refuses the reading, counts it by reason and logs
    it (rate-limited). An exception out of ``read`` stops the agent (the process exits and its
    supervisor restarts it), so raise only when the driver cannot go on.
    """

    def sensors(self) -> Sequence[SensorInfo]:
        """The sensors installed behind this station, announced in every birth message.

        Called at each (re)connect; cheap and stable. Every id is ``<station_id>.<local id>``
        and every reading ``read`` returns belongs to one of these sensors.
        """
        ...

    def read(self, ts: datetime) -> list[Reading]:
        """The readings taken since the last call, oldest first; often none.

        ``ts`` is the agent's clock at this sample (timezone-aware UTC). A polled driver, which
        measures now, stamps its readings with ``ts``. A push driver keeps the device's own
        time from the message, or stamps a reading with the gateway's receive time when the
        device sent none; it never stamps a later time than the one it received. Device clocks
        are not corrected at the edge: the center compares them with the batch's ``sent_at``.
        """
        ...
