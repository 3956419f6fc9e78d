"""`citysense simulate`, `citysense backtest` and `citysense score`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from citysense.cli_common import MqttHost, MqttPort, Seed, configure_logging, console

if TYPE_CHECKING:
    from rules import RuleSet
    from simulator.score import Score

RulesOption = Annotated[
    Path | None, typer.Option("--rules", help="Rules YAML (default: the built-in rules).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _rules(path: Path | None) -> RuleSet:
    from rules import DEFAULT_RULES_FILE, RuleError, load_rules

    try:
        return load_rules(path or DEFAULT_RULES_FILE)
    except RuleError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rules") from None


def simulate(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario YAML (see scenarios/); omit with --live.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where the recording and truth go.")] = Path("runs"),
    live: Annotated[
        bool, typer.Option(help="Run the seeded city live against a broker instead.")
    ] = False,
    mqtt_host: MqttHost = "127.0.0.1",
    mqtt_port: MqttPort = 1883,
    seed: Seed = 7,
    incident_every: Annotated[
        float, typer.Option(help="--live: seconds between cover incidents.")
    ] = 20.0,
    verbose: bool = False,
) -> None:
    """Run a scenario in simulated time into a recording plus its ground truth, or --live.

    Example: citysense simulate scenarios/cover-open.yaml --out runs/ writes
    runs/cover-open.csrec and runs/cover-open.truth.json; then
    citysense backtest runs/cover-open.csrec --truth runs/cover-open.truth.json
    """
    configure_logging(verbose)
    if live:
        from citysense.simulate import run_city

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                run_city(
                    mqtt_host=mqtt_host,
                    mqtt_port=mqtt_port,
                    seed=seed,
                    incident_every=incident_every,
                    console=console,
                )
            )
        return
    if scenario is None:
        raise typer.BadParameter("give a scenario file, or --live", param_hint="SCENARIO")
    from simulator.run import run_scenario
    from simulator.scenario import ScenarioError, load_scenario

    try:
        loaded = load_scenario(scenario)
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc), param_hint="SCENARIO") from None
    result = run_scenario(loaded, out)
    truth = result.truth
    console.print(
        f"{truth.scenario}: {truth.stations} stations, {truth.sensors} sensors, "
        f"{len(truth.incidents)} incidents, {len(truth.faults)} faults, messages {truth.messages}"
    )
    console.print(f"recording: {result.recording}\nground truth: {result.truth_path}")


def _pair(p50: float | None, p95: float | None) -> str:
    return "—" if p50 is None or p95 is None else f"{p50:.0f} / {p95:.0f}"


def _print_score(result: Score, as_json: bool) -> None:
    from rich.table import Table

    document = result.as_dict()
    if as_json:
        console.print_json(json.dumps(document))
        return
    table = Table(title=f"{result.scenario}: {result.cases} cases")
    columns = ("kind", "incidents", "status", "recall", "delay p50/p95 s", "latency p50/p95 s")
    for column in (*columns, "dup", "wrong"):
        table.add_column(column)
    for kind in document["kinds"]:
        recall = "—" if kind["recall"] is None else f"{kind['recall']:.0%}"
        table.add_row(
            kind["kind"],
            str(kind["incidents"]),
            kind["status"],
            recall,
            _pair(kind["delay_p50_s"], kind["delay_p95_s"]),
            _pair(kind["latency_p50_s"], kind["latency_p95_s"]),
            str(kind["duplicates"]),
            str(kind["wrong_class"]),
        )
    console.print(table)
    console.print(
        f"false alarms: {result.false_alarms} "
        f"({result.false_alarms_per_1000_sensor_days:.2f} per 1,000 sensor-days "
        f"over {result.sensor_days:.2f} sensor-days)"
    )


def backtest(
    recording: Annotated[Path, typer.Argument(help="A citysense recording (.csrec).")],
    rules: RulesOption = None,
    truth: Annotated[
        Path | None, typer.Option(help="Ground truth to score the cases against.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run a recording through ingest, the rules and a throw-away case store; list the cases.

    Example: citysense backtest runs/cover-open.csrec --truth runs/cover-open.truth.json
    --rules my-rules.yaml
    """
    from citysense.backtest import backtest as run_backtest
    from simulator.recording import RecordingError
    from simulator.score import ScoredCase
    from simulator.score import score as score_run
    from simulator.truth import read_truth

    rule_set = _rules(rules)
    try:
        result = asyncio.run(run_backtest(recording, rule_set))
    except (RecordingError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="RECORDING") from None
    rejected = {
        s.labels["reason"]: int(s.value)
        for metric in result.metrics.rejected.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }
    if not as_json:
        console.print(
            f"{result.records} records, {len(result.cases)} cases; rejected {rejected or 'none'}; "
            f"rule engine: {_engine_summary(result.engine.counters())}"
        )
        for case in result.cases:
            console.print(
                f"  case {case.id}: {case.class_code} {case.class_name} {case.sensor_id} "
                f"started {case.started_at:%Y-%m-%d %H:%M:%S}Z status {case.status}"
            )
    if truth is not None:
        scored = score_run(read_truth(truth), map(ScoredCase.from_api, result.cases), rule_set)
        _print_score(scored, as_json)
    elif as_json:
        console.print_json(json.dumps([c.model_dump(mode="json") for c in result.cases]))


def _engine_summary(counters: dict[str, int]) -> str:
    shown = {name: value for name, value in counters.items() if value}
    return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in shown.items()) or "-"


def score(
    truth: Annotated[Path, typer.Argument(help="Ground truth (.truth.json) of the run.")],
    api: Annotated[str, typer.Option(help="Base URL of a running center.")] = (
        "http://127.0.0.1:8000"
    ),
    rules: RulesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score the cases a running center opened against a run's ground truth.

    Example: citysense replay runs/cover-open.csrec --speed 100 ... then
    citysense score runs/cover-open.truth.json --api http://127.0.0.1:8000
    """
    import httpx

    from simulator.score import ScoredCase
    from simulator.score import score as score_run
    from simulator.truth import read_truth

    items: list[dict[str, object]] = []
    with httpx.Client(base_url=api, timeout=30) as client:
        while True:
            page = client.get("/api/v1/cases", params={"limit": 500, "offset": len(items)})
            page.raise_for_status()
            body = page.json()
            items.extend(body["items"])
            if not body["items"] or len(items) >= body["total"]:
                break
    result = score_run(read_truth(truth), map(ScoredCase.from_api, items), _rules(rules))
    _print_score(result, as_json)
