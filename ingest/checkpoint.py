"""Ingest's state on disk: what makes a restart exact.

Accepted messages go to the journal (the recorder's rotating files, ``ingest/sinks/recorder``)
and are made durable before they are acknowledged to the broker. Every few seconds a checkpoint
is written: the rules engine's state, the de-duplication state, the gap tracker's state (missing
ranges, re-send requests, loss counters) and the journal position they cover, in one file,
atomically (written, flushed to disk, renamed over the old one). On start,
ingest loads the checkpoint and replays the journal after its position through the pipeline
(sinks and case store take the replay idempotently: the time-series store de-duplicates equal
points, cases are unique on their key), then takes what the broker sends again: what was
replayed is recognised as a duplicate and acknowledged, the rest is new.

A checkpoint is taken while no message is being handled (the pipeline's ``evaluating``
lock), with the journal's end at that moment, so engine, de-duplication, gaps and journal
position agree; it is put in place only after a commit that covers that position (called
once the lock is released: messages are handled meanwhile, and the journal records up to the
position are durable before any file says the state includes them). Committing while holding
the lock held every message back for the commit's sink posts and fsync (6–22 ms every 10 s at
100,000 readings/s, docs/benchmarks.md). A checkpoint written before the gap tracker existed
restores an empty one.

**Encoded in a forked child** (``fork=True``, the periodic checkpoints; as Redis's BGSAVE): the
state's encoding grows with the fleet (~5 µs a sensor: 0.33–0.46 s with 70,000 sensors on a
slow day), and in the event loop it held every message back that long. ``os.fork`` copies the
process as it is between two messages in a few ms (copy on write); the child encodes, writes
and fsyncs the file and exits, while the parent handles messages; the parent then renames it
into place. The child runs only the forking thread's code: it touches no lock another thread
may have held at the fork (no logging, no asyncio, no database), and leaves with ``os._exit``.
Its memory is the parent's, shared until either writes a page: encoding touches the
reference counts of the whole state, so the child's pages grow towards the state's size for
the encoding's duration. The last checkpoint on the way out is encoded in the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ingest.dedup import Deduplicator
from ingest.gaps import GapPolicy, GapTracker
from ingest.pipeline import IngestPipeline
from ingest.sinks.recorder import RecorderPosition
from rules import ClockPolicy, RuleEngine, RuleSet, SnapshotError, restore, snapshot

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
_encode = msgspec.json.Encoder().encode


@dataclass
class Checkpoint:
    engine: RuleEngine
    dedup: Deduplicator
    position: RecorderPosition | None
    """Where in the journal the replay starts; None: from its beginning (or nothing to replay)."""
    gaps: GapTracker = field(default_factory=GapTracker)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(path.suffix + ".tmp")
    _write_synced(scratch, data)
    _put_in_place(scratch, path)


def _write_synced(path: Path, data: bytes) -> None:
    """``data`` as the whole of ``path``, on disk when this returns."""
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def encode_checkpoint(
    engine: RuleEngine,
    dedup: Deduplicator,
    position: RecorderPosition | None,
    gaps: GapTracker | None = None,
) -> bytes:
    head = {
        "version": CHECKPOINT_VERSION,
        "journal": None if position is None else [position.file, position.offset],
        "dedup": dedup.to_dict(),
        "gaps": None if gaps is None else gaps.to_dict(),
    }
    # the engine's own snapshot is embedded as it is, not parsed and dumped again; msgspec, as
    # the snapshot: this runs between two messages (rules/snapshot.py)
    return _encode(head)[:-1] + b',"engine":' + snapshot(engine) + b"}"


def load(
    rules: RuleSet, path: Path | None, clock: ClockPolicy, gaps: GapPolicy | None = None
) -> Checkpoint:
    """The checkpoint at ``path``, or a fresh start when there is none. A damaged checkpoint is
    kept aside (``.bad``) and ingest starts fresh, loudly: the journal is then replayed from
    its beginning. ``gaps`` is the gap tracker's policy (settings, not state)."""
    fresh = Checkpoint(RuleEngine(rules, clock=clock), Deduplicator(), None, GapTracker(gaps))
    if path is None or not path.exists():
        return fresh
    try:
        document = json.loads(path.read_bytes())
        if not isinstance(document, dict) or document.get("version") != CHECKPOINT_VERSION:
            raise SnapshotError(f"checkpoint version {document.get('version')!r} unknown")
        engine = restore(rules, json.dumps(document["engine"]).encode(), clock=clock)
        dedup = Deduplicator.from_dict(document["dedup"])
        saved_gaps = document.get("gaps")
        tracker = GapTracker(gaps) if saved_gaps is None else GapTracker.from_dict(saved_gaps, gaps)
        journal = document["journal"]
        position = None if journal is None else RecorderPosition(str(journal[0]), int(journal[1]))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        aside = path.with_suffix(path.suffix + ".bad")
        log.error("checkpoint %s unusable (%s); kept as %s, starting fresh", path, exc, aside)
        path.replace(aside)
        return fresh
    log.info("restored from %s: %s", path, engine.state_counts())
    return Checkpoint(engine, dedup, position, tracker)


FORK_AVAILABLE = hasattr(os, "fork")


class CheckpointError(OSError):
    """A checkpoint could not be encoded or written (the previous one stays in place)."""


async def save(pipeline: IngestPipeline, path: Path, *, fork: bool = True) -> int:
    """Take a checkpoint of the pipeline's state and the journal position it covers, commit
    (so the journal is durable up to that position), then put it in place; its size. With
    ``fork`` (where the platform has it), encoded by a forked child while messages go on."""
    if not (fork and FORK_AVAILABLE):
        async with pipeline.evaluating:
            position = _position_of(pipeline.journal_end())
            data = encode_checkpoint(pipeline.engine, pipeline.dedup, position, pipeline.gaps)
        await pipeline.commit()
        await asyncio.to_thread(write_atomically, path, data)
        pipeline.metrics.snapshot_written(len(data))
        return len(data)
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    async with pipeline.evaluating:
        position = _position_of(pipeline.journal_end())
        pid = _encode_in_child(pipeline, position, path)
    scratch = _scratch(path, pid)
    try:
        await pipeline.commit()
        status = await asyncio.to_thread(os.waitpid, pid, 0)
    except BaseException:  # cancelled (the node stops), or the commit failed: the child goes
        _end_child(pid, scratch)
        raise
    code = os.waitstatus_to_exitcode(status[1])
    if code != 0:
        scratch.unlink(missing_ok=True)
        raise CheckpointError(f"the checkpoint's encoder ended with {code}; {path} unchanged")
    size = await asyncio.to_thread(_put_in_place, scratch, path)
    pipeline.metrics.snapshot_written(size)
    return size


def _scratch(path: Path, pid: int) -> Path:
    return path.with_name(f"{path.name}.{pid}.tmp")


def _encode_in_child(
    pipeline: IngestPipeline, position: RecorderPosition | None, path: Path
) -> int:
    """Fork; the child writes the checkpoint to ``_scratch(path, its pid)``, fsynced, and
    exits 0 (1 on any failure). Returns the child's pid. See the module's docstring."""
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process may deadlock the child if
        # it takes a lock another thread held: this child takes none (module docstring)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid != 0:
        return pid
    code = 1
    try:
        gc.disable()  # a collection would touch (and copy) every tracked object's page
        data = encode_checkpoint(pipeline.engine, pipeline.dedup, position, pipeline.gaps)
        _write_synced(_scratch(path, os.getpid()), data)
        code = 0
    finally:
        os._exit(code)  # no clean-up of the parent's objects, threads or event loop


def _end_child(pid: int, scratch: Path) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    scratch.unlink(missing_ok=True)


def _put_in_place(scratch: Path, path: Path) -> int:
    """Rename the child's fsynced file over the checkpoint and make the rename durable."""
    size = scratch.stat().st_size
    scratch.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return size


def _position_of(position: object) -> RecorderPosition | None:
    return position if isinstance(position, RecorderPosition) else None


async def keep_saved(pipeline: IngestPipeline, path: Path, every: float) -> None:
    """Write a checkpoint every ``every`` seconds (the last one is ``save_last``'s job: a
    cancelled task cannot be relied on to finish awaiting). One that cannot be written (a
    full disk, a refused fork) is logged and counted, and the next is tried ``every`` later:
    the previous checkpoint and the journal still cover everything acknowledged, and the node
    goes on (a restart replays more of the journal)."""
    while True:
        await asyncio.sleep(every)
        try:
            await save(pipeline, path)
        except OSError as exc:
            pipeline.metrics.checkpoint_failures.inc()
            log.error("checkpoint %s not written (%s); trying again in %g s", path, exc, every)


async def save_last(pipeline: IngestPipeline, path: Path) -> None:
    """The checkpoint on the way out; when the last commit cannot be made (a store is down),
    the previous checkpoint and the journal still cover everything acknowledged."""
    try:
        await asyncio.wait_for(save(pipeline, path, fork=False), timeout=10)
    except Exception:
        log.exception("no last checkpoint; the previous one and the journal cover the rest")


async def replay(pipeline: IngestPipeline, records: Iterable[Any]) -> int:
    """Feed journal records (``topic``, ``payload``, ``ts``) through the pipeline without
    writing them to the journal again; returns how many."""
    count = 0
    pipeline.replaying = True
    try:
        for record in records:
            pipeline.clock_override = record.ts
            await pipeline.handle(record.topic, record.payload)
            count += 1
        await pipeline.commit()
    finally:
        pipeline.replaying = False
        pipeline.clock_override = None
    return count
