"""`citysense simulate`, `citysense backtest` and `citysense score`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from citysense.cli_common import (
    FAILED,
    UNREACHABLE,
    JsonOption,
    MqttHost,
    MqttPort,
    RulesOption,
    TokenOption,
    Verbose,
    bearer_headers,
    check_url,
    configure_logging,
    console,
    err_console,
    fail,
    refuse_unauthorized,
    rules_option,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx
    from rich.table import Table

    from center import CaseOut
    from citysense.backtest import BacktestResult
    from citysense.tuning import Gates, Sweep, Variant
    from recording.runs import RunRecord
    from rules import RuleSet
    from simulator.score import Score
    from simulator.truth import GroundTruth


def simulate(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario YAML (see scenarios/); omit with --live.")
    ] = None,
    out: Annotated[
        Path, typer.Option(file_okay=False, help="Directory the recording and truth go to.")
    ] = Path("runs"),
    live: Annotated[
        bool, typer.Option("--live", help="Run the seeded city live against a broker instead.")
    ] = False,
    mqtt_host: MqttHost = "127.0.0.1",
    mqtt_port: MqttPort = 1883,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0, help="Seed of the simulated city (default: the scenario's seed; --live: 7)."
        ),
    ] = None,
    incident_every: Annotated[
        float, typer.Option(help="--live: seconds between cover incidents.")
    ] = 20.0,
    verbose: Verbose = False,
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
                    seed=7 if seed is None else seed,
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
    if seed is not None and seed != loaded.seed:
        err_console.print(f"seed {seed} (the scenario file says {loaded.seed})")
        loaded = loaded.model_copy(update={"seed": seed})
    try:
        out.mkdir(parents=True, exist_ok=True)
        result = run_scenario(loaded, out)
    except OSError as exc:
        fail(f"cannot write to --out {out}: {exc.strerror or exc}")
    truth = result.truth
    messages = ", ".join(f"{count} {name}" for name, count in truth.messages.items() if count)
    console.print(
        f"{truth.scenario} (seed {truth.seed}): {truth.stations} stations, {truth.sensors}"
        f" sensors, {len(truth.incidents)} incidents, {len(truth.faults)} faults;"
        f" messages: {messages or 'none'}"
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
    report: Annotated[
        Path | None,
        typer.Option(
            help="Also write a self-contained HTML report (summary, a plot per incident, "
            "delays, the sweep curve; opens offline) to this file (needs --truth).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run a recording through ingest, the rules and a throw-away case store; list the cases,
    score them against the ground truth, compare rule sets or sweep a threshold.

    Examples: citysense backtest runs/cover-open.csrec --truth runs/cover-open.truth.json;
    ... --rules a.yaml --rules b.yaml (side by side); ... --sweep cover-open.when.above=10:40:5;
    ... --min-recall 1 --max-false-alarms 0 (exit 1 when a gate fails: for CI);
    ... --report runs/report.html (an HTML report with plots).
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
    if report is not None and truth is None:
        raise typer.BadParameter("a report needs --truth to score against", param_hint="--report")
    if report is not None and (report.is_dir() or not report.parent.is_dir()):
        problem = "is a directory" if report.is_dir() else f"no directory {report.parent}"
        raise typer.BadParameter(f"cannot write {report}: {problem}", param_hint="--report")
    metadata = _recording_metadata(recording)
    ground = None if truth is None else _truth_for(truth, metadata, recording)
    if ground is None:
        _list_cases(recording, paths[0], as_json)
        return
    try:
        plans = _plans(paths, parse_sweep(sweep) if sweep else None)
    except TuningError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sweep") from None
    kept: list[list[CaseOut]] | None = [] if report is not None else None
    variants = _scored(recording, ground, plans, quiet=as_json, cases=kept)
    failures = [line for variant in variants for line in gates.failures(variant)]
    if sweep:
        failures = _report_sweep(variants, gates, as_json)
    elif len(variants) > 1:
        _report_compare(variants, as_json)
    else:
        _print_score(variants[0].score, as_json)
    if report is not None and kept is not None:
        _write_report(report, recording, ground, plans, variants, kept, bool(sweep), as_json)
    if failures:
        for line in failures:
            err_console.print(f"gate failed: {line}")
        raise typer.Exit(1)


def _recording_metadata(recording: Path) -> dict[str, object]:
    from recording.format import RecordingError, RecordingReader

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
    cases: list[list[CaseOut]] | None = None,
) -> list[Variant]:
    """One backtest per plan, scored; a progress bar on stderr when there are several.
    ``cases`` (when given) receives each plan's cases, for the report."""
    from rich.progress import Progress

    from citysense.tuning import Variant
    from simulator.score import ScoredCase
    from simulator.score import score as score_run

    variants: list[Variant] = []
    with Progress(console=err_console, transient=True, disable=quiet or len(plans) < 2) as bar:
        task = bar.add_task("backtest", total=len(plans))
        for label, rule_set, value in plans:
            bar.update(task, description=label)
            opened = _run_backtest(recording, rule_set).cases
            if cases is not None:
                cases.append(opened)
            scored = map(ScoredCase.from_api, opened)
            variants.append(Variant(label, score_run(ground, scored, rule_set), value))
            bar.advance(task)
    return variants


def _write_report(
    path: Path,
    recording: Path,
    ground: GroundTruth,
    plans: list[tuple[str, RuleSet, float | None]],
    variants: Sequence[Variant],
    cases: Sequence[Sequence[CaseOut]],
    sweep: bool,
    as_json: bool,
) -> None:
    """``--report``: the HTML report (citysense/report.py), written atomically; one line says
    where (on stderr with --json, so stdout stays one document)."""
    from citysense.report import ReportCase, ReportVariant, build_report, write_report
    from citysense.tuning import recommend
    from recording.format import RecordingError

    entries = [
        ReportVariant(v.label, v.score, tuple(map(ReportCase.from_case, found)), rule_set, v.value)
        for v, found, (_, rule_set, _) in zip(variants, cases, plans, strict=True)
    ]
    best = recommend(variants) if sweep else None
    try:
        text = build_report(
            recording,
            ground,
            entries,
            sweep_name=variants[0].label.split("=")[0] if sweep else None,
            recommended=next((i for i, v in enumerate(variants) if v is best), None),
        )
        write_report(path, text)
    except (RecordingError, OSError) as exc:
        raise typer.BadParameter(f"cannot write {path}: {exc}", param_hint="--report") from None
    (err_console if as_json else console).print(
        f"report: {path}", markup=False, highlight=False, soft_wrap=True
    )


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
    from recording.format import RecordingError

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
    api: Annotated[
        str, typer.Option(callback=check_url, help="Base URL of a running center.")
    ] = "http://127.0.0.1:8000",
    rules: RulesOption = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Score only the run citysense replay --run-id made: the cases of its stations "
            "that arrived after it started (its run record, beside the truth file, says which)."
        ),
    ] = None,
    run_file: Annotated[
        Path | None,
        typer.Option(help="The run record (default: <name>.<run id>.run.json beside TRUTH)."),
    ] = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score the cases a running center opened against a run's ground truth.

    Example: citysense replay runs/cover-open.csrec --speed 100 --run-id lab1 ... then
    citysense score runs/cover-open.truth.json --run-id lab1 --api http://127.0.0.1:8000
    (without --run-id every case of the center counts: a demo's and earlier runs' too)
    """
    from simulator.score import ScoredCase, split_by_arrival
    from simulator.score import score as score_run

    ground = _read_ground(truth)
    rule_set = rules_option(rules)
    run = None if run_id is None and run_file is None else _run_record(truth, run_id, run_file)
    if run is not None:
        ground = _scoped_truth(ground, run)
    items = _live_cases(api, None if run is None else list(run.stations.values()), token)
    cases = [ScoredCase.from_api(item) for item in items]
    earlier: list[ScoredCase] = []
    if run is not None:
        cases, earlier = split_by_arrival(cases, run.started_at)
    result = score_run(ground, cases, rule_set)
    if run is None:
        _print_score(result, as_json)
    else:
        _print_run_score(result, run, len(earlier), as_json)


def _read_ground(path: Path) -> GroundTruth:
    from simulator.truth import read_truth

    try:
        return read_truth(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="TRUTH") from None


def _run_record(truth: Path, run_id: str | None, run_file: Path | None) -> RunRecord:
    """The record ``citysense replay --run-id`` wrote; by default beside the truth file."""
    from recording.runs import RunRecord, run_record_path

    if run_file is None:
        assert run_id is not None
        name = truth.name.removesuffix(".truth.json")
        if name == truth.name:
            name = truth.stem
        run_file = run_record_path(truth.parent, name, run_id)
        if not run_file.exists():
            raise typer.BadParameter(
                f"no run record {run_file}: replay the recording with --run-id {run_id} first "
                "(it writes the record beside the recording), or give --run-file",
                param_hint="--run-id",
            )
    try:
        run = RunRecord.read(run_file)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise typer.BadParameter(
            f"cannot read {run_file}: {exc}", param_hint="--run-file"
        ) from None
    if run_id is not None and run.run_id != run_id:
        raise typer.BadParameter(
            f"{run_file} is the record of run {run.run_id}, not {run_id}", param_hint="--run-id"
        )
    return run


def _scoped_truth(ground: GroundTruth, run: RunRecord) -> GroundTruth:
    """The truth under the run's ids, once it is clear the run replayed this truth's scenario."""
    from citysense.tuning import TuningError, check_belongs
    from recording.runs import RunPrefix

    try:
        check_belongs(ground, run.metadata, Path(run.recording))
    except TuningError as exc:
        raise typer.BadParameter(str(exc), param_hint="--run-id") from None
    absent = sorted(ground.named_stations - set(run.stations))
    if absent:
        raise typer.BadParameter(
            f"the truth names station {absent[0]}, which run {run.run_id} did not replay: "
            "the truth file is not of this run's recording",
            param_hint="--run-id",
        )
    prefix = RunPrefix(run.run_id)
    return ground.renamed(prefix.station, prefix.sensor)


def _live_cases(api: str, stations: list[str] | None, token: str | None) -> list[dict[str, object]]:
    """Every case of the center (``stations=None``), or of these stations; exit 1 when the
    center cannot be asked, 2 when it refuses the token."""
    import httpx

    items: list[dict[str, object]] = []
    try:
        with httpx.Client(base_url=api, timeout=30, headers=bearer_headers(token)) as client:
            for station in stations if stations is not None else [None]:
                items.extend(_case_pages(client, station))
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        fail(f"cannot reach {api}: {exc}", UNREACHABLE)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        fail(f"cannot read the cases from {api}: {exc}", FAILED)
    return items


def _case_pages(client: httpx.Client, station: str | None) -> list[dict[str, object]]:
    params: dict[str, str | int] = {"limit": 500}
    if station is not None:
        params["station_id"] = station
    items: list[dict[str, object]] = []
    while True:
        page = client.get("/api/v1/cases", params={**params, "offset": len(items)})
        refuse_unauthorized(str(client.base_url).rstrip("/"), page)
        page.raise_for_status()
        body = page.json()
        items.extend(body["items"])
        if not body["items"] or len(items) >= body["total"]:
            return items


def _print_run_score(result: Score, run: RunRecord, earlier: int, as_json: bool) -> None:
    """The score of one run, and what its scope left out."""
    started = run.started_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    if as_json:
        document = result.as_dict()
        document["run"] = {
            "run_id": run.run_id,
            "stations": len(run.stations),
            "started_at": run.started_at.isoformat().replace("+00:00", "Z"),
            "finished": run.finished_at is not None,
            "earlier_cases": earlier,
        }
        console.print_json(json.dumps(document))
        return
    _print_score(result, False)
    console.print(
        f"run {run.run_id}: the cases of its {len(run.stations)} stations ({run.prefix}...) "
        f"that arrived since {started}",
        soft_wrap=True,
    )
    if earlier:
        console.print(
            f"left out {earlier} case{'s' if earlier != 1 else ''} of these stations that "
            "arrived before the run started: "
            "was the run id used before?"
        )
    if run.finished_at is None:
        console.print("the run record has no end: the replay failed, was stopped or still runs")
