"""Dead letters on disk: ids, kinds, rotation, failures, reading back, off the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from ingest.dead_letters import (
    DeadLetterError,
    JsonlDeadLetters,
    alert_from_json,
    alert_to_json,
    station_of,
)
from ingest.fakes import MemoryDeadLetters
from tests.center.factories import alert
from tests.factories import T0

TOPIC = "citysense/v1/stations/st-1/telemetry"


def test_letters_read_back_with_ids_kinds_and_station(tmp_path: Path) -> None:
    dead = JsonlDeadLetters(tmp_path / "dead.jsonl")
    dead.write(TOPIC, b"not json", "not_json", "Expecting value", T0)
    dead.write_alert(alert(), "alert_refused", "unknown class", T0 + timedelta(seconds=1))

    first, second = dead.letters()
    assert (first.id, first.kind, first.station_id, first.payload, first.size) == (
        "1",
        "message",
        "st-1",
        b"not json",
        8,
    )
    assert (second.id, second.kind, second.topic, second.station_id) == (
        "2",
        "alert",
        "alert",
        "st-1",
    )
    assert alert_from_json(json.loads(second.payload)) == alert()


def test_an_alert_written_as_json_bytes_is_an_alert_of_its_station(tmp_path: Path) -> None:
    dead = JsonlDeadLetters(tmp_path / "dead.jsonl")
    dead.write("alert", json.dumps(alert_to_json(alert())).encode(), "alert_refused", "", T0)
    dead.write("alert", b"Alert(...)", "alert_refused", "", T0)
    assert [(x.kind, x.station_id) for x in dead.letters()] == [("alert", "st-1"), ("alert", None)]


def test_alert_json_round_trip_keeps_every_field() -> None:
    original = alert()
    assert alert_from_json(json.loads(json.dumps(alert_to_json(original)))) == original


def test_ids_continue_after_a_restart(tmp_path: Path) -> None:
    JsonlDeadLetters(tmp_path / "dead.jsonl").write(TOPIC, b"a", "not_json", "", T0)
    again = JsonlDeadLetters(tmp_path / "dead.jsonl")
    again.write(TOPIC, b"b", "not_json", "", T0)
    assert [letter.id for letter in again.letters()] == ["1", "2"]


def test_rotation_by_size_keeps_a_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    dead = JsonlDeadLetters(path, max_bytes=400, keep=2)
    for n in range(20):
        dead.write(TOPIC, b"x" * 50, "not_json", f"letter {n}", T0)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dead.jsonl",
        "dead.jsonl.1",
        "dead.jsonl.2",
    ]
    assert all(p.stat().st_size <= 400 for p in tmp_path.iterdir())
    ids = [int(letter.id) for letter in dead.letters()]
    assert ids == list(range(ids[0], 21))  # the newest survive, in order, ids unchanged
    assert ids[0] > 1


def test_a_file_from_before_ids_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    old = {
        "received_at": T0.isoformat(),
        "topic": "alert",
        "reason": "alert_refused",
        "detail": "",
        "payload_b64": "QWxlcnQoKQ==",
    }
    path.write_text(json.dumps(old) + "\n{torn", encoding="utf-8")
    (letter,) = JsonlDeadLetters(path).letters()
    assert (letter.id, letter.kind, letter.station_id) == ("dead.jsonl:1", "alert", None)


def test_unwritable_directory_raises_a_dead_letter_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    dead = JsonlDeadLetters(blocker / "dead.jsonl")  # the parent is a file: never writable
    with pytest.raises(DeadLetterError, match="cannot keep a dead letter") as failed:
        dead.write(TOPIC, b"x", "not_json", "", T0)
    assert isinstance(failed.value, OSError)  # retried like any I/O error by the pipeline


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
async def test_full_disk_raises_from_put_and_the_next_write_works(tmp_path: Path) -> None:
    full = JsonlDeadLetters(Path("/dev/full"))
    with pytest.raises(DeadLetterError, match="No space left"):
        await full.put(TOPIC, b"x", "not_json", "", T0)
    full.close()
    dead = JsonlDeadLetters(tmp_path / "dead.jsonl")
    await dead.put(TOPIC, b"x", "not_json", "", T0)
    assert len(dead.letters()) == 1
    dead.close()


async def test_put_runs_off_the_event_loop(tmp_path: Path) -> None:
    dead = JsonlDeadLetters(tmp_path / "dead.jsonl")
    threads: list[str] = []
    original = dead._append_line

    def spy(line: bytes) -> None:
        threads.append(threading.current_thread().name)
        original(line)

    dead._append_line = spy  # type: ignore[method-assign]
    await asyncio.gather(*(dead.put(TOPIC, b"%d" % n, "r", "", T0) for n in range(5)))
    await dead.put_alert(alert(), "alert_refused", "", T0)
    await dead.flush()
    dead.close()

    assert threading.current_thread().name not in threads
    assert all(name.startswith("dead-letters") for name in threads)
    assert [letter.payload for letter in dead.letters()][:5] == [b"0", b"1", b"2", b"3", b"4"]


async def test_list_rejects_filters_and_pages_newest_first(tmp_path: Path) -> None:
    dead = JsonlDeadLetters(tmp_path / "dead.jsonl")
    for n in range(6):
        station = "st-1" if n % 2 else "st-2"
        dead.write(
            f"citysense/v1/stations/{station}/telemetry",
            b"x",
            "not_json" if n < 4 else "bad_schema",
            "",
            T0 + timedelta(minutes=n),
        )
    items, total = await dead.list_rejects(limit=2)
    assert (total, [i.id for i in items]) == (6, ["6", "5"])
    items, total = await dead.list_rejects(reason="not_json", station_id="st-1")
    assert (total, [i.id for i in items]) == (2, ["4", "2"])
    items, total = await dead.list_rejects(since=T0 + timedelta(minutes=3), offset=1)
    assert (total, [i.id for i in items]) == (3, ["5", "4"])
    dead.write(TOPIC, b"late", "not_json", "", T0)  # the index picks up new lines
    assert (await dead.list_rejects())[1] == 7


def test_station_of_tolerates_malformed_topics() -> None:
    assert station_of("citysense/v1/stations/st-9/telemetry/extra") == "st-9"
    assert station_of("elsewhere/st-9") is None


async def test_memory_fake_can_fail_like_a_full_disk() -> None:
    fake = MemoryDeadLetters(fail_with=DeadLetterError("disk full"))
    with pytest.raises(DeadLetterError):
        await fake.put(TOPIC, b"x", "not_json", "", T0)
    fake.fail_with = None
    await fake.put_alert(alert(), "alert_refused", "", T0)
    assert len(fake.alerts) == 1
