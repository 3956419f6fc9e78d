"""`citysense lab run PATH...`: run scenario files and hold each to its stated outcome.

Every scenario in ``scenarios/`` says what it is meant to show (``expect:``: recall, one case per
incident, false alarms, delay, metric counters). ``lab run`` simulates each one, backtests it on
the rules (``--rules``, default the built-in ones), scores it and checks it: a table with PASS or
FAIL and the reasons per scenario, or ``--json``. Exit 0 when all pass, 1 when any fails, 2 for
bad input (a missing path, no scenarios, an invalid scenario or rules file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from citysense.cli_common import (
    JsonOption,
    RulesOption,
    configure_logging,
    console,
    err_console,
    one_line,
    rules_option,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from rich.table import Table

    from citysense.lab import LabResult

lab_app = typer.Typer(
    help="The scenario library held to the outcomes its files state (expect:).",
    no_args_is_help=True,
)

Paths = Annotated[
    list[Path],
    typer.Argument(
        help="Scenario files, or directories of them (*.yaml, sorted).", show_default=False
    ),
]


@lab_app.command("run")
def run(
    paths: Paths,
    rules: RulesOption = None,
    as_json: JsonOption = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Log ingest's warnings (the rejects a fault causes) too."),
    ] = False,
) -> None:
    """Simulate, backtest and score each scenario and check it against its expect: block.

    Example: citysense lab run scenarios/ (the whole library, about 70 s);
    citysense lab run scenarios/clock-reset.yaml --rules my-rules.yaml --json
    """
    configure_logging(verbose)
    with _quiet(not verbose):
        _run(paths, rules, as_json)


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """Ingest's warnings off while the lab runs (a garbage scenario's rejects are expected, and
    counted); the level is put back after."""
    root = logging.getLogger()
    level = root.level
    if quiet:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _run(paths: Sequence[Path], rules: Path | None, as_json: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from citysense.lab import LabError, load_library, run_one, scenario_files
    from simulator.scenario import ScenarioError

    try:
        files = scenario_files(paths)
    except LabError as exc:
        raise typer.BadParameter(one_line(exc), param_hint="PATH") from None
    rule_set = rules_option(rules)
    try:
        library = load_library(files)
    except ScenarioError as exc:
        raise typer.BadParameter(one_line(exc), param_hint="PATH") from None
    began = time.perf_counter()
    results: list[LabResult] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err_console, transient=True, disable=as_json) as bar:
        task = bar.add_task("lab", total=len(library))
        for path, scenario in library:
            bar.update(task, description=scenario.name)
            try:
                result = asyncio.run(run_one(path, scenario, rule_set))
            except ScenarioError as exc:
                raise typer.BadParameter(one_line(exc), param_hint="PATH") from None
            results.append(result)
            if not as_json:
                verdict = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
                bar.console.print(f"{verdict} {result.scenario} ({result.seconds:.1f} s)")
            bar.advance(task)
    seconds = time.perf_counter() - began
    label = str(rules) if rules else "built-in rules"
    if as_json:
        document = {
            "rules": label,
            "passed": all(r.passed for r in results),
            "scenarios": len(results),
            "failed": [r.scenario for r in results if not r.passed],
            "seconds": round(seconds, 1),
            "results": [r.as_dict() for r in results],
        }
        console.print_json(json.dumps(document))
    else:
        console.print(_table(results))
        console.print(_summary(results, seconds, label))
    if not all(r.passed for r in results):
        raise typer.Exit(1)


def _summary(results: Sequence[LabResult], seconds: float, rules: str) -> str:
    failed = [r.scenario for r in results if not r.passed]
    line = (
        f"{len(results)} scenario(s): {len(results) - len(failed)} passed, {len(failed)} failed "
        f"({rules}, {seconds:.0f} s)"
    )
    return line + (f"; failed: {', '.join(failed)}" if failed else "")


def _table(results: Sequence[LabResult]) -> Table:
    from rich.table import Table

    table = Table(title="scenario library")
    for column in ("scenario", "incidents", "recall", "cases/incident", "false alarms"):
        table.add_column(column)
    for column in ("delay p50 s", "counters", "result"):
        table.add_column(column)
    table.add_column("reasons", overflow="fold")
    for r in results:
        expect = r.expect
        recall = "—" if r.recall is None else f"{r.recall:.0%} (≥ {expect.recall:.0%})"
        delay = r.delay_percentile(50)
        delay_text = "—" if delay is None else f"{delay:.0f}"
        if expect.max_delay_s is not None:
            delay_text += f" (≤ {expect.max_delay_s:g})"
        counters = "—"
        if r.counters:
            passed = sum(c.ok for c in r.counters)
            counters = f"{'ok' if r.counters_ok else 'FAIL'} {passed}/{len(r.counters)}"
        table.add_row(
            r.scenario,
            str(r.incidents),
            recall,
            "ok" if r.cases_ok else "FAIL",
            f"{r.false_alarms} (≤ {expect.max_false_alarms})",
            delay_text,
            counters,
            "[green]PASS[/]" if r.passed else "[red]FAIL[/]",
            "\n".join(r.failures) or "-",
        )
    return table
