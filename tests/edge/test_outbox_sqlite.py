"""The SQLite outbox across restarts, ``kill -9``, torn WAL writes and damaged records."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge import outbox_sqlite
from edge.identity import next_boot
from edge.outbox import OutboxError, OutboxLimits, Priority
from edge.outbox_sqlite import SqliteOutbox
from tests.edge.outbox_helpers import BOOT, T0, FakeClock, batch_size, numbers, readings

ROOT = Path(__file__).resolve().parents[2]


def _open(path: Path, clock: FakeClock, boot: int = BOOT, **options: object) -> SqliteOutbox:
    return SqliteOutbox(path, boot_epoch=boot, clock=clock, **options)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_restart_keeps_sealed_batches_their_seq_and_boot(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "outbox.db"
    limits = OutboxLimits(max_bytes=20 * batch_size(1))
    with _open(path, clock, limits=limits, max_batch=3, window=2) as outbox:
        outbox.put(readings(0, 8))
        outbox.put(readings(100, 1), Priority.ALARM)
        first, second = outbox.take()
        assert outbox.ack(first.seq)
        outbox.put(readings(8, 20))  # over max_bytes: an eviction, a marker and counters
        before = outbox.stats
        markers = outbox.pending_gaps()
    assert before.evicted_readings > 0

    with _open(path, clock, boot=BOOT + 1, limits=limits, max_batch=3, window=2) as reopened:
        stats = reopened.stats
        assert (stats.readings, stats.bytes, stats.next_seq) == (
            before.readings,
            before.bytes,
            before.next_seq,
        )
        assert (stats.evicted_readings, stats.retained_batches) == (
            before.evicted_readings,
            before.retained_batches,
        )
        assert reopened.pending_gaps() == markers
        assert reopened.resend(first.seq, first.seq).batches == (first,)
        again = reopened.take(1)
        assert again == [second]  # same seq, same boot, same bytes: ingest drops it if it had it
        assert reopened.ack(second.seq)
        (fresh,) = reopened.take(1)
        assert (fresh.seq, fresh.boot_epoch) == (before.next_seq, BOOT + 1)
        reopened.put(readings(200, 40))  # evictions after the restart: a marker of the new boot
        assert [m.boot_epoch for m in reopened.pending_gaps()] == [BOOT] * len(markers) + [BOOT + 1]


def test_reading_ids_never_come_back_after_the_tables_emptied(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Sealing is a watermark on reading ids: a reused id would look sealed already."""
    path = tmp_path / "outbox.db"
    with _open(path, clock, limits=OutboxLimits(retain_bytes=0)) as outbox:
        outbox.put(readings(0, 3))
        (batch,) = outbox.take()
        outbox.ack(batch.seq)  # leaves the retention window at once: the table is empty
    with _open(path, clock) as reopened:
        reopened.put(readings(3, 2))
        assert len(reopened) == 2
        assert [numbers(b) for b in reopened.take()] == [[3, 4]]


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_puts_and_seals_are_fsynced_only_at_full(
    tmp_path: Path, clock: FakeClock, synchronous: str
) -> None:
    with _open(tmp_path / "o.db", clock, synchronous=synchronous) as outbox:

        def mode() -> int:
            return int(outbox._db.execute("PRAGMA synchronous").fetchone()[0])

        outbox.put(readings(0, 2))
        assert mode() == (2 if synchronous == "FULL" else 1)  # 2 = FULL, 1 = NORMAL
        (batch,) = outbox.take()
        assert mode() == (2 if synchronous == "FULL" else 1)
        outbox.ack(batch.seq)
        assert mode() == 1  # an ack lost to a power cut only re-sends a batch under its seq
        assert len(outbox) == 0


def _flip(path: Path, needle: bytes, replacement: bytes) -> None:
    data = path.read_bytes()
    assert data.count(needle) == 1, f"{needle!r} found {data.count(needle)} times"
    path.write_bytes(data.replace(needle, replacement))


def test_a_damaged_reading_is_skipped_counted_and_announced(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "outbox.db"
    with _open(path, clock) as outbox:
        outbox.put(readings(0, 4) + readings(0, 1, sensor="st-1.cover-77") + readings(5, 4))
    _flip(path, b"cover-77", b"cover-78")  # still valid JSON: only the CRC can tell
    with _open(path, clock) as reopened:
        (batch,) = reopened.take()
        assert numbers(batch) == [0, 1, 2, 3, 5, 6, 7, 8]
        assert reopened.stats.corrupt_records == 1
        (marker,) = reopened.pending_gaps()
        assert (marker.reason, marker.readings, marker.first_ts) == ("corrupt", 1, T0)
        assert reopened.stats.evicted_readings == 1


def test_a_damaged_reading_in_a_sealed_batch_is_skipped(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "outbox.db"
    with _open(path, clock) as outbox:
        outbox.put(readings(0, 2) + readings(0, 1, sensor="st-1.cover-77"))
        (sealed,) = outbox.take()
    _flip(path, b"cover-77", b"cover-78")
    with _open(path, clock) as reopened:
        (again,) = reopened.take()
        assert (again.seq, numbers(again)) == (sealed.seq, [0, 1])
        assert reopened.stats.corrupt_records == 1
        assert [m.reason for m in reopened.pending_gaps()] == ["corrupt"]


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_a_torn_wal_tail_loses_only_the_torn_transaction(
    tmp_path: Path, clock: FakeClock, damage: str
) -> None:
    """A copy of the files taken while the outbox is open is what a power cut leaves."""
    live, cut = tmp_path / "live", tmp_path / "cut"
    live.mkdir()
    cut.mkdir()
    with _open(live / "o.db", clock) as outbox:
        outbox.put(readings(0, 5))
        wal = live / "o.db-wal"
        size_after_first = wal.stat().st_size
        outbox.put(readings(5, 5))
        assert wal.stat().st_size > size_after_first
        for name in ("o.db", "o.db-wal"):
            shutil.copyfile(live / name, cut / name)
    torn = cut / "o.db-wal"
    if damage == "truncate":
        with torn.open("r+b") as file:
            file.truncate(torn.stat().st_size - 1000)
    else:
        data = bytearray(torn.read_bytes())
        data[size_after_first + 100] ^= 0xFF
        torn.write_bytes(bytes(data))
    with _open(cut / "o.db", clock) as recovered:
        assert len(recovered) == 5
        assert [numbers(b) for b in recovered.take()] == [[0, 1, 2, 3, 4]]


def test_a_file_that_is_no_database_is_set_aside(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not an SQLite file, it is what a bad card leaves" * 200)
    with _open(path, clock) as outbox:
        (marker,) = outbox.pending_gaps()
        assert marker.reason == "store_lost"
        assert outbox.stats.corrupt_records == 1
        outbox.put(readings(0, 2))
        assert len(outbox.take()) == 1
    with _open(path, clock) as reopened:  # the loss stays on record until announced
        assert reopened.stats.corrupt_records == 1
        assert [m.reason for m in reopened.pending_gaps()] == ["store_lost"]
    assert [p.name for p in tmp_path.glob("outbox.db.corrupt-*")] == [
        f"outbox.db.corrupt-{int(T0.timestamp())}"
    ]


def test_a_locked_file_is_an_error_never_set_aside(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_sqlite, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "outbox.db"
    with _open(path, clock) as outbox:
        outbox.put(readings(0, 2))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OutboxError, match="locked"):
            _open(path, clock)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with _open(path, clock) as again:
        assert len(again) == 2
    assert list(tmp_path.glob("*.corrupt-*")) == []


WRITER = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from edge.identity import next_boot
from edge.outbox import OutboxLimits
from edge.outbox_sqlite import SqliteOutbox
from tests.edge.outbox_helpers import numbers, readings

work, start = Path(sys.argv[1]), int(sys.argv[2])
boot = next_boot(work / "boot.json", datetime.now(UTC)).boot_epoch
outbox = SqliteOutbox(work / "outbox.db", boot_epoch=boot, max_batch=7, window=3)
progress = open(work / f"progress-{start}", "w")
sent = open(work / "sent.jsonl", "a")
print(boot, flush=True)
n, late = start, None
while True:
    outbox.put(readings(n, 5))
    n += 5
    progress.write(f"{n}\\n")
    progress.flush()
    batches = outbox.take()
    for batch in batches:  # "published": the broker has it before the PUBACK comes back
        line = {"boot": batch.boot_epoch, "seq": batch.seq, "body": batch.body.decode()}
        sent.write(json.dumps(line) + "\\n")
        sent.flush()
    if late is not None:
        outbox.ack(late)
    for batch in reversed(batches[:-1]):  # PUBACKs out of order; the last one comes late
        outbox.ack(batch.seq)
    late = batches[-1].seq if batches else None
"""


def _run_and_kill(work: Path, start: int, at_least: int) -> int:
    """Start a writer, ``kill -9`` it once it stored ``at_least`` readings; returns its boot."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(work), str(start)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        boot = int(writer.stdout.readline())
        progress = work / f"progress-{start}"
        deadline = time.monotonic() + 20
        while _last_put(progress) < start + at_least:
            assert writer.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "the writer is too slow"
            time.sleep(0.005)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    return boot


def _last_put(progress: Path) -> int:
    if not progress.exists():
        return 0
    lines = progress.read_text().split("\n")[:-1]  # the last one may be half written
    return int(lines[-1]) if lines else 0


def test_kill_9_mid_stream_twice_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    first_boot = _run_and_kill(tmp_path, 0, 300)
    second_boot = _run_and_kill(tmp_path, 100_000, 300)
    third_boot = next_boot(tmp_path / "boot.json", datetime.now(UTC)).boot_epoch
    assert first_boot < second_boot < third_boot  # three starts within a second or two

    sent: list[tuple[int, int, str]] = []
    for line in (tmp_path / "sent.jsonl").read_text().split("\n")[:-1]:
        record = json.loads(line)
        sent.append((record["boot"], record["seq"], record["body"]))
    before_restart = {(boot, seq) for boot, seq, _ in sent}
    drained = []
    with SqliteOutbox(tmp_path / "outbox.db", boot_epoch=third_boot) as outbox:
        while batches := outbox.take():
            for batch in batches:
                drained.append((batch.boot_epoch, batch.seq, batch.body.decode()))
                outbox.ack(batch.seq)
        assert len(outbox) == 0
        assert outbox.stats.evicted_readings == outbox.stats.corrupt_records == 0

    bodies: dict[tuple[int, int], set[str]] = {}
    for boot, seq, body in sent + drained:
        bodies.setdefault((boot, seq), set()).add(body)
    assert all(len(versions) == 1 for versions in bodies.values()), "a re-send changed a batch"
    assert len({seq for _, seq in bodies}) == len(bodies), "a seq was used by two boots"
    delivered = Counter(
        int((datetime.fromisoformat(r["ts"]) - T0).total_seconds())
        for (body,) in bodies.values()
        for r in json.loads(body)
    )
    assert set(delivered.values()) == {1}, "a reading went out under two (boot, seq)"
    for start in (0, 100_000):
        mine = sorted(n for n in delivered if start <= n < start + 100_000)
        stored = _last_put(tmp_path / f"progress-{start}")
        assert mine == list(range(start, start + len(mine)))  # nothing missing in between
        assert len(mine) >= stored - start  # every reading put before the kill arrived
    assert {(boot, seq) for boot, seq, _ in drained} & before_restart, "in flight at the kill"


def test_a_long_outage_ages_out_a_large_backlog_in_one_eviction(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "o.db"
    with _open(path, clock) as outbox:
        for n in range(0, 5_000, 1000):
            outbox.put(readings(n, 1000))
        outbox.put(readings(9_000, 1), Priority.ALARM)
    clock.advance(timedelta(days=3).total_seconds())
    with _open(path, clock) as old:
        assert old.put(readings(6_000, 1)) == 5_000
        (marker,) = old.pending_gaps()
        assert (marker.reason, marker.readings) == ("age", 5_000)
        assert (marker.first_ts, marker.last_ts) == (T0, T0 + timedelta(seconds=4_999))
        assert [numbers(b) for b in old.take()] == [[9_000], [6_000]]
