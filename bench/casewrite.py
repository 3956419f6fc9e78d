"""One case written to the SQLite case store, idle and beside a busy event loop.

``python -m bench.casewrite [--cases 100] [--busy-ms 5]``

The node's event loop also runs ingest, which holds it a few ms at a time (decoding, the rules,
the sinks). A write transaction that visits the loop between statements waits for it at every
visit. Measured here: ``CaseStore.apply_alerts`` of one urgent alert (the case, two audit
entries, two events), one after the other, on a SQLite file, with the loop otherwise idle and
with a task that keeps it busy ``busy_ms`` at a time; once through the store's writer thread
(``center.transactions``, the default) and once through the async driver statement by
statement (``write_on_thread=False``: what the store did before, and still does on PostgreSQL),
the baseline of the ratios; and on the event loop itself (``write_on_loop``, the default since
2026-12-01: the thread is left for when another connection holds the lock).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.report import BenchError, Measurement, compared
from center import CaseStore, create_engine, migrate
from protocol import SensorKind
from rules.alerts import Alert, CaseTarget, Evidence


def _alert(i: int) -> Alert:
    """A live alert (not detected late): the system registers its case."""
    started = datetime.now(UTC)
    return Alert(
        rule_id="cover-tilt",
        title="井盖倾斜 cover tilted",
        state="open",
        severity="urgent",
        station_id="st-bench",
        sensor_id=f"st-bench.cover-{i:05d}",
        kind=SensorKind.COVER,
        field="tilt_deg",
        value=80.0,
        threshold=15.0,
        started_at=started,
        at=started,
        target=CaseTarget("component"),
        evidence=(Evidence(started, 80.0),),
    )


def _percentile(ordered: list[float], p: float) -> float:
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


async def _times(
    workdir: Path, cases: int, busy_ms: float, on_thread: bool, on_loop: bool
) -> list[float]:
    url = f"sqlite+aiosqlite:///{workdir / f'cases-{on_thread}-{on_loop}-{busy_ms}.db'}"
    await migrate(url)
    engine = create_engine(url)
    store = CaseStore(engine, write_on_thread=on_thread, write_on_loop=on_loop)
    stop = asyncio.Event()

    async def busy() -> None:  # half the time busy, as ingest's loop at half its maximum rate
        while not stop.is_set():
            until = time.perf_counter() + busy_ms / 1000
            while time.perf_counter() < until:
                pass
            await asyncio.sleep(busy_ms / 1000)

    spinner = asyncio.create_task(busy()) if busy_ms > 0 else None
    times = []
    try:
        for i in range(cases):
            started = time.perf_counter()
            await store.apply_alerts([(_alert(i), None, datetime.now(UTC))])
            times.append((time.perf_counter() - started) * 1000)
        written = (await store.list_cases())[1]
        if written != cases:
            raise BenchError(f"{cases} alerts written, {written} cases in the store")
    finally:
        stop.set()
        if spinner is not None:
            await spinner
        store.close()
        await engine.dispose()
    return sorted(times)


PATHS = (("async_driver", False, False), ("thread", True, False), ("loop", True, True))
"""How the store writes: (name, ``write_on_thread``, ``write_on_loop``)."""


def measure(cases: int = 100, busy_ms: float = 5.0) -> Iterator[Measurement]:
    """``case_write_{idle,busy}_{async_driver,thread,loop}``: ms per case, p50/p90/p99/max.
    On the loop, the write holds the loop for its time (what ingest waits), while the busy
    task's turns only delay its start (not counted)."""
    with tempfile.TemporaryDirectory(prefix="citysense-bench-casewrite-") as scratch:
        for load, spin in (("idle", 0.0), ("busy", busy_ms)):
            baseline: Measurement | None = None
            for path, on_thread, on_loop in PATHS:
                times = asyncio.run(_times(Path(scratch), cases, spin, on_thread, on_loop))
                figures = {
                    "p50_ms": _percentile(times, 50),
                    "p90_ms": _percentile(times, 90),
                    "p99_ms": _percentile(times, 99),
                    "max_ms": times[-1],
                }
                loop = "idle" if spin == 0 else f"busy {spin:g} ms at a time"
                measurement = Measurement(
                    name=f"case_write_{load}_{path}",
                    title=f"one urgent case written to SQLite ({path.replace('_', ' ')}), the "
                    f"event loop {loop}",
                    group="center",
                    params={
                        "cases": cases,
                        "busy_ms": spin,
                        "on_thread": on_thread,
                        "on_loop": on_loop,
                    },
                    figures=figures,
                )
                if baseline is None:
                    baseline = measurement
                else:  # time per case: this over the async driver's
                    measurement = compared(measurement, baseline, ["p50_ms", "p99_ms"])
                yield measurement


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.casewrite", description=__doc__)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--busy-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    for m in measure(args.cases, args.busy_ms):
        figures = "  ".join(f"{name} {value:8.2f}" for name, value in m.figures.items())
        ratios = "; ".join(f"{r.value:.3g}× ({r.figure})" for r in m.ratios)
        print(f"{m.name:30} {figures}  {ratios}")


if __name__ == "__main__":
    main()
