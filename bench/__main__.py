"""``python -m bench [--quick] [--out bench/results/<name>.json]`` (``make bench``).

Starts a private Mosquitto, measures everything in ``bench.suite`` in one run, prints a table and
writes the JSON document described in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench.report import Measurement, document, machine_info, table
from bench.suite import FULL, QUICK, run

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def _progress(measurement: Measurement) -> None:
    print(f"  measured {measurement.name}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    machine = machine_info()
    print(
        f"citysense bench ({plan.name}) on {machine['cpu_count']} CPUs, Python "
        f"{machine['python']}; mosquitto {machine['mosquitto']}",
        file=sys.stderr,
    )
    started = time.monotonic()
    measurements = run(plan, _progress, args.out.parent)
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    result = document(
        measurements,
        quick=args.quick,
        seconds=time.monotonic() - started,
        machine=machine,
        command=command,
        plan=asdict(plan),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(measurements))
    for m in measurements:
        if "bytes_per_sensor" in m.figures:
            print(
                f"{m.name}: {m.figures['bytes_per_sensor']:.0f} B/sensor in memory, "
                f"{m.figures['snapshot_bytes_per_sensor']:.0f} B/sensor in the snapshot "
                f"({m.figures['snapshot_learned_bytes_per_sensor']:.0f} with profiles learned), "
                f"{m.figures['batched_bytes_per_sensor']:.0f} B/sensor for the batched path, "
                f"{m.params['sensors']:,} sensors"
            )
    print(f"\n{len(measurements)} measurements in {result['seconds']:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
