"""Benchmark results: measurements, ratios to baselines of the same run, the JSON document, a table.

A throughput alone says little on a shared, noisy machine; a ratio to a baseline measured minutes
earlier on the same machine says more. So each measurement names its baselines and carries the
ratios, and the document carries the machine it ran on.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

SCHEMA = "citysense-bench/1"
LIBRARIES = ("paho-mqtt", "aiomqtt", "pydantic", "pydantic-core", "prometheus-client")


class BenchError(RuntimeError):
    """A measurement could not be made (a baseline is missing, a run failed)."""


@dataclass(frozen=True)
class Ratio:
    """``value`` = this measurement's ``figure`` ÷ the same figure of measurement ``baseline``."""

    figure: str
    baseline: str
    value: float


@dataclass(frozen=True)
class Measurement:
    name: str
    title: str
    group: str
    params: Mapping[str, Any]
    figures: Mapping[str, float]
    ratios: tuple[Ratio, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["params"], document["figures"] = dict(self.params), dict(self.figures)
        document["ratios"] = [asdict(ratio) for ratio in self.ratios]
        return document


def ratio(figure: str, measurement: Measurement, baseline: Measurement) -> Ratio:
    try:
        base = baseline.figures[figure]
        value = measurement.figures[figure]
    except KeyError as exc:
        raise BenchError(f"no figure {exc} to compare {measurement.name} with") from None
    if base <= 0:
        raise BenchError(f"baseline {baseline.name} has {figure} = {base}")
    return Ratio(figure, baseline.name, value / base)


def compared(
    measurement: Measurement, baseline: Measurement, figures: Sequence[str]
) -> Measurement:
    """``measurement`` with ratios of ``figures`` to ``baseline`` added."""
    added = tuple(ratio(figure, measurement, baseline) for figure in figures)
    return replace(measurement, ratios=measurement.ratios + added)


def per_second(count: float, seconds: float) -> float:
    if seconds <= 0:
        raise BenchError(f"a rate over {seconds} s")
    return count / seconds


def machine_info() -> dict[str, Any]:
    libraries: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            libraries[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "libraries": libraries,
        "mosquitto": _mosquitto_version(),
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _mosquitto_version() -> str | None:
    binary = shutil.which("mosquitto")
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "-h"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (done.stdout or done.stderr).splitlines()[:1]
    return first[0].removeprefix("mosquitto version ").strip() if first else None


def document(
    measurements: Iterable[Measurement],
    *,
    quick: bool,
    seconds: float,
    machine: Mapping[str, Any],
    command: str,
    plan: Mapping[str, Any],
    started_at: datetime | None = None,
) -> dict[str, Any]:
    """The JSON document of one run (schema in docs/benchmarks.md)."""
    return {
        "schema": SCHEMA,
        "started_at": (started_at or datetime.now(UTC)).isoformat(),
        "command": command,
        "quick": quick,
        "seconds": round(seconds, 3),
        "machine": dict(machine),
        "plan": dict(plan),
        "measurements": [m.to_json() for m in measurements],
    }


MAIN_FIGURES = ("readings_per_s", "messages_per_s", "bytes_per_s", "received_messages_per_s")
COLUMNS = ("measurement", "readings/s", "messages/s", "MB/s", "received msg/s", "ratio to baseline")


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(measurements: Iterable[Measurement]) -> str:
    """A readable table: the main figures and the ratios of each measurement."""
    rows: list[tuple[str, ...]] = [COLUMNS]
    for m in measurements:
        cells = [
            _number(m.figures[name] / (1e6 if name == "bytes_per_s" else 1))
            if name in m.figures
            else "-"
            for name in MAIN_FIGURES
        ]
        ratios = "; ".join(
            f"{r.value:.3g}× {r.baseline} ({r.figure.removesuffix('_per_s')})" for r in m.ratios
        )
        rows.append((m.name, *cells, ratios or "-"))
    numeric = range(1, len(COLUMNS) - 1)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for row in rows:
        numbers = "  ".join(row[i].rjust(widths[i]) for i in numeric)
        lines.append(f"{row[0].ljust(widths[0])}  {numbers}  {row[-1]}")
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
