"""Where ingest's time goes: a sampling profile of the node's process during a drain.

With ``py-spy`` on PATH or in the venv (``pip install py-spy``: a measurement tool, not a
dependency) every thread of this process is sampled from outside (``--nonblocking``, on-CPU
samples only), and the collapsed stacks are kept. Without it, ``cProfile`` profiles the event
loop's thread only (where the pipeline and the MQTT session run; not the sink's worker).
Either way the result is the top functions by self time and by inclusive time, as shares.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TOP = 20
SAMPLE_RATE_HZ = 200
_LINE = re.compile(r":\d+\)$")
PLUMBING = ("threading.py", "asyncio/", "concurrent/futures/", "runpy", "bench/", "<module>")
"""Frames left out of the inclusive list: thread and event-loop roots, the bench's own."""


@dataclass
class Hotspots:
    """Top functions: ``(function, share of samples)`` by self and by inclusive time."""

    tool: str = ""
    samples: int = 0
    top_self: list[tuple[str, float]] = field(default_factory=list)
    top_inclusive: list[tuple[str, float]] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"# {self.tool}, {self.samples} samples", "", "## self", ""]
        lines += [f"{share:6.1%}  {name}" for name, share in self.top_self]
        lines += ["", "## inclusive (the function or anything it calls)", ""]
        lines += [f"{share:6.1%}  {name}" for name, share in self.top_inclusive]
        return "\n".join(lines) + "\n"


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _short(frame: str) -> str:
    """``handle (ingest/pipeline.py)``: line number dropped, paths from the package on."""
    frame = _LINE.sub(")", frame.strip())
    name, _, where = frame.partition(" (")
    for marker in ("site-packages/", str(Path.cwd()) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where}" if where else name


def from_collapsed(text: str, tool: str) -> Hotspots:
    """Top functions of collapsed stacks (``frame;frame;frame count`` per line)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";") if f]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    if not total:
        return Hotspots(tool, 0)
    return Hotspots(
        tool,
        total,
        [(name, n / total) for name, n in own.most_common(TOP)],
        [
            (name, n / total)
            for name, n in inclusive.most_common()
            if not any(part in name for part in PLUMBING)
        ][:TOP],
    )


@contextmanager
def sampled(raw_out: Path, found: Hotspots) -> Iterator[None]:
    """Profile this process while the block runs; ``found`` is filled in afterwards and
    ``raw_out`` keeps the collapsed stacks (py-spy) or the pstats dump (cProfile)."""
    binary = py_spy()
    raw_out.parent.mkdir(parents=True, exist_ok=True)
    if binary is None:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()
            profiler.dump_stats(raw_out)
            _from_pstats(pstats.Stats(profiler), found)
        return
    command = [binary, "record", "--pid", str(os.getpid()), "--nonblocking", "-f", "raw"]
    command += ["-r", str(SAMPLE_RATE_HZ), "-o", str(raw_out)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached before the work starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    text = raw_out.read_text() if raw_out.exists() else ""
    result = from_collapsed(text, "py-spy (all threads, on-CPU samples)")
    found.tool, found.samples = result.tool, result.samples
    found.top_self, found.top_inclusive = result.top_self, result.top_inclusive


def _from_pstats(stats: pstats.Stats, found: Hotspots) -> None:
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in table.values()) or 1.0
    by_self = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:TOP]
    by_cum = sorted(table.items(), key=lambda item: item[1][3], reverse=True)[:TOP]

    def name(key: tuple[str, int, str]) -> str:
        return _short(f"{key[2]} ({key[0]})")

    found.tool = "cProfile (event loop thread only)"
    found.samples = sum(nc for _, nc, _, _, _ in table.values())
    found.top_self = [(name(k), v[2] / total) for k, v in by_self]
    found.top_inclusive = [(name(k), v[3] / total) for k, v in by_cum]
