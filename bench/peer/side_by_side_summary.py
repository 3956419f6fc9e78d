"""Summarise side_by_side.py results: median and spread per mode, payload shape and system.

usage: python side_by_side_summary.py WORK/results.json  (prints markdown)
Ratios are medians divided by the median of the paho do-nothing subscriber / raw broker
(mosquitto_sub) of the same mode and shape. Spread = min-max over the successful reps.
"publishers done" is seconds from the first publisher's launch to the last one's exit; "consumer
done after publishers" (live mode only) near 0 means the consumer kept up with the publishers,
i.e. the run was bound by the publish side, not by the consumer.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

ORDER = ["pubonly", "raw", "paho", "nodered", "citysense"]
LABEL = {
    "pubonly": "publishers only, no subscriber (ceiling of the publish side)",
    "raw": "raw broker: mosquitto_sub -C N",
    "paho": "paho do-nothing subscriber",
    "nodered": "Node-RED 4 bare threshold flow",
    "citysense": "citysense serve (full job)",
}


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def spread(xs: list[float], digits: int = 0) -> str:
    if not xs:
        return "-"
    return f"{fmt(med(xs), digits)} ({fmt(min(xs), digits)}–{fmt(max(xs), digits)})"


def main() -> None:
    results = json.load(open(sys.argv[1]))
    groups: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    failed = []
    for r in results:
        if r.get("ok"):
            groups[(r.get("mode", "live"), r["shape"])][r["system"]].append(r)
        else:
            failed.append(r)
    for (mode, shape), by_sys in groups.items():
        any_r = next(iter(by_sys.values()))[0]
        print(
            f"\n### mode={mode}, shape={shape}: {any_r['n']:,} messages × {any_r['batch']} readings\n"
        )
        print(
            "| system | runs | messages/s median (min–max) | readings/s median | ratio to paho | "
            "ratio to raw | consumer CPU% median (min–max) | broker CPU% | machine busy % | "
            "publishers done s | consumer done after publishers s | dropped |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        base = {s: med([r["msgs_per_s"] for r in by_sys.get(s, [])]) for s in ("paho", "raw")}
        for s in ORDER:
            rs = by_sys.get(s)
            if not rs:
                continue
            m = med([r["msgs_per_s"] for r in rs])
            rd = med([r["readings_per_s"] for r in rs])
            cpu = [r["consumer_cpu_pct"] for r in rs if r.get("consumer_cpu_pct") is not None]
            print(
                f"| {LABEL[s]} | {len(rs)} | {spread([r['msgs_per_s'] for r in rs])} | {fmt(rd)} | "
                f"{fmt(m / base['paho'], 3) if base['paho'] and m else '-'} | "
                f"{fmt(m / base['raw'], 3) if base['raw'] and m else '-'} | {spread(cpu)} | "
                f"{fmt(med([r['broker_cpu_pct'] for r in rs]))} | {fmt(med([r['machine_busy_pct'] for r in rs]))} | "
                f"{fmt(med([r['publishers_done_s'] for r in rs]), 1)} | "
                f"{fmt(med([r['consumer_done_after_publishers_s'] for r in rs]), 1) if mode == 'live' else '-'} | "
                f"{sorted({r.get('broker_dropped') for r in rs})} |"
            )
        cs = by_sys.get("citysense", [])
        if cs:
            print(
                "\ncitysense details per run: steady msgs/s (10–90 % slope of /metrics batches), steady readings/s, "
                "rejected, duplicates, unregistered readings, alerts open/cleared, cases, peak RSS MB, "
                "max /metrics latency s"
            )
            for r in cs:
                print(
                    f"- rep {r['rep']}: {fmt(r.get('steady_msgs_per_s'))} msg/s, {fmt(r.get('steady_readings_per_s'))} "
                    f"readings/s, rejected {r.get('rejected')}, dup {r.get('duplicates')}, unregistered "
                    f"{r.get('unregistered_readings')}, alerts {r.get('alerts_open')}/{r.get('alerts_cleared')} "
                    f"(incidents sent {r.get('incidents_sent')}), cases {r.get('cases_total')} (open {r.get('cases_open')}), "
                    f"RSS {fmt(r.get('consumer_rss_peak_mb'))} MB, max poll latency {fmt(r.get('max_poll_latency_s'), 2)} s"
                )
        nr = by_sys.get("nodered", [])
        if nr:
            print(
                "\nNode-RED per run: first→last msgs/s, readings counted, over-15 counted / sent, max /stats latency s"
            )
            for r in nr:
                print(
                    f"- rep {r['rep']}: {fmt(r.get('first_to_last_msgs_per_s'))} msg/s, readings {r.get('readings')}, "
                    f"above 15: {r.get('above_15')}/{r.get('readings_above_15_sent')}, "
                    f"max poll latency {fmt(r.get('max_poll_latency_s'), 2)} s"
                )
    if failed:
        print("\nfailed runs:")
        for r in failed:
            print(
                f"- {r.get('mode')} {r['shape']} {r['system']} rep {r.get('rep')}: {r.get('error')}"
            )


if __name__ == "__main__":
    main()
