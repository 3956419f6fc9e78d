"""The UDP/JSON gateway feed over real loopback sockets: good readings arrive, bad ones are
refused with a reason and counted, nothing crashes, the buffer is bounded."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from edge.drivers import DriverError, UdpGatewayDriver, UdpSettings
from edge.drivers.feed import FEED_REJECT_REASONS
from protocol import SensorKind
from tests.factories import T0, sensor_info

COVER = sensor_info("st-1.cover-01", SensorKind.COVER)
PRESSURE = sensor_info("st-1.main-01", SensorKind.PRESSURE)
INVENTORY = [COVER, PRESSURE]
GATEWAY_TIME = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)


def cover(tilt: float = 1.5, **fields: Any) -> dict[str, Any]:
    reading = {
        "sensor_id": COVER.sensor_id,
        "kind": "cover",
        "ts": "2026-07-01T16:00:00.250+08:00",
        "values": {"tilt_deg": tilt, "battery_v": 3.58},
    }
    reading.update(fields)
    return reading


def pressure(mpa: float = 0.31) -> dict[str, Any]:
    return {
        "sensor_id": PRESSURE.sensor_id,
        "ts": "2026-07-01T08:00:01Z",
        "values": {"pressure_mpa": mpa},
    }


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


async def started(settings: UdpSettings | None = None) -> UdpGatewayDriver:
    driver = UdpGatewayDriver(
        INVENTORY, settings or UdpSettings(port=0), clock=lambda: GATEWAY_TIME
    )
    await driver.start()
    return driver


@pytest.fixture
async def driver() -> AsyncIterator[UdpGatewayDriver]:
    feed = await started()
    yield feed
    await feed.close()


async def send(sock: socket.socket, driver: UdpGatewayDriver, *datagrams: bytes) -> None:
    """Send each datagram and wait until the driver has handled all of them."""
    handled = driver.stats.messages + len(datagrams)
    for data in datagrams:
        sock.sendto(data, driver.address)
    for _ in range(600):  # the loop hands each datagram over on its next turn: 3 s at most
        if driver.stats.messages >= handled:
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"the driver handled {driver.stats.messages} of {handled} datagrams")


def as_json(document: object) -> bytes:
    return json.dumps(document).encode()


async def test_good_datagrams_become_readings_of_the_inventory(
    driver: UdpGatewayDriver, sender: socket.socket
) -> None:
    assert driver.sensors() == INVENTORY
    no_time = {"sensor_id": COVER.sensor_id, "values": {"tilt_deg": 2.0}}  # no kind, no ts
    await send(sender, driver, as_json(cover()), as_json([pressure(0.30), pressure(0.29)]))
    await send(sender, driver, as_json(no_time))

    readings = driver.read(T0)
    assert [(r.sensor_id, r.kind) for r in readings] == [
        (COVER.sensor_id, SensorKind.COVER),
        (PRESSURE.sensor_id, SensorKind.PRESSURE),
        (PRESSURE.sensor_id, SensorKind.PRESSURE),
        (COVER.sensor_id, SensorKind.COVER),
    ]
    assert readings[0].ts == datetime(2026, 7, 1, 8, 0, 0, 250_000, tzinfo=UTC)  # device time
    assert readings[0].values == {"tilt_deg": 1.5, "battery_v": 3.58}
    assert [r.values["pressure_mpa"] for r in readings[1:3]] == [0.30, 0.29]
    assert readings[3].ts == GATEWAY_TIME  # stamped on receipt: the device sent no time
    assert driver.stats.accepted == 4
    assert driver.stats.gateway_stamped == 1
    assert not driver.stats.rejected
    assert driver.read(T0) == []  # a read drains the buffer


BAD_DATAGRAMS: list[tuple[bytes, str]] = [
    (b"{", "not_json"),
    (b"\xff\xfe\x00garbage", "not_json"),
    (b"", "not_json"),
    (b"[" * 300 + b"]" * 300, "too_deep"),
    (as_json([{}] * 1001), "too_many"),
    (b"42", "invalid"),
    (b'"a string"', "invalid"),
    (as_json([1]), "invalid"),
    (as_json(cover(extra="field")), "invalid"),
    (as_json(cover(values={"tilt_deg": "1.5"})), "invalid"),
    (as_json(cover(values={"tilt_deg": True})), "invalid"),
    (as_json(cover(values={})), "invalid"),
    (b'{"sensor_id": "st-1.cover-01", "values": {"tilt_deg": NaN}}', "invalid"),
    (as_json(cover(sensor_id="st-1.cover-99")), "unknown_sensor"),
    (as_json(cover(sensor_id="st-2.cover-01")), "unknown_sensor"),
    (as_json(cover(sensor_id=None)), "unknown_sensor"),
    (as_json(cover(kind="pressure")), "kind_mismatch"),
    (as_json(cover(kind="volcano")), "kind_mismatch"),
    (as_json(cover(values={"tilt_deg": 1.0, "pressure_mpa": 0.3})), "unknown_value"),
    (as_json(cover(values={"battery_v": 3.6})), "missing_value"),
    (as_json(cover(ts="2026-07-01 08:00:00")), "bad_time"),
    (as_json(cover(ts=1_782_892_800)), "bad_time"),
    (as_json(cover(ts="2200-01-01T00:00:00Z")), "bad_time"),
    (as_json(cover(ts="yesterday")), "bad_time"),
]


async def test_malformed_datagrams_are_refused_by_reason_and_the_feed_goes_on(
    driver: UdpGatewayDriver, sender: socket.socket
) -> None:
    await send(sender, driver, *(data for data, _ in BAD_DATAGRAMS))
    expected = Counter(reason for _, reason in BAD_DATAGRAMS)
    assert driver.stats.rejected == expected
    assert set(expected) <= set(FEED_REJECT_REASONS)
    assert driver.read(T0) == []

    # One bad reading does not sink the good ones of the same datagram, nor later datagrams.
    mixed = as_json([cover(2.5), cover(sensor_id="st-1.nobody"), pressure()])
    await send(sender, driver, mixed, as_json(cover(3.0)))
    assert [r.values["tilt_deg"] for r in driver.read(T0) if r.kind is SensorKind.COVER] == [
        2.5,
        3.0,
    ]
    assert driver.stats.rejected["unknown_sensor"] == expected["unknown_sensor"] + 1
    assert driver.stats.accepted == 3


async def test_oversized_datagram_is_refused_before_parsing(sender: socket.socket) -> None:
    driver = await started(UdpSettings(port=0, max_datagram_bytes=256))
    try:
        await send(sender, driver, as_json([cover()] * 3), as_json(cover()))
        assert driver.stats.rejected == Counter({"too_large": 1})
        assert len(driver.read(T0)) == 1
    finally:
        await driver.close()


async def test_a_full_buffer_drops_the_oldest_readings_and_counts_them(
    sender: socket.socket,
) -> None:
    driver = await started(UdpSettings(port=0, buffer_readings=3))
    try:
        await send(sender, driver, as_json([cover(float(tilt)) for tilt in range(5)]))
        await send(sender, driver, as_json(cover(5.0)))
        assert [r.values["tilt_deg"] for r in driver.read(T0)] == [3.0, 4.0, 5.0]
        assert driver.stats.dropped == 3
        assert driver.stats.accepted == 6
    finally:
        await driver.close()


async def test_only_allowed_senders_are_read(sender: socket.socket) -> None:
    elsewhere = await started(
        UdpSettings.model_validate({"port": 0, "allow_from": ["10.20.0.0/16"]})
    )
    here = await started(UdpSettings.model_validate({"port": 0, "allow_from": ["127.0.0.1"]}))
    try:
        await send(sender, elsewhere, as_json(cover()))
        await send(sender, here, as_json(cover()))
        assert elsewhere.stats.rejected == Counter({"foreign_sender": 1})
        assert elsewhere.read(T0) == []
        assert len(here.read(T0)) == 1
    finally:
        await elsewhere.close()
        await here.close()


async def test_listens_on_loopback_by_default_and_reports_a_taken_port() -> None:
    assert UdpSettings().host == "127.0.0.1"
    driver = await started()
    try:
        host, port = driver.address
        assert host == "127.0.0.1"
        taken = UdpGatewayDriver(INVENTORY, UdpSettings(port=port))
        with pytest.raises(
            DriverError, match=f"cannot listen for the UDP feed on 127.0.0.1:{port}"
        ):
            await taken.start()
    finally:
        await driver.close()
    with pytest.raises(DriverError, match="not started"):
        _ = driver.address


def test_an_inventory_naming_a_sensor_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        UdpGatewayDriver([COVER, COVER])
