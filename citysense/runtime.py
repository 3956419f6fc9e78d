"""The Python runtime of a long-running node, tuned where the defaults cost throughput or
latency.

CPython's cyclic garbage collector runs a young-generation pass every 700 net allocations and
an older one every 10 of those. A node allocates a few dozen objects a message (the decoded
batch, its lines, the rules' rows) that die young and hold no cycles, while it keeps hundreds
of thousands of long-lived ones (modules, the rules' state, buffered lines): with the defaults,
collections took about a fifth of the node's CPU with 1-reading messages (the py-spy profile
charged them to whichever allocation triggered them). ``tune_gc`` makes the passes rarer and
moves everything alive at start-up out of the collector's way (``gc.freeze``). Cycles are still
collected, later: at most ``GC_THRESHOLDS[0]`` allocations after they become garbage.

Measured draining 40,000 1-reading messages (docs/benchmarks.md, 2026-11-30): 0.57–0.63× the
do-nothing paho subscriber with the defaults, 0.69–0.84× tuned; 100-reading messages unchanged
within the noise.

What the node keeps later (the rules' state as stations appear, the de-duplication windows,
registries) is long-lived too, and a full collection scans all of it while every thread waits:
~1 ms per 1,000 sensors of rules state (95 ms with 100,000 sensors, 311 ms with 300,000; 0.0 ms
once frozen; docs/benchmarks.md). ``keep_frozen`` freezes the survivors every
``FREEZE_EVERY_S`` after a young pass, so a full collection only scans what came since; once
every ``SWEEP_EVERY_S`` it unfreezes and collects everything, so cycles among frozen objects
(garbage that was promoted before it became garbage) are freed within that time: one full
pause an hour instead of one whenever the state has grown by a quarter.

The node's threads (the case store's SQLite writer, VictoriaMetrics' posts, the journal's
syncs) take the GIL back after every call that released it, and while the event loop handles
a group they wait for it: CPython hands it over only after the *switch interval* (5 ms by
default), and a case transaction takes it back a dozen times. ``tune_threads`` sets the interval
to ``SWITCH_INTERVAL_S``. Measured with ``python -m bench.latency_stages`` at 100,000–103,000
readings/s, an incident every 50 ms (docs/benchmarks.md, 2026-12-01), seven pairs alternating:
the case write's p99 was lower in six (28–56 ms against 33–163), reading → case p99 lower in
four, by the most where the machine was busiest (115 against 387 ms), higher in three (by
7–36 ms); draining 100- and 1-reading messages at the same rate either way.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

GC_THRESHOLDS: Final = (50_000, 20, 100)
FREEZE_EVERY_S: Final = 10.0
SWEEP_EVERY_S: Final = 3600.0
SWITCH_INTERVAL_S: Final = 0.001


def tune() -> None:
    """The collector (``tune_gc``) and the threads (``tune_threads``), for ``citysense serve``,
    the demo and the bench's node: once the node is built."""
    tune_gc()
    tune_threads()


def tune_threads() -> None:
    """A thread waiting for the GIL gets it after ``SWITCH_INTERVAL_S`` (a process setting)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def tune_gc() -> None:
    """For ``citysense serve`` (and the bench, which measures what it runs), once the node is
    built: freeze what is alive now and make collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def keep_frozen(
    every_s: float = FREEZE_EVERY_S,
    sweep_every_s: float = SWEEP_EVERY_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Every ``every_s``: a pass over the young generations, then freeze what survived. Every
    ``sweep_every_s``: unfreeze, collect everything, freeze again. Runs until cancelled."""
    swept = clock()
    while True:
        await asyncio.sleep(every_s)
        if clock() - swept >= sweep_every_s:
            gc.unfreeze()
            gc.collect()
            swept = clock()
        else:
            gc.collect(1)
        gc.freeze()


def runtime_tasks() -> dict[str, Coroutine[Any, Any, None]]:
    """The runtime's own background work, beside ``citysense.node.node_tasks``."""
    return {"gc-freeze": keep_frozen()}
