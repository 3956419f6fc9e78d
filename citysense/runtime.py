"""The Python runtime of a long-running node, tuned where the defaults cost throughput.

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
"""

from __future__ import annotations

import gc
from typing import Final

GC_THRESHOLDS: Final = (50_000, 20, 100)


def tune_gc() -> None:
    """For ``citysense serve`` (and the bench, which measures what it runs), once the node is
    built: freeze what is alive now and make collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
