"""`citysense simulate`, `citysense backtest` and `citysense score`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from citysense.cli_common import (
    JsonOption,
    MqttHost,
    MqttPort,
    RulesOption,
    Seed,
    configure_logging,
    console,
    err_console,
    rules_option,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.table import Table

    from citysense.backtest import BacktestResult
    from citysense.tuning import Gates, Sweep, Variant
    from rules import RuleSet
    from simulator.score import Score
    from simulator.truth import GroundTruth


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


RulesList = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules",
        help="Rules YAML (default: the built-in rules). Give it several times to compare sets "
        "side by side (needs --truth).",
    ),
]


def backtest(
    recording: Annotated[Path, typer.Argument(help="A citysense recording (.csrec).")],
    rules: RulesList = None,
    truth: Annotated[
        Path | None, typer.Option(help="Ground truth to score the cases against.")
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            help="RULE.FIELD=START:STOP:STEP: run once per value of one rule field (e.g. "
            "cover-open.when.above=10:40:5) and recommend one (needs --truth)."
        ),
    ] = None,
    min_recall: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Fail (exit 1) when recall is below this (0-1)."),
    ] = None,
    max_false_alarms: Annotated[
        int | None, typer.Option(min=0, help="Fail (exit 1) with more false alarms than this.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run a recording through ingest, the rules and a throw-away case store; list the cases,
    score them against the ground truth, compare rule sets or sweep a threshold.

    Examples: citysense backtest runs/cover-open.csrec --truth runs/cover-open.truth.json;
    ... --rules a.yaml --rules b.yaml (side by side); ... --sweep cover-open.when.above=10:40:5;
    ... --min-recall 1 --max-false-alarms 0 (exit 1 when a gate fails: for CI).
    """
    from citysense.tuning import Gates, TuningError, parse_sweep

    paths: list[Path | None] = list(rules) if rules else [None]
    gates = Gates(min_recall, max_false_alarms)
    if (len(paths) > 1 or sweep) and truth is None:
        raise typer.BadParameter(
            "comparing rule sets or sweeping needs --truth", param_hint="--truth"
        )
    if (min_recall is not None or max_false_alarms is not None) and truth is None:
        raise typer.BadParameter("a gate needs --truth to score against", param_hint="--truth")
    if sweep and len(paths) > 1:
        raise typer.BadParameter(
            "--sweep changes one rule set: give at most one --rules", param_hint="--sweep"
        )
    metadata = _recording_metadata(recording)
    ground = None if truth is None else _truth_for(truth, metadata, recording)
    if ground is None:
        _list_cases(recording, paths[0], as_json)
        return
    try:
        plans = _plans(paths, parse_sweep(sweep) if sweep else None)
    except TuningError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sweep") from None
    variants = _scored(recording, ground, plans, quiet=as_json)
    failures = [line for variant in variants for line in gates.failures(variant)]
    if sweep:
        failures = _report_sweep(variants, gates, as_json)
    elif len(variants) > 1:
        _report_compare(variants, as_json)
    else:
        _print_score(variants[0].score, as_json)
    if failures:
        for line in failures:
            err_console.print(f"gate failed: {line}")
        raise typer.Exit(1)


def _recording_metadata(recording: Path) -> dict[str, object]:
    from simulator.recording import RecordingError, RecordingReader

    try:
        with RecordingReader(recording) as reader:
            return dict(reader.metadata)
    except (RecordingError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="RECORDING") from None


def _truth_for(path: Path, metadata: dict[str, object], recording: Path) -> GroundTruth:
    from citysense.tuning import TuningError, check_belongs
    from simulator.truth import read_truth

    try:
        ground = read_truth(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--truth") from None
    try:
        check_belongs(ground, metadata, recording)
    except TuningError as exc:
        raise typer.BadParameter(str(exc), param_hint="--truth") from None
    return ground


def _plans(
    paths: list[Path | None], sweep: Sweep | None
) -> list[tuple[str, RuleSet, float | None]]:
    from citysense.tuning import label_of, swept
    from rules import DEFAULT_RULES_FILE

    if sweep is None:
        return [(label_of(path), rules_option(path), None) for path in paths]
    source = paths[0] or DEFAULT_RULES_FILE
    rules_option(paths[0])  # the file itself is valid before any value is tried
    text = source.read_text(encoding="utf-8")
    return [
        (f"{sweep.name}={value:g}", swept(text, str(source), sweep, value), value)
        for value in sweep.values
    ]


def _scored(
    recording: Path,
    ground: GroundTruth,
    plans: list[tuple[str, RuleSet, float | None]],
    *,
    quiet: bool,
) -> list[Variant]:
    """One backtest per plan, scored; a progress bar on stderr when there are several."""
    from rich.progress import Progress

    from citysense.tuning import Variant
    from simulator.score import ScoredCase
    from simulator.score import score as score_run

    variants: list[Variant] = []
    with Progress(console=err_console, transient=True, disable=quiet or len(plans) < 2) as bar:
        task = bar.add_task("backtest", total=len(plans))
        for label, rule_set, value in plans:
            bar.update(task, description=label)
            cases = map(ScoredCase.from_api, _run_backtest(recording, rule_set).cases)
            variants.append(Variant(label, score_run(ground, cases, rule_set), value))
            bar.advance(task)
    return variants


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _variant_table(variants: Sequence[Variant], first: str, best: Variant | None) -> Table:
    from rich.table import Table

    table = Table(title=f"{variants[0].score.scenario}: {variants[0].score.incidents} incidents")
    for column in (first, "recall", "false alarms", "delay p50/p95 s", "missed"):
        table.add_column(column, overflow="fold")
    for variant in variants:
        score = variant.score
        mark = " ◀ recommended" if variant is best else ""
        table.add_row(
            (variant.label if variant.value is None else f"{variant.value:g}") + mark,
            f"{_percent(score.recall)} ({score.detected}/{score.incidents})",
            str(score.false_alarms),
            f"{_seconds(score.delay_percentile(50))} / {_seconds(score.delay_percentile(95))}",
            ", ".join(score.missed) or "-",
        )
    return table


def _report_compare(variants: Sequence[Variant], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({"variants": [v.row() for v in variants]}))
        return
    console.print(_variant_table(variants, "rules", None))


def _report_sweep(variants: Sequence[Variant], gates: Gates, as_json: bool) -> list[str]:
    """Print the sweep and its recommendation; the gates judge the recommended value."""
    from citysense.tuning import recommend

    best = recommend(variants)
    failures = gates.failures(best) if best is not None else []
    if as_json:
        document = {
            "sweep": variants[0].label.split("=")[0],
            "variants": [v.row() for v in variants],
            "recommended": None if best is None else best.value,
        }
        console.print_json(json.dumps(document))
        return failures
    console.print(_variant_table(variants, variants[0].label.split("=")[0], best))
    if best is None:
        console.print("no value to recommend: no incident of a watched kind in the truth")
    else:
        console.print(
            f"recommended: {best.label} (highest recall, then fewest false alarms, then the "
            "shortest median delay)"
        )
    return failures


def _run_backtest(recording: Path, rule_set: RuleSet) -> BacktestResult:
    """One backtest; a recording that cannot be read is a one-line refusal (exit 2)."""
    from citysense.backtest import backtest as run_backtest
    from simulator.recording import RecordingError

    try:
        return asyncio.run(run_backtest(recording, rule_set))
    except (RecordingError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="RECORDING") from None


def _list_cases(recording: Path, path: Path | None, as_json: bool) -> None:
    result = _run_backtest(recording, rules_option(path))
    if as_json:
        console.print_json(json.dumps([c.model_dump(mode="json") for c in result.cases]))
        return
    rejected = {
        s.labels["reason"]: int(s.value)
        for metric in result.metrics.rejected.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }
    shown = ", ".join(f"{reason} {count}" for reason, count in sorted(rejected.items()))
    console.print(
        f"{result.records} records, {len(result.cases)} cases; rejected {shown or 'none'}; "
        f"rule engine: {_engine_summary(result.engine.counters())}"
    )
    for case in result.cases:
        console.print(
            f"  case {case.id}: {case.class_code} {case.class_name} {case.sensor_id} "
            f"started {case.started_at:%Y-%m-%d %H:%M:%S}Z status {case.status}"
        )


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
    result = score_run(read_truth(truth), map(ScoredCase.from_api, items), rules_option(rules))
    _print_score(result, as_json)
