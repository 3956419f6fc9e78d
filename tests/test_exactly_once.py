"""At-least-once in, exactly-once stored: ``citysense serve`` killed with SIGKILL mid-stream,
VictoriaMetrics stopped for 30 s, the case database cut off; every batch the edge sent is
counted in the store, in the journal, and in the cases.

The de-duplication that makes the store exact is ours (journal replay and re-sent batches are
recognised by (station, boot, seq)) and VictoriaMetrics' own (``-dedup.minScrapeInterval``:
a point written twice with the same time is kept once), which production must enable too.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from citysense.broker import MosquittoBroker
from ingest.sinks.recorder import read_recorded
from protocol import StationTopic
from tests.center.conftest import throwaway_database
from tests.conftest import VictoriaMetrics
from tests.serve_process import NumberedEdge, api, metric, serve, serve_env, wait_for

pytestmark = pytest.mark.integration

COVERS = 5


def stored_seqs(victoria: VictoriaMetrics, station_id: str) -> list[int]:
    """Every batch sequence number the store holds for a station (one point per batch)."""
    series = victoria.export(f'{{__name__="citysense_batch_seq",station="{station_id}"}}')
    return sorted(int(v) for s in series for v in s["values"])  # type: ignore[attr-defined]


def stored_readings(victoria: VictoriaMetrics, station_id: str) -> int:
    series = victoria.export(f'{{__name__="cover_tilt_deg",station="{station_id}"}}')
    return sum(len(s["values"]) for s in series)  # type: ignore[arg-type]


def journal_seqs(journal: Path, station_id: str) -> Counter[int]:
    import json

    seqs: Counter[int] = Counter()
    for record in read_recorded(journal):
        if StationTopic.parse(record.topic).station_id == station_id and record.topic.endswith(
            "telemetry"
        ):
            seqs[json.loads(record.payload)["seq"]] += 1
    return seqs


def cases(env: dict[str, str]) -> list[dict[str, object]]:
    return list(api(env, "/api/v1/cases?limit=500")["items"])


def test_kill_9_mid_stream_every_batch_stored_exactly_once(
    mosquitto: MosquittoBroker, victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    station = f"st-once-{uuid.uuid4().hex[:6]}"
    env = serve_env(mosquitto, tmp_path, victoria_url=victoria.url)
    edge = NumberedEdge(mosquitto, station, covers=COVERS)
    total = 3000
    incident = range(1000, 1600)  # 6 s of event time with the first cover open

    def send(count: int) -> None:
        for _ in range(count):
            edge.publish(75.0 if edge.seq in incident else 1.0)
        edge.flush()

    try:
        with serve(env) as first:
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "first start")
            send(1000)  # faster than ingest takes it: a backlog when the kill comes
            wait_for(lambda: metric(env, "citysense_ingest_acknowledged_total") > 300, 30, "acks")
            first.send_signal(signal.SIGKILL)
        send(1000)  # the broker queues these for ingest's persistent session
        with serve(env):
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "restart")
            send(total - 2000)
            wait_for(lambda: len(stored_seqs(victoria, station)) >= total, 60, "all stored")
            time.sleep(1.0)  # anything late or doubled would show now
            assert stored_seqs(victoria, station) == list(range(total))
            assert stored_readings(victoria, station) == total * COVERS
            journal = journal_seqs(tmp_path / "journal", station)
            assert set(journal) == set(range(total))
            assert max(journal.values()) == 1, "a batch accepted twice"
            opened = wait_for(lambda: cases(env), 30, "the incident's case")
            assert [(c["sensor_id"], c["status"]) for c in opened] == [(edge.sensors[0], "cleared")]
    finally:
        edge.close()


@pytest.fixture
def private_broker() -> Iterator[MosquittoBroker]:
    """A broker of this test's own: the in-flight bound is checked on a broker that holds no
    retained births of earlier tests (the shared one redelivers them on every subscription)."""
    with MosquittoBroker() as broker:
        yield broker


def test_store_stopped_for_30s_ingest_holds_then_stores_everything_once(
    private_broker: MosquittoBroker, tmp_path: Path
) -> None:
    mosquitto = private_broker
    store = VictoriaMetrics(tmp_path / "vm")
    (tmp_path / "vm").mkdir()
    store.start()
    station = f"st-down-{uuid.uuid4().hex[:6]}"
    env = serve_env(
        mosquitto,
        tmp_path,
        victoria_url=store.url,
        CITYSENSE_SINK_RETRY_ATTEMPTS="2",
        CITYSENSE_SINK_RETRY_MAX_S="0.5",
    )
    edge = NumberedEdge(mosquitto, station, covers=COVERS)
    try:
        with serve(env):
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "start")
            for _ in range(200):
                edge.publish()
            edge.flush()
            wait_for(lambda: len(stored_seqs(store, station)) == 200, 30, "before the outage")
            store.stop()
            for _ in range(800):
                edge.publish()
            edge.flush()
            wait_for(
                lambda: metric(env, "citysense_ingest_stalled", dependency="sink"), 30, "stall"
            )
            acked = metric(env, "citysense_ingest_acknowledged_total")
            in_flight = []
            for _ in range(25):  # 30 s outage in all
                time.sleep(1)
                in_flight.append(metric(env, "citysense_ingest_in_flight"))
            assert metric(env, "citysense_ingest_acknowledged_total") == acked  # nothing acked
            assert max(in_flight) <= 1000  # the broker's max_inflight_messages (broker_config)
            health = api_status(env)
            assert health == 503
            store.start()
            wait_for(lambda: len(stored_seqs(store, station)) >= 1000, 60, "after the outage")
            time.sleep(1.0)
            assert stored_seqs(store, station) == list(range(1000))
            assert stored_readings(store, station) == 1000 * COVERS
            assert metric(env, "citysense_ingest_stalled", dependency="sink") == 0
    finally:
        edge.close()
        store.stop()


def api_status(env: dict[str, str]) -> int:
    import urllib.error

    try:
        api(env, "/api/v1/health")
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


class Cuttable:
    """A TCP proxy in front of PostgreSQL that the test can cut and restore."""

    def __init__(self, target_port: int) -> None:
        from citysense.broker import free_port

        self.port = free_port()
        self.target_port = target_port
        self.open = True
        self._loop = asyncio.new_event_loop()
        self._connections: list[asyncio.StreamWriter] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(5)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._connections += [writer, up_writer]

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    def cut(self) -> None:
        def close_all() -> None:
            self.open = False
            for connection in self._connections:
                connection.close()
            self._connections.clear()

        self._loop.call_soon_threadsafe(close_all)

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()


@pytest.fixture
def cuttable_database() -> Iterator[tuple[str, Cuttable]]:
    """A throw-away PostgreSQL database reached through a proxy the test can cut."""
    with throwaway_database() as url:
        proxy = Cuttable(url.port or 5432)
        try:
            through = url.set(host="127.0.0.1", port=proxy.port)
            yield through.render_as_string(hide_password=False), proxy
        finally:
            proxy.close()


def _database_away_then_one_case(
    env: dict[str, str],
    edge: NumberedEdge,
    *,
    away: Callable[[], object],
    back: Callable[[], object],
    hold_s: float,
    while_away: Callable[[], None],
) -> None:
    """100 batches taken; the case database goes ``away``; an incident (400 batches) and 100
    more: ingest stalls and acknowledges nothing for ``hold_s`` (``while_away`` checks the
    rest); ``back``: every batch taken, the incident's one case appears."""
    with serve(env):
        wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "start")
        for _ in range(100):
            edge.publish()
        edge.flush()
        wait_for(lambda: metric(env, "citysense_ingest_acknowledged_total") >= 101, 30, "acks")
        away()
        for _ in range(400):  # an incident while the database is away
            edge.publish(75.0)
        for _ in range(100):
            edge.publish()
        edge.flush()
        wait_for(lambda: metric(env, "citysense_ingest_stalled", dependency="center"), 30, "stall")
        acked = metric(env, "citysense_ingest_acknowledged_total")
        time.sleep(hold_s)
        assert metric(env, "citysense_ingest_acknowledged_total") == acked  # holding
        while_away()
        back()
        wait_for(lambda: metric(env, "citysense_ingest_acknowledged_total") >= 601, 60, "acks")
        opened = wait_for(lambda: cases(env), 30, "the case")
        assert [(c["sensor_id"], c["status"]) for c in opened] == [(edge.sensors[0], "cleared")]
        assert metric(env, "citysense_ingest_batches_total") == 600


def test_case_database_cut_off_ingest_holds_then_the_cases_appear(
    mosquitto: MosquittoBroker, cuttable_database: tuple[str, Cuttable], tmp_path: Path
) -> None:
    url, proxy = cuttable_database
    station = f"st-db-{uuid.uuid4().hex[:6]}"
    env = serve_env(mosquitto, tmp_path, CITYSENSE_CENTER_DATABASE_URL=url)
    edge = NumberedEdge(mosquitto, station, covers=COVERS)

    def unhealthy() -> None:
        assert api_status(env) == 503

    try:
        _database_away_then_one_case(
            env, edge, away=proxy.cut, back=proxy.restore, hold_s=10, while_away=unhealthy
        )
    finally:
        edge.close()


def test_overload_three_times_the_sustained_rate_then_half_loses_and_doubles_nothing(
    mosquitto: MosquittoBroker, victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    """Publishers at 3× what ingest sustains (measured first, in the same run), then at half
    of it; accounting by sequence number at the end: every batch stored once, none twice. The
    broker's queue (``max_queued_messages`` in broker_config/) absorbs the backlog; gaps it would
    cause are counted by ingest (``citysense_ingest_gaps``) and must be zero here."""
    station = f"st-load-{uuid.uuid4().hex[:6]}"
    env = serve_env(mosquitto, tmp_path, victoria_url=victoria.url)
    edge = NumberedEdge(mosquitto, station, covers=COVERS)
    try:
        with serve(env) as node:
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "start")
            # what ingest sustains: a burst pre-filled while ingest is paused (its session stays
            # up), timed from its resumption to the last acknowledgement
            base = metric(env, "citysense_ingest_acknowledged_total")
            node.send_signal(signal.SIGSTOP)
            for _ in range(3000):
                edge.publish()
            edge.flush()
            started = time.monotonic()
            node.send_signal(signal.SIGCONT)
            wait_for(
                lambda: metric(env, "citysense_ingest_acknowledged_total") >= base + 3000,
                120,
                "the burst",
            )
            sustained = 3000 / (time.monotonic() - started)
            for rate, seconds in ((3 * sustained, 10.0), (sustained / 2, 10.0)):
                _paced(edge, rate, seconds)
            sent = edge.seq
            wait_for(lambda: len(stored_seqs(victoria, station)) >= sent, 300, "drained")
            time.sleep(1.0)
            assert stored_seqs(victoria, station) == list(range(sent))
            journal = journal_seqs(tmp_path / "journal", station)
            assert (len(journal), max(journal.values())) == (sent, 1)
            assert metric(env, "citysense_ingest_gaps", station=station) == 0
            print(f"ingest sustained {sustained:.0f} batches/s; {sent} batches, 0 lost, 0 twice")
    finally:
        edge.close()


def _paced(edge: NumberedEdge, rate: float, seconds: float) -> None:
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(rate * elapsed)
        while sent < due:
            edge.publish()
            sent += 1
        time.sleep(0.005)
    edge.flush()


LOCK_HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")  # the write lock; readers (WAL) go on
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""


class LockHolder:
    """Another process holding SQLite's write lock on ``database`` from ``lock`` to
    ``release``."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.process: subprocess.Popen[str] | None = None

    def lock(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, self.database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write("release\n")
        self.process.stdin.flush()
        assert self.process.wait(timeout=10) == 0

    def close(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def test_case_database_locked_by_another_process_ingest_holds_then_the_case_appears(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """SQLite's counterpart of the cut-off: another process (a backup, an admin's ``sqlite3``)
    holds the write lock for 15 s. The case writes (on the case store's writer thread) fail
    after SQLite's 5 s busy timeout, ingest stalls and stops acknowledging; once the lock is
    released the incident's one case appears and every batch is taken."""
    station = f"st-lock-{uuid.uuid4().hex[:6]}"
    env = serve_env(mosquitto, tmp_path)
    database = make_url(env["CITYSENSE_CENTER_DATABASE_URL"]).database
    assert database is not None
    edge = NumberedEdge(mosquitto, station, covers=COVERS)
    holder = LockHolder(database)

    def nothing_written() -> None:
        assert cases(env) == []  # reads go on (WAL): nothing written

    try:
        _database_away_then_one_case(
            env, edge, away=holder.lock, back=holder.release, hold_s=5, while_away=nothing_written
        )
    finally:
        holder.close()
        edge.close()
