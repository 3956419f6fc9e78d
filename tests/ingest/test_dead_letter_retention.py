"""Dead letters deleted by age (``JsonlDeadLetters.prune``), beside the rotation by size: whole
files, the file that straddles the cutoff, ids that keep growing once every letter is gone."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ingest.dead_letters import DeadLetterError, JsonlDeadLetters, rotated_files
from tests.factories import T0

TOPIC = "citysense/v1/stations/st-1/telemetry"
DAY = timedelta(days=1)


def received(letters: JsonlDeadLetters) -> list[tuple[str, datetime]]:
    return [(letter.id, letter.received_at) for letter in letters.letters()]


def written_at(path: Path, moment: datetime) -> None:
    """Set a file's last write (what ``prune`` reads for a whole file)."""
    os.utime(path, (moment.timestamp(), moment.timestamp()))


def test_letters_older_than_the_cutoff_go_newer_stay(tmp_path: Path) -> None:
    letters = JsonlDeadLetters(tmp_path / "dead.jsonl")
    for day in range(5):
        letters.write(TOPIC, b"x", "not_json", "", T0 + day * DAY)
    assert letters.prune(T0 + 2 * DAY) == 2  # the file straddles: rewritten without days 0, 1
    assert received(letters) == [(str(n + 1), T0 + n * DAY) for n in (2, 3, 4)]
    assert letters.prune(T0 + 2 * DAY) == 0
    assert not list(tmp_path.glob("*.pruning"))


def test_rotated_files_written_before_the_cutoff_go_whole(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    letters = JsonlDeadLetters(path, max_bytes=300, keep=5)
    for day in range(6):
        letters.write(TOPIC, b"x" * 40, "not_json", "", T0 + day * DAY)
    files = rotated_files(path, 5)
    assert all(file.is_file() for file in files)  # rotated by size: one letter a file
    for day, file in enumerate(files):
        written_at(file, T0 + day * DAY)
    inodes = {file: file.stat().st_ino for file in files}
    assert letters.prune(T0 + 3 * DAY) == 3
    assert [letter.id for letter in letters.letters()] == ["4", "5", "6"]
    kept = [file for file in files if file.exists()]
    assert kept == files[3:]
    assert all(file.stat().st_ino == inodes[file] for file in kept)  # not rewritten


def test_ids_keep_growing_after_every_letter_is_gone_and_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    letters = JsonlDeadLetters(path)
    letters.write(TOPIC, b"x", "not_json", "", T0)
    letters.write(TOPIC, b"x", "not_json", "", T0 + DAY)
    assert letters.prune(T0 + 2 * DAY) == 2
    assert letters.letters() == []
    letters.close()
    restarted = JsonlDeadLetters(path)
    restarted.write(TOPIC, b"x", "not_json", "", T0 + 3 * DAY)
    assert [letter.id for letter in restarted.letters()] == ["3"]


def test_what_cannot_be_dated_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    letters = JsonlDeadLetters(path)
    letters.write(TOPIC, b"x", "not_json", "", T0)
    with path.open("a", encoding="utf-8") as out:
        out.write('{"id": 9, "received_at": "yesterday"}\n')
    letters.write(TOPIC, b"x", "not_json", "", T0 + 2 * DAY)
    assert letters.prune(T0 + DAY) == 1
    assert '"yesterday"' in path.read_text()


def test_a_file_that_cannot_be_changed_is_a_dead_letter_error(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    letters = JsonlDeadLetters(path)
    letters.write(TOPIC, b"x", "not_json", "", T0)
    letters.write(TOPIC, b"x", "not_json", "", T0 + 2 * DAY)
    (tmp_path / "dead.jsonl.pruning").mkdir()  # the rewrite's temporary file cannot be made
    with pytest.raises(DeadLetterError, match="cannot prune"):
        letters.prune(T0 + DAY)
    assert len(letters.letters()) == 2
