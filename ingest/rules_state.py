"""The rules engine's state on disk: restored on start, written every few seconds and on stop.

A snapshot is only taken while no batch is being evaluated or its alerts delivered (the
pipeline's ``evaluating`` lock), so every transition in it has reached the case store. It is
written to a temporary file, flushed to disk and renamed over the old one: a kill at any moment
leaves the previous snapshot or the new one, never half of one. On start the engine carries on
from it and then adopts the cases the store holds open (one may have opened after the snapshot),
so a restart in the middle of an incident opens no second case and the open one clears when the
sensor recovers. What this cannot do yet: readings acknowledged to the broker after the last
snapshot are not evaluated again (ingest acknowledges on receipt; see docs/rules.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from ingest.pipeline import IngestPipeline
from rules import ClockPolicy, RuleEngine, RuleSet, SnapshotError, restore, snapshot

log = logging.getLogger(__name__)


def load_engine(rules: RuleSet, path: Path | None, clock: ClockPolicy) -> RuleEngine:
    """An engine carrying on from the snapshot at ``path``, or a fresh one when there is none.
    A damaged snapshot is kept aside (``.bad``) and the engine starts fresh, loudly."""
    if path is None or not path.exists():
        return RuleEngine(rules, clock=clock)
    try:
        engine = restore(rules, path.read_bytes(), clock=clock)
    except (OSError, SnapshotError) as exc:
        aside = path.with_suffix(path.suffix + ".bad")
        log.error("rules snapshot %s unusable (%s); kept as %s, starting fresh", path, exc, aside)
        path.replace(aside)
        return RuleEngine(rules, clock=clock)
    log.info("rules engine restored from %s: %s", path, engine.state_counts())
    return engine


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(path.suffix + ".tmp")
    with scratch.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    scratch.replace(path)


async def save(pipeline: IngestPipeline, path: Path) -> int:
    async with pipeline.evaluating:
        data = snapshot(pipeline.engine)
    await asyncio.to_thread(write_atomically, path, data)
    pipeline.metrics.snapshot_written(len(data))
    return len(data)


async def keep_saved(pipeline: IngestPipeline, path: Path, every: float) -> None:
    """Write a snapshot every ``every`` seconds, and a last one when cancelled."""
    try:
        while True:
            await asyncio.sleep(every)
            await save(pipeline, path)
    finally:
        write_atomically(path, snapshot(pipeline.engine))
