"""The boot identity never repeats: crash loops, clock resets, lost or damaged files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.identity import CLOCK_TRUSTED_END, BootIdentity, IdentityError, next_boot
from protocol.models import BOOT_EPOCH_END

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
RESET = datetime(2000, 1, 1, tzinfo=UTC)


def test_a_first_start_takes_the_clock_and_stores_it(tmp_path: Path) -> None:
    path = tmp_path / "state" / "boot.json"
    assert next_boot(path, NOW) == BootIdentity(int(NOW.timestamp()), None, "clock")
    assert json.loads(path.read_text()) == {"v": 1, "boot_epoch": int(NOW.timestamp())}


def test_starts_within_one_second_never_share_an_epoch(tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    epochs = [next_boot(path, NOW).boot_epoch for _ in range(5)]
    assert epochs == [int(NOW.timestamp()) + n for n in range(5)]


def test_a_clock_reset_to_2000_counts_on_from_the_last_boot(tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    first = next_boot(path, NOW)
    after_reset = next_boot(path, RESET)
    assert after_reset == BootIdentity(first.boot_epoch + 1, first.boot_epoch, "counter")
    assert next_boot(path, RESET).boot_epoch == first.boot_epoch + 2
    later = datetime(2026, 7, 2, tzinfo=UTC)
    assert next_boot(path, later) == BootIdentity(
        int(later.timestamp()), first.boot_epoch + 2, "clock"
    )


def test_a_first_start_at_2000_then_a_fixed_clock(tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    assert next_boot(path, RESET).boot_epoch == int(RESET.timestamp())
    assert next_boot(path, RESET).boot_epoch == int(RESET.timestamp()) + 1
    assert next_boot(path, NOW).boot_epoch == int(NOW.timestamp())


def test_a_clock_far_ahead_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    first = next_boot(path, NOW).boot_epoch
    ahead = datetime(2095, 1, 1, tzinfo=UTC)
    assert int(ahead.timestamp()) >= CLOCK_TRUSTED_END
    assert next_boot(path, ahead) == BootIdentity(first + 1, first, "counter")


def test_the_floor_is_respected_when_the_file_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    floor = int(NOW.timestamp()) + 100
    assert next_boot(path, NOW, floor=floor) == BootIdentity(floor + 1, None, "counter")


def test_a_damaged_file_is_set_aside_and_the_floor_still_holds(tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    path.write_text('{"v": 1, "boot_ep')
    floor = int(NOW.timestamp())  # e.g. the highest boot epoch the outbox still holds
    assert next_boot(path, RESET, floor=floor) == BootIdentity(floor + 1, None, "counter")
    assert (tmp_path / "boot.json.corrupt").read_text() == '{"v": 1, "boot_ep'
    assert next_boot(path, RESET).boot_epoch == floor + 2


def test_a_half_written_temporary_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    first = next_boot(path, NOW).boot_epoch
    (tmp_path / "boot.json.tmp").write_text('{"v": 1, "bo')  # a crash before the rename
    assert next_boot(path, NOW).boot_epoch == first + 1


def test_the_range_cannot_be_overrun(tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    path.write_text(json.dumps({"v": 1, "boot_epoch": BOOT_EPOCH_END - 1}))
    with pytest.raises(IdentityError, match="used up"):
        next_boot(path, NOW)


def test_the_new_epoch_is_fsynced_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(source: str | Path, target: str | Path) -> None:
        calls.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    next_boot(tmp_path / "boot.json", NOW)
    assert calls == ["fsync-file", "rename", "fsync-dir"]


def test_processes_started_back_to_back_get_increasing_epochs(tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    program = (
        "import sys; from datetime import UTC, datetime; from pathlib import Path;"
        "from edge.identity import next_boot;"
        "print(next_boot(Path(sys.argv[1]), datetime(2000, 1, 1, tzinfo=UTC)).boot_epoch)"
    )
    epochs = [
        int(
            subprocess.run(
                [sys.executable, "-c", program, str(path)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for _ in range(2)
    ]
    assert epochs == [int(RESET.timestamp()), int(RESET.timestamp()) + 1]
