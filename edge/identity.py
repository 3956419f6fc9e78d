"""The agent's boot identity: a ``boot_epoch`` that strictly increases on every start.

``(station_id, boot_epoch, seq)`` names a batch, and ingest drops a batch whose name it has seen.
A boot that reuses an epoch (two starts in one second, a clock reset to 2000-01-01) would have
its first batches dropped as duplicates. So the last boot epoch is kept in a file, and the next
one is ``max(last + 1, the clock's Unix seconds)``:

- with a sane clock it is the boot's Unix time, as ``boot_epoch`` always was;
- a second start within the same second, or a start with the clock behind, takes ``last + 1``;
- it stays inside the protocol's range (``< BOOT_EPOCH_END``, 2100-01-01) and only grows, which
  ingest's de-duplication relies on: it keeps a station's four highest boots.

Why not a random 63-bit id: it does not fit ``boot_epoch`` (Unix seconds below 2100), and ingest
forgets a station's *lowest* boot first, which must be the oldest. A clock far in the future
would burn the range: the clock is trusted only below ``CLOCK_TRUSTED_END`` (2090), leaving
~315 million starts of headroom after the worst jump.

The file is written to a temporary name, fsynced, renamed over the old one, and the directory
fsynced: after a power cut it holds the old epoch or the new one, never a torn mix, and the new
epoch is on disk before any batch carries it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from protocol.models import BOOT_EPOCH_END

log = logging.getLogger(__name__)

CLOCK_TRUSTED_END: Final = int(datetime(2090, 1, 1, tzinfo=UTC).timestamp())
FORMAT_VERSION: Final = 1


class IdentityError(RuntimeError):
    """No new boot identity can be made (the range is used up, or the file cannot be written)."""


@dataclass(frozen=True, slots=True)
class BootIdentity:
    boot_epoch: int
    previous: int | None
    """The last boot's epoch; None on a first start (or when its file was unreadable)."""
    source: Literal["clock", "counter"]
    """``clock``: the clock's Unix seconds were ahead of the last boot; ``counter``: last + 1."""


def next_boot(path: Path, now: datetime, *, floor: int = 0) -> BootIdentity:
    """Choose this start's boot epoch (above the stored one and ``floor``) and store it durably.

    ``floor`` is any epoch known to be used already (e.g. the highest one the outbox holds), a
    second line of defence should the file be lost.
    """
    previous = _read(path)
    last = max(floor, previous if previous is not None else 0)
    clock = int(now.timestamp())
    source: Literal["clock", "counter"] = "clock"
    epoch = clock
    if not last < clock < CLOCK_TRUSTED_END:
        epoch, source = last + 1, "counter"
    if epoch >= BOOT_EPOCH_END:
        raise IdentityError(f"boot epochs used up ({epoch} >= {BOOT_EPOCH_END})")
    _write(path, epoch)
    return BootIdentity(epoch, previous, source)


def _read(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        document = json.loads(text)
        epoch = document["boot_epoch"]
        if type(epoch) is not int or not 0 <= epoch < BOOT_EPOCH_END:
            raise ValueError(f"boot_epoch {epoch!r} out of range")
    except (ValueError, KeyError, TypeError) as exc:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        log.error("boot identity %s unreadable (%s): moved to %s", path, exc, aside)
        return None
    return epoch


def _write(path: Path, epoch: int) -> None:
    data = json.dumps({"v": FORMAT_VERSION, "boot_epoch": epoch}).encode()
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise IdentityError(f"cannot store the boot identity in {path}: {exc}") from exc
