"""VictoriaSink against a real VictoriaMetrics (points read back through its export API) and
against a scripted stub for the answers VictoriaMetrics does not give on demand (429, 503)."""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from citysense.broker import free_port
from ingest.errors import BatchKey, PermanentSinkError, TransientSinkError
from ingest.sinks.victoria import RetryPolicy, VictoriaSink, parse_retry_after
from protocol import Reading, SensorKind, TelemetryBatch
from tests.conftest import VictoriaMetrics
from tests.factories import T0, batch, tilt
from tests.ingest.sinks.stub_http import Reply, stub_store

FAST = RetryPolicy(attempts=3, initial_s=0.001, maximum_s=0.002, max_retry_after_s=60)


class Sleeps(list[float]):
    async def __call__(self, delay: float) -> None:
        self.append(delay)


def station() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def readings_batch(station_id: str, n: int, seq: int = 0) -> TelemetryBatch:
    sensor = f"{station_id}.cover-01"
    readings = [tilt(100 * seq + i, i, sensor) for i in range(n)]
    return batch(readings, seq=seq, station_id=station_id)


def sink(url: str, sleeps: Sleeps | None = None, **options: object) -> VictoriaSink:
    sleep = Sleeps() if sleeps is None else sleeps
    return VictoriaSink(url, retry=FAST, sleep=sleep, **options)  # type: ignore[arg-type]


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.integration
async def test_points_are_read_back_with_tags_fields_and_device_times(
    victoria: VictoriaMetrics,
) -> None:
    st = station()
    cover = Reading(
        sensor_id=f"{st}.cover-01",
        kind=SensorKind.COVER,
        ts=T0 + timedelta(milliseconds=250),
        values={"tilt_deg": 12.5, "battery_v": 3.6},
    )
    pressure = Reading(
        sensor_id=f"{st}.main-7", kind=SensorKind.PRESSURE, ts=T0, values={"pressure_mpa": 0.31}
    )
    received = T0 + timedelta(seconds=3)
    async with sink(victoria.url) as vm:
        await vm.write_batch(batch([cover, pressure], seq=4, station_id=st), received)
        await vm.flush()
        assert vm.pending_points == 0

    series = {s["metric"]["__name__"]: s for s in victoria.export(f'{{station="{st}"}}')}  # type: ignore[index]
    t0_ms = int(T0.timestamp() * 1000)
    assert series["cover_tilt_deg"]["metric"] == {
        "__name__": "cover_tilt_deg",
        "station": st,
        "sensor": f"{st}.cover-01",
    }
    assert (series["cover_tilt_deg"]["values"], series["cover_tilt_deg"]["timestamps"]) == (
        [12.5],
        [t0_ms + 250],
    )
    assert series["cover_battery_v"]["values"] == [3.6]
    assert series["pressure_pressure_mpa"]["metric"]["sensor"] == f"{st}.main-7"  # type: ignore[index]
    assert series["pressure_pressure_mpa"]["timestamps"] == [t0_ms]
    batch_fields = {
        name.removeprefix("citysense_batch_"): s["values"]
        for name, s in series.items()
        if name.startswith("citysense_batch_")
    }
    assert batch_fields == {
        "readings": [2],
        "seq": [4],
        "sent_at": [T0.timestamp() + 0.25],
        "received_at": [received.timestamp()],
        "transit_s": [2.75],
        "age_s": [3],
    }
    assert series["citysense_batch_transit_s"]["metric"] == {
        "__name__": "citysense_batch_transit_s",
        "station": st,
    }
    assert series["citysense_batch_transit_s"]["timestamps"] == [t0_ms + 250]  # sent_at


@pytest.mark.integration
@pytest.mark.parametrize(
    "value", [1e-05, 1e-300, 1.7976931348623157e308, -0.0, -273.15, 3.0, 123456789.123, 0.1 + 0.2]
)
async def test_every_float_reads_back_as_itself(victoria: VictoriaMetrics, value: float) -> None:
    """The fields are the values as msgspec writes them in JSON (``0.00001``, ``1e-300``).
    VictoriaMetrics keeps a decimal mantissa of about 15 digits, so 0.1 + 0.2 reads back as 0.3
    and subnormals such as 5e-324 as 0: equal to that precision is what it can promise."""
    st = station()
    reading = Reading(
        sensor_id=f"{st}.p", kind=SensorKind.PRESSURE, ts=T0, values={"pressure_mpa": value}
    )
    async with sink(victoria.url) as vm:
        await vm.write_batch(batch([reading], station_id=st), T0)
        await vm.flush()
    series = {s["metric"]["__name__"]: s for s in victoria.export(f'{{station="{st}"}}')}  # type: ignore[index]
    (stored,) = series["pressure_pressure_mpa"]["values"]
    assert math.isclose(float(stored), value, rel_tol=1e-14)


@pytest.mark.integration
async def test_a_resent_batch_is_stored_once(victoria: VictoriaMetrics) -> None:
    st = station()
    sent = readings_batch(st, 3)
    async with sink(victoria.url) as vm:
        for _ in range(2):  # at-least-once: the broker redelivered it
            await vm.write_batch(sent, T0)
            await vm.flush()
    (tilts,) = victoria.export(f'{{__name__="cover_tilt_deg",station="{st}"}}')
    assert tilts["values"] == [0, 1, 2]
    (batches,) = victoria.export(f'{{__name__="citysense_batch_seq",station="{st}"}}')
    assert batches["values"] == [0]


@pytest.mark.integration
async def test_a_stopped_store_keeps_everything_buffered_until_it_is_back(
    tmp_path: Path,
) -> None:
    server = VictoriaMetrics(tmp_path).start()
    st = station()
    try:
        vm = sink(server.url, flush_interval_s=3600)
        await vm.write_batch(readings_batch(st, 3, seq=0), T0)
        await vm.flush()
        server.stop()
        await vm.write_batch(readings_batch(st, 3, seq=1), T0)
        with pytest.raises(TransientSinkError) as caught:
            await vm.flush()
        assert caught.value.attempts == FAST.attempts
        assert vm.pending_points == 4
        server.start()
        await vm.flush()
        await vm.aclose()
        (series,) = server.export(f'{{__name__="citysense_batch_seq",station="{st}"}}')
        assert series["values"] == [0, 1]
        (tilts,) = server.export(f'{{__name__="cover_tilt_deg",station="{st}"}}')
        assert len(tilts["values"]) == 6  # type: ignore[arg-type]
    finally:
        server.stop()


async def test_unreachable_store_gives_transient_error_after_the_retries() -> None:
    sleeps = Sleeps()
    vm = sink(closed_url(), sleeps, flush_interval_s=3600)
    await vm.write_batch(readings_batch("st-1", 2), T0)
    with pytest.raises(TransientSinkError) as caught:
        await vm.flush()
    assert "NewConnectionError" in caught.value.detail
    assert len(sleeps) == FAST.attempts - 1
    assert vm.pending_points == 3
    assert vm.stats.transient_failures == 1
    with pytest.raises(TransientSinkError):
        await vm.aclose()


async def test_a_batch_whose_write_fails_is_not_held_by_the_sink() -> None:
    vm = sink(closed_url(), flush_interval_s=3600, batch_points=5)
    await vm.write_batch(readings_batch("st-1", 2, seq=0), T0)
    await vm.write_batch(readings_batch("st-1", 2, seq=1), T0)  # a full chunk: posted behind
    await vm.idle()
    with pytest.raises(TransientSinkError):  # the failed post surfaces on the next call
        await vm.write_batch(readings_batch("st-1", 2, seq=2), T0)
    assert vm.pending_points == 6  # the first two are kept; the caller redelivers the third
    assert vm.stats.transient_failures == 1


async def test_a_full_buffer_refuses_new_batches_while_the_store_is_down() -> None:
    vm = sink(closed_url(), flush_interval_s=3600, batch_points=30, max_buffered_points=30)
    for seq in range(2):
        await vm.write_batch(readings_batch("st-1", 10, seq=seq), T0)
    with pytest.raises(TransientSinkError):
        await vm.write_batch(readings_batch("st-1", 10, seq=2), T0)
    assert vm.pending_points == 22


@pytest.mark.integration
async def test_victorias_400_is_a_permanent_refusal_with_its_reason(
    victoria: VictoriaMetrics,
) -> None:
    sleeps = Sleeps()
    vm = sink(f"{victoria.url}/not-a-write-path", sleeps)
    refused = readings_batch("st-1", 2, seq=5)
    await vm.write_batch(refused, T0)
    with pytest.raises(PermanentSinkError) as caught:
        await vm.flush()
    assert caught.value.reason == "http_400"
    assert "unsupported path" in caught.value.detail
    assert caught.value.batches == (BatchKey("st-1", 1, 5),)
    assert sleeps == []
    assert vm.pending_points == 0
    assert vm.stats.points_refused == 3


@pytest.mark.parametrize("status", [400, 401, 404, 413])
async def test_any_4xx_but_429_is_permanent(status: int) -> None:
    with stub_store(Reply(status, "unable to parse 'x': missing fields")) as store:
        vm = sink(store.url)
        await vm.write_batch(readings_batch("st-1", 1), T0)
        with pytest.raises(PermanentSinkError) as caught:
            await vm.flush()
    assert caught.value.reason == f"http_{status}"
    assert "missing fields" in caught.value.detail
    assert len(store.bodies) == 1


async def test_429_waits_as_long_as_retry_after_says() -> None:
    sleeps = Sleeps()
    with stub_store(Reply(429, "slow down", {"Retry-After": "3"})) as store:
        vm = sink(store.url, sleeps)
        await vm.write_batch(readings_batch("st-1", 2), T0)
        await vm.flush()
    assert sleeps == [3.0]
    assert len(store.bodies) == 2
    assert store.bodies[0] == store.bodies[1]
    assert vm.stats.points_written == 3


async def test_5xx_is_retried_with_backoff_then_written() -> None:
    sleeps = Sleeps()
    with stub_store(Reply(503), Reply(500)) as store:
        vm = sink(store.url, sleeps)
        await vm.write_batch(readings_batch("st-1", 2), T0)
        await vm.flush()
    assert len(sleeps) == 2
    assert all(0 < delay <= FAST.maximum_s for delay in sleeps)
    assert len(store.bodies) == 3


async def test_a_retry_after_beyond_the_cap_goes_to_the_caller_at_once() -> None:
    sleeps = Sleeps()
    with stub_store(Reply(503, headers={"Retry-After": "120"})) as store:
        vm = sink(store.url, sleeps)
        await vm.write_batch(readings_batch("st-1", 2), T0)
        with pytest.raises(TransientSinkError) as caught:
            await vm.flush()
    assert (caught.value.retry_after, caught.value.attempts, sleeps) == (120.0, 1, [])
    assert vm.pending_points == 3
    assert len(store.bodies) == 1


async def test_chunks_are_whole_batches_gzipped_to_the_v2_write_path() -> None:
    with stub_store() as store:
        vm = sink(store.url, batch_points=25, flush_interval_s=3600)
        for seq in range(5):
            await vm.write_batch(readings_batch("st-1", 10, seq=seq), T0)
        await vm.idle()
        assert len(store.bodies) == 2  # two chunks of two batches (22 points) went out
        await vm.aclose()
    assert [body.count(b"\n") + 1 for body in store.bodies] == [22, 22, 11]
    assert all(path.startswith("/api/v2/write?") for path in store.paths)
    assert "precision=ns" in store.paths[0]
    assert store.encodings == ["gzip"] * 3


async def test_full_chunks_are_posted_while_ingest_goes_on() -> None:
    slow = threading.Event()
    with stub_store(Reply(204, hold=slow)) as store:
        vm = sink(store.url, batch_points=5, flush_interval_s=3600)
        await vm.write_batch(readings_batch("st-1", 2, seq=0), T0)
        await vm.write_batch(readings_batch("st-1", 2, seq=1), T0)  # a chunk: posted behind
        await vm.write_batch(readings_batch("st-1", 2, seq=2), T0)  # not waiting for the store
        assert vm.pending_points == 9
        slow.set()
        await vm.flush()
        assert vm.pending_points == 0
        await vm.aclose()
    assert [body.count(b"\n") + 1 for body in store.bodies] == [3, 3, 3]


async def test_a_flush_sends_what_was_buffered_when_called_not_what_comes_meanwhile() -> None:
    first, later = threading.Event(), threading.Event()
    with stub_store(Reply(204, hold=first), Reply(204), Reply(204, hold=later)) as store:
        vm = sink(store.url, batch_points=5, flush_interval_s=3600)
        await vm.write_batch(readings_batch("st-1", 2, seq=0), T0)
        await vm.write_batch(readings_batch("st-1", 2, seq=1), T0)  # a chunk: posted behind
        flushing = asyncio.create_task(vm.flush())  # for seqs 0 and 1
        await asyncio.sleep(0.05)
        for seq in (2, 3):  # handled meanwhile: full chunks for the background post
            await vm.write_batch(readings_batch("st-1", 2, seq=seq), T0)
        first.set()
        await asyncio.wait_for(flushing, 5)  # while the store still holds seq 2's post
        assert vm.pending_points == 6
        later.set()
        await vm.aclose()
    assert [body.count(b"\n") + 1 for body in store.bodies] == [3, 3, 3, 3]


async def test_the_flush_interval_posts_a_partial_chunk() -> None:
    now = [0.0]
    with stub_store() as store:
        vm = sink(store.url, flush_interval_s=1.0, monotonic=lambda: now[0])
        await vm.write_batch(readings_batch("st-1", 2, seq=0), T0)
        assert store.bodies == []
        now[0] = 1.5
        await vm.write_batch(readings_batch("st-1", 2, seq=1), T0)
        await vm.idle()
        assert len(store.bodies) == 1
        assert vm.pending_points == 0
        await vm.aclose()


async def test_gzip_can_be_turned_off() -> None:
    with stub_store() as store:
        async with sink(store.url, gzip=False) as vm:
            await vm.write_batch(readings_batch("st-1", 1), T0)
    assert store.encodings == [None]
    assert store.bodies[0].startswith(b"cover,station=st-1,")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("Wed, 01 Jul 2026 08:00:30 GMT", 30.0),
        ("soon", None),
        ("nan", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    assert parse_retry_after(header, now) == seconds
