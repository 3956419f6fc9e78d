"""Backtest: run a recording through ingest, the rules and the case store, in-process.

Every record goes through the same ``IngestPipeline`` and ``CaseService`` as live traffic, with
the record's publish time standing in for the ingest clock, into a throw-away SQLite case store.
Because the rules run in event time, the cases are the ones a live replay would open.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from center import CaseBroadcaster, CaseOut, CaseService, CaseStore, create_engine, migrate
from ingest.fakes import MemoryDeadLetters
from ingest.metrics import IngestMetrics
from ingest.pipeline import IngestPipeline
from recording.format import RecordingReader
from rules import EngineStats, RuleEngine, RuleSet

PAGE = 500


@dataclass(frozen=True)
class BacktestResult:
    cases: list[CaseOut]
    records: int
    torn_tail_bytes: int
    """Bytes of a record cut off at the end of the file (a capture that was killed)."""
    metrics: IngestMetrics
    engine: EngineStats
    dead_letters: MemoryDeadLetters


async def backtest(recording: Path, rules: RuleSet) -> BacktestResult:
    with tempfile.TemporaryDirectory(prefix="citysense-backtest-") as scratch:
        url = f"sqlite+aiosqlite:///{Path(scratch) / 'cases.db'}"
        await migrate(url)
        engine = create_engine(url)
        store = CaseStore(engine)
        try:
            service = CaseService(store, CaseBroadcaster())
            now = [datetime.fromtimestamp(0, UTC)]
            dead = MemoryDeadLetters()
            pipeline = IngestPipeline(
                engine=RuleEngine(rules), alerts=service, dead_letters=dead, clock=lambda: now[0]
            )
            count = 0
            with RecordingReader(recording) as reader:
                for record in reader:
                    now[0] = record.ts
                    await pipeline.handle(record.topic, record.payload)
                    count += 1
                torn = reader.truncated_bytes
            await pipeline.drain(now[0])
            cases = await _all_cases(service.store)
        finally:
            store.close()
            await engine.dispose()
    return BacktestResult(cases, count, torn, pipeline.metrics, pipeline.engine.stats, dead)


async def _all_cases(store: CaseStore) -> list[CaseOut]:
    cases: list[CaseOut] = []
    while True:
        page, total = await store.list_cases(limit=PAGE, offset=len(cases))
        cases.extend(page)
        if not page or len(cases) >= total:
            return sorted(cases, key=lambda c: c.id)
