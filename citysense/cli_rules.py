"""`citysense rules`: check a rule file, and explain which settings apply to a sensor.

``rules check`` prints every reason a file is refused, one line each (``<file>: <reason>``), and
exits 2. ``rules explain --api`` exits 1 with one line when the node cannot be reached or fails,
2 for a bad URL or a sensor the node does not know.
"""

from __future__ import annotations

import json
from collections.abc import Sized
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from citysense.cli_common import (
    FAILED,
    UNREACHABLE,
    JsonOption,
    RulesOption,
    TokenOption,
    bearer_headers,
    check_url,
    console,
    fail,
    one_line,
    refuse_unauthorized,
    rules_option,
)

rules_app = typer.Typer(
    help="Rule files: check one, see which settings apply to a sensor and why.",
    no_args_is_help=True,
)


@rules_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="A rules YAML file.", exists=True, dir_okay=False)],
) -> None:
    """Validate a rule file (rules and overrides); every reason on its own line, exit 2."""
    from rules import RuleError, load_rules

    try:
        rules = load_rules(path)
    except RuleError as exc:
        for reason in exc.reasons:
            typer.echo(f"{path}: {reason}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{path}: ok ({_count(rules.rules, 'rule')}, {_count(rules.overrides, 'override')})")


def _count(items: Sized, name: str) -> str:
    return f"{len(items)} {name}{'' if len(items) == 1 else 's'}"


@rules_app.command("explain")
def explain(
    sensor_id: Annotated[str, typer.Argument(help="The sensor: <station_id>.<local id>.")],
    rules: RulesOption = None,
    kind: Annotated[
        str | None,
        typer.Option(help="The sensor's kind (cover, pressure, pole); default: every rule."),
    ] = None,
    district: Annotated[
        str | None,
        typer.Option(help="Its district: the first 6 digits of its component id."),
    ] = None,
    station: Annotated[
        str | None, typer.Option(help="Its station (default: the part of its id before '.').")
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(
            callback=check_url,
            help="Ask a running node instead (its rules, and the sensor's kind and district"
            " from its station's birth), e.g. http://127.0.0.1:8000.",
        ),
    ] = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Each setting of each rule as it applies to one sensor, and the level it comes from:
    kind (the rule) -> district -> station -> sensor (docs/rules.md, "inheritance").

    Examples: citysense rules explain eb-0042.cover-03 --rules city.yaml --district 410105;
    citysense rules explain eb-0042.cover-03 --api http://127.0.0.1:8000
    """
    if api is not None:
        if rules is not None or district is not None or station is not None or kind is not None:
            raise typer.BadParameter(
                "--api asks the node: it takes no --rules, --kind, --district or --station",
                param_hint="--api",
            )
        document = _from_node(api, sensor_id, token)
    else:
        from protocol import SensorKind
        from rules.inherit import Scope
        from rules.inherit import explain as explain_rules

        if kind is not None and kind not in {k.value for k in SensorKind}:
            known = ", ".join(k.value for k in SensorKind)
            raise typer.BadParameter(f"{kind!r} is not a kind ({known})", param_hint="--kind")
        if district is not None and not (len(district) == 6 and district.isdigit()):
            raise typer.BadParameter(f"{district!r} is not 6 digits", param_hint="--district")
        rule_set = rules_option(rules)
        base = Scope.of(sensor_id, district)
        scope = Scope(sensor_id, station or base.station_id, district)
        document = explain_rules(rule_set, scope, kind)
    if as_json:
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    _print(document)


def _from_node(api: str, sensor_id: str, token: str | None) -> dict[str, Any]:
    import httpx

    try:
        with httpx.Client(base_url=api, timeout=10, headers=bearer_headers(token)) as client:
            answer = client.get(f"/api/v1/rules/effective/{sensor_id}")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise typer.BadParameter(f"{api}: {one_line(exc)}", param_hint="--api") from None
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        fail(f"cannot reach {api}: {one_line(exc)}", UNREACHABLE)
    except httpx.HTTPError as exc:
        fail(f"{api} failed to answer: {one_line(exc)}", FAILED)
    refuse_unauthorized(api, answer)
    if answer.status_code == 404:
        raise typer.BadParameter(f"the node at {api} does not know {sensor_id}")
    if answer.status_code != 200:
        fail(
            f"{api} answered {answer.status_code}: {one_line(Exception(answer.text[:200]))}", FAILED
        )
    try:
        body: dict[str, Any] = answer.json()
    except ValueError:
        fail(f"{api} did not answer JSON: is it a citysense node?", FAILED)
    return body


def _print(document: dict[str, Any]) -> None:
    where = ", ".join(
        f"{name} {document[key]}"
        for name, key in (("station", "station_id"), ("district", "district"), ("kind", "kind"))
        if document.get(key)
    )
    version = f" (rules version {document['version']})" if "version" in document else ""
    console.print(f"[bold]{document['sensor_id']}[/bold]: {where or 'unknown'}{version}")
    if not document["rules"]:
        console.print("no rule watches it")
    for rule in document["rules"]:
        state = "" if rule["enabled"] else " [red](disabled here)[/red]"
        table = Table(title=f"{rule['rule_id']}{state}", title_justify="left", expand=False)
        table.add_column("setting")
        table.add_column("value", overflow="fold")
        table.add_column("from")
        table.add_column("note", overflow="fold")
        for setting in rule["settings"]:
            if setting["path"] in ("title", "enabled"):
                continue
            level, scope = setting["level"], setting["scope"]
            origin = level if scope is None else f"{level} {scope}"
            style = "bold" if level in ("district", "station", "sensor") else ""
            table.add_row(
                setting["path"],
                json.dumps(setting["value"], ensure_ascii=False),
                f"[{style}]{origin}[/{style}]" if style else origin,
                setting.get("note", ""),
            )
        console.print(table)
        for line in rule["ignored"]:
            console.print(f"[yellow]ignored[/yellow] {line}")
