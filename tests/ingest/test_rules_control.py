"""Rules changed while ingest runs: validated, applied between units of work with the state of
surviving rules kept, versioned with author and diff, refused with every reason."""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from center import CaseBroadcaster, CaseService, CaseStore, create_app, create_engine
from center.auth import Role
from ingest.fakes import MemoryAlerts, MemoryDeadLetters, MemorySink
from ingest.pipeline import IngestPipeline
from ingest.rules_control import RulesControl
from protocol import Channel, Reading, SensorKind, StationTopic, encode
from rules import ClockPolicy, ReadOnlyRulesError, RuleEngine, RuleError, parse_rules
from tests.center.auth import signed_in_client
from tests.factories import batch, birth, cover_info, tilt

TELEMETRY = str(StationTopic("st-1", Channel.TELEMETRY))
RULE = (
    "rules:\n- {{id: cover-tilt, title: {title}, kind: cover, case: {{category: component}},"
    " when: {{field: tilt_deg, above: {above}}}, hold: 3}}\n"
)
OTHER = (
    "- {id: pole-tilt, title: p, kind: pole, case: {category: component},"
    " when: {field: tilt_deg, above: 10}, hold: 1}\n"
)


def text(title: str = "t", above: float = 15) -> str:
    return RULE.format(title=title, above=above)


def make_pipeline(rules: str) -> IngestPipeline:
    engine = RuleEngine(parse_rules(rules), clock=ClockPolicy(allowed_lateness=0))
    return IngestPipeline(
        engine=engine,
        alerts=MemoryAlerts(),
        dead_letters=MemoryDeadLetters(),
        sinks=[MemorySink()],
        clock=lambda: datetime(2026, 7, 1, 8, 1, tzinfo=UTC),
    )


def controlled(rules: str, tmp_path: Path) -> tuple[IngestPipeline, RulesControl]:
    """A pipeline on ``rules``, read from a file as ``serve --rules`` does."""
    path = tmp_path / "rules.yaml"
    path.write_text(rules, encoding="utf-8")
    pipeline = make_pipeline(rules)
    return pipeline, RulesControl(pipeline, rules, path)


def opened(pipeline: IngestPipeline) -> list[float]:
    """When each alert opened, in seconds after the first reading."""
    assert isinstance(pipeline.alerts, MemoryAlerts)
    first = tilt(0, 0).ts
    return [(a.at - first).total_seconds() for a, _ in pipeline.alerts.alerts if a.state == "open"]


async def feed(pipeline: IngestPipeline, seconds: range, value: float = 70.0) -> None:
    for second in seconds:
        await pipeline.handle(TELEMETRY, encode(batch([tilt(second, value)], seq=second)))


async def test_a_pending_hold_survives_a_reload_and_opens_when_it_would_have(
    tmp_path: Path,
) -> None:
    steady = make_pipeline(text())
    await feed(steady, range(6))
    reloaded, control = controlled(text(), tmp_path)
    await feed(reloaded, range(2))  # pending: 2 s of the 3 s hold
    version = await control.apply(text(title="renamed", above=20), "ana")
    assert version.version == 2
    await feed(reloaded, range(2, 6))
    assert opened(reloaded) == opened(steady) == [3.0]  # the hold kept its start
    assert reloaded.engine.rules.rule("cover-tilt").title == "renamed"
    assert reloaded.metrics.registry.get_sample_value("citysense_rules_version") == 2


async def test_an_open_alert_stays_open_and_a_removed_rule_is_dropped_and_counted(
    tmp_path: Path,
) -> None:
    pipeline, control = controlled(text() + OTHER, tmp_path)
    await feed(pipeline, range(5))
    assert opened(pipeline) == [3.0]
    pole = "st-1.pole-01"
    reading = Reading(
        sensor_id=pole, kind=SensorKind.POLE, ts=tilt(0, 0).ts, values={"tilt_deg": 40}
    )
    await pipeline.handle(TELEMETRY, encode(batch([reading], seq=99)))
    await control.apply(text(), "ana")  # the pole rule goes
    assert pipeline.engine.stats.dropped_tracks == 1
    await feed(pipeline, range(5, 9))
    assert opened(pipeline) == [3.0]  # still open: no second case
    await feed(pipeline, range(9, 12), value=1.0)
    assert isinstance(pipeline.alerts, MemoryAlerts)
    assert [a.state for a, _ in pipeline.alerts.alerts] == ["open", "cleared"]


async def test_an_invalid_set_is_refused_with_every_reason_and_the_old_one_runs_on(
    tmp_path: Path,
) -> None:
    pipeline, control = controlled(text(), tmp_path)
    engine = pipeline.engine
    broken = (
        "rules:\n- {id: a, kind: cover, case: {category: component}, when: {field: tilt_deg}}\n"
        "- {id: b, kind: nothing, case: {category: component}, when: {field: x, above: 1}}\n"
    )
    with pytest.raises(RuleError) as refused:
        await control.apply(broken, "ana")
    assert len(refused.value.reasons) >= 2
    assert any("rule 'a'" in reason for reason in refused.value.reasons)
    assert any("rule 'b'" in reason for reason in refused.value.reasons)
    assert pipeline.engine is engine
    assert control.current.version == 1
    assert (
        pipeline.metrics.registry.get_sample_value(
            "citysense_rules_reloads_total", {"outcome": "refused"}
        )
        == 1
    )


async def test_versions_carry_author_diff_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text(), encoding="utf-8")
    history = tmp_path / "data" / "rules.history.jsonl"  # a first start: no data directory yet
    control = RulesControl(make_pipeline(text()), text(), path, history_path=history)
    await control.apply(text(above=25), "ana")
    assert path.read_text(encoding="utf-8") == text(above=25)  # written for the next start
    latest = control.current
    assert (latest.version, latest.author, latest.source) == (2, "ana", "api")
    assert len(history.read_text(encoding="utf-8").splitlines()) == 2  # the first start's too
    assert "-  when: {field: tilt_deg, above: 15}" not in latest.diff  # one-line rule: whole line
    assert "above: 15" in latest.diff
    assert "above: 25" in latest.diff
    again = RulesControl(make_pipeline(text(above=25)), text(above=25), path, history_path=history)
    assert [v.version for v in again.history] == [1, 2]
    path.write_text(text(above=30), encoding="utf-8")  # edited while the node was down
    restarted = RulesControl(
        make_pipeline(text(above=30)), text(above=30), path, history_path=history
    )
    assert [(v.version, v.source) for v in restarted.history][-1] == (3, "start")


async def test_an_edited_file_is_applied_and_a_broken_edit_refused_once(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text(), encoding="utf-8")
    pipeline = make_pipeline(text())
    control = RulesControl(pipeline, text(), path)
    assert await control.check_file() is None  # unchanged
    path.write_text(text(above=40), encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a different mtime whatever the clock's resolution
    version = await control.check_file()
    assert version is not None
    assert (version.version, version.source) == (2, "file")
    assert pipeline.engine.rules.rule("cover-tilt").model_dump()["when"]["above"] == 40
    path.write_text("rules: [", encoding="utf-8")
    os.utime(path, ns=(2, 2))
    assert await control.check_file() is None
    assert control.refused == 1
    assert control.current.version == 2
    os.utime(path, ns=(3, 3))  # touched again, same broken content: not refused again
    assert await control.check_file() is None
    assert control.refused == 1


async def test_a_node_on_the_built_in_rules_refuses_a_put() -> None:
    control = RulesControl(make_pipeline(text()), text())
    with pytest.raises(ReadOnlyRulesError):
        await control.apply(text(above=20), "ana")


def _client(control: RulesControl | None) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """An engineer's client of an app with this rules control."""
    service = CaseService(CaseStore(create_engine("sqlite+aiosqlite://")), CaseBroadcaster())
    return signed_in_client(
        lambda auth: create_app(service, auth=auth, rules=control), Role.ENGINEER
    )


async def test_the_api_shows_versions_applies_refuses_with_reasons(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text(), encoding="utf-8")
    control = RulesControl(make_pipeline(text()), text(), path)
    async with _client(control) as client:
        body = (await client.get("/api/v1/rules")).json()
        assert body["version"] == 1
        assert body["rules"][0]["id"] == "cover-tilt"
        answer = await client.put("/api/v1/rules", json={"yaml": text(above=33), "author": "ana"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 2
        refused = await client.put("/api/v1/rules", json={"yaml": "rules: []", "author": "ana"})
        assert refused.status_code == 422
        assert refused.json()["reasons"]
        history = (await client.get("/api/v1/rules")).json()["history"]
        assert [(v["version"], v["author"]) for v in history] == [(1, "file"), (2, "ana")]
        assert "above: 33" in history[1]["diff"]
    readonly = RulesControl(make_pipeline(text()), text())
    async with _client(readonly) as client:
        answer = await client.put("/api/v1/rules", json={"yaml": text(above=20), "author": "ana"})
        assert answer.status_code == 409
    async with _client(None) as client:
        assert (await client.get("/api/v1/rules")).status_code == 503


async def feed_sensor(
    pipeline: IngestPipeline, sensor: str, seconds: range, value: float, seq0: int
) -> None:
    for second in seconds:
        reading = tilt(second, value, sensor)
        await pipeline.handle(TELEMETRY, encode(batch([reading], seq=seq0 + second)))


async def test_a_shadow_set_reports_what_it_would_open_and_miss_and_opens_no_case(
    tmp_path: Path,
) -> None:
    pipeline, control = controlled(text(above=15), tmp_path)
    await control.start_shadow(text(above=25), "ana")
    await feed_sensor(pipeline, "st-1.cover-01", range(6), 20.0, 0)  # live only
    await feed_sensor(pipeline, "st-1.cover-02", range(6), 60.0, 100)  # both
    assert isinstance(pipeline.alerts, MemoryAlerts)
    assert len(pipeline.alerts.alerts) == 2  # the live cases; the shadow opened none
    shadow = control.shadow
    assert shadow is not None
    report = shadow.report()
    assert report["live_opened"] == 2
    assert report["shadow_opened"] == 1
    assert [o["sensor_id"] for o in report["only_live"]] == ["st-1.cover-01"]
    assert report["only_shadow"] == []
    assert [(o["sensor_id"], o["shadow_earlier_s"]) for o in report["both"]] == [
        ("st-1.cover-02", 0.0)
    ]
    await control.start_shadow(text(above=5), "ana")  # a more sensitive candidate
    await feed_sensor(pipeline, "st-1.cover-03", range(6), 10.0, 200)
    assert control.shadow is not None
    again = control.shadow.report()
    assert [o["sensor_id"] for o in again["only_shadow"]] == ["st-1.cover-03"]
    stopped = await control.stop_shadow()
    assert stopped is not None
    assert control.shadow is None


async def test_a_failing_shadow_stops_itself_and_the_live_rules_run_on(tmp_path: Path) -> None:
    pipeline, control = controlled(text(), tmp_path)
    shadow = await control.start_shadow(text(above=25), "ana")

    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the candidate's path")

    shadow.engine.process = broken  # type: ignore[assignment, method-assign]
    await feed(pipeline, range(6))
    assert opened(pipeline) == [3.0]
    assert shadow.report()["failed"] == "RuntimeError: a bug in the candidate's path"


async def test_the_shadow_api(tmp_path: Path) -> None:
    _, control = controlled(text(), tmp_path)
    async with _client(control) as client:
        assert (await client.get("/api/v1/rules/shadow")).status_code == 404
        started = await client.put(
            "/api/v1/rules/shadow", json={"yaml": text(above=40), "author": "ana"}
        )
        assert started.status_code == 200, started.text
        assert started.json()["author"] == "ana"
        refused = await client.put(
            "/api/v1/rules/shadow", json={"yaml": "rules: [", "author": "ana"}
        )
        assert refused.status_code == 422
        assert (await client.get("/api/v1/rules/shadow")).json()["batches"] == 0
        assert (await client.delete("/api/v1/rules/shadow")).status_code == 200
        assert (await client.delete("/api/v1/rules/shadow")).status_code == 404


DISTRICT = "overrides:\n- {rule: cover-tilt, district: '410105', set: {when: {above: 60}}}\n"


async def test_a_district_override_applies_once_the_birth_names_the_district(
    tmp_path: Path,
) -> None:
    """The factories' covers are in district 410105 (their component ids): 50° opens a case on
    the kind's 15° but not on the district's 60°, and the API says which applies and why."""
    pipeline, control = controlled(text() + DISTRICT, tmp_path)
    state = str(StationTopic("st-1", Channel.STATE))
    await pipeline.handle(state, encode(birth("st-1", [cover_info("st-1.cover-01")])))
    await feed_sensor(pipeline, "st-1.cover-01", range(10), 50.0, 0)
    await feed_sensor(pipeline, "st-1.cover-02", range(10), 50.0, 100)  # no birth names it
    assert isinstance(pipeline.alerts, MemoryAlerts)
    assert [a.sensor_id for a, _ in pipeline.alerts.alerts] == ["st-1.cover-02"]
    async with _client(control) as client:
        answer = await client.get("/api/v1/rules/effective/st-1.cover-01")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["version"], body["district"], body["kind"]) == (1, "410105", "cover")
        (rule,) = body["rules"]
        above = next(s for s in rule["settings"] if s["path"] == "when.above")
        assert (above["value"], above["level"], above["scope"]) == (60.0, "district", "410105")
        other = (await client.get("/api/v1/rules/effective/st-1.cover-02")).json()
        above = next(s for s in other["rules"][0]["settings"] if s["path"] == "when.above")
        assert (other["district"], above["value"], above["level"]) == (None, 15.0, "kind")
        missing = await client.get("/api/v1/rules/effective/st-9.nothing")
        assert missing.status_code == 404


async def test_every_alert_names_the_rule_set_version_it_came_from(tmp_path: Path) -> None:
    pipeline, control = controlled(text(), tmp_path)
    await feed(pipeline, range(5))
    await control.apply(text(above=20), "ana")
    await feed(pipeline, range(5, 60), value=10.0)  # clears
    await feed(pipeline, range(60, 66))  # opens again under version 2
    assert isinstance(pipeline.alerts, MemoryAlerts)
    versions = [(a.state, a.rules_version) for a, _ in pipeline.alerts.alerts]
    assert versions == [("open", 1), ("cleared", 2), ("open", 2)]
