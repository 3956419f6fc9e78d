"""A local UDP/JSON gateway feed: readings pushed by the radio gateway of a base station.

An NB-IoT or LoRa gateway (or the vendor's decoder behind it) sends each uplink it decodes as
one datagram of JSON readings (format: ``edge.drivers.feed``). The driver listens on loopback
by default, checks every reading against the contract and the station's inventory, and keeps
the good ones in a bounded buffer until the agent reads them; when the buffer is full the
oldest go first, counted in ``stats.dropped``. Refusals are counted by reason in
``stats.rejected`` and logged at most once a minute per reason. Bad input never raises.

Use it as an async context manager: the socket is bound on entry and closed on exit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork

from edge.drivers.feed import FeedDecoder, FeedStats, Rejected
from protocol import Reading, SensorInfo

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0


class DriverError(RuntimeError):
    """A driver cannot start: its port is taken, its address is wrong."""


class UdpSettings(BaseModel):
    """The ``udp`` section of the edge settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    """Bind address; loopback unless the gateway is another machine (then set ``allow_from``)."""
    port: int = Field(default=17900, ge=0, le=65535)
    """0 picks a free port (tests)."""
    buffer_readings: int = Field(default=10_000, ge=1)
    """Readings held between two reads of the agent; the oldest are dropped beyond it."""
    max_datagram_bytes: int = Field(default=65_507, ge=64, le=65_507)
    allow_from: list[IPvAnyNetwork] = Field(default_factory=list)
    """Senders (addresses or networks) whose datagrams are read; empty: any sender."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class UdpGatewayDriver:
    """Implements ``edge.driver.SensorDriver`` for readings pushed over UDP."""

    def __init__(
        self,
        sensors: Sequence[SensorInfo],
        settings: UdpSettings | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or UdpSettings()
        self._inventory = list(sensors)
        self._decoder = FeedDecoder(sensors, max_bytes=self.settings.max_datagram_bytes)
        self._buffer: deque[Reading] = deque()
        self._clock = clock
        self._monotonic = monotonic
        self._warned: dict[str, float] = {}
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def stats(self) -> FeedStats:
        return self._decoder.stats

    @property
    def address(self) -> tuple[str, int]:
        """Where the driver listens (the port chosen when ``port`` was 0)."""
        if self._transport is None:
            raise DriverError("the UDP driver is not started")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        where = f"{self.settings.host}:{self.settings.port}"
        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Receiver(self), local_addr=(self.settings.host, self.settings.port)
            )
        except OSError as exc:
            raise DriverError(f"cannot listen for the UDP feed on {where}: {exc}") from None

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def sensors(self) -> Sequence[SensorInfo]:
        return self._inventory

    def read(self, ts: datetime) -> list[Reading]:
        """Every reading received since the last read, in arrival order, with its own time.

        ``ts`` (the agent's sampling time) is not used: each reading carries its device time,
        or the gateway's receive time when the device sent none.
        """
        readings = list(self._buffer)
        self._buffer.clear()
        return readings

    def receive(self, data: bytes, sender: str) -> list[Rejected]:
        """Handle one datagram from ``sender`` (an IP address); returns what was refused."""
        if self.settings.allow_from and not _allowed(sender, self.settings.allow_from):
            rejects = [self._decoder.refuse("foreign_sender", f"datagram from {sender}")]
        else:
            readings, rejects = self._decoder.decode(data, self._clock())
            self._keep(readings)
        for rejected in rejects:
            total = self.stats.rejected[rejected.reason]
            self._warn(f"refused as {rejected.reason}", total, f"from {sender}: {rejected.detail}")
        return rejects

    def _keep(self, readings: list[Reading]) -> None:
        self._buffer.extend(readings)
        excess = len(self._buffer) - self.settings.buffer_readings
        if excess > 0:
            for _ in range(excess):
                self._buffer.popleft()
            self.stats.dropped += excess
            limit = self.settings.buffer_readings
            self._warn("dropped", self.stats.dropped, f"buffer full at {limit} readings")

    def _warn(self, what: str, total: int, detail: str) -> None:
        """Log a refusal or a drop: a warning at most once a minute per kind, else debug."""
        now = self._monotonic()
        if now - self._warned.get(what, -math.inf) < WARN_EVERY_S:
            log.debug("udp feed: %s: %s", what, detail)
            return
        self._warned[what] = now
        log.warning("udp feed: %d %s so far; latest %s", total, what, detail)


def _allowed(sender: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        address = ipaddress.ip_address(sender.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, driver: UdpGatewayDriver) -> None:
        self._driver = driver

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        try:
            self._driver.receive(data, str(addr[0]))
        except Exception:  # the feed outlives any bug in one datagram's handling
            self._driver.stats.rejected["internal_error"] += 1
            log.exception("udp feed: datagram from %s not handled", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.warning("udp feed: socket error %s", exc)
