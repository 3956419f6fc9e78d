"""Rules as versioned configuration, changed while ingest runs.

A new rule set (from ``PUT /api/v1/rules`` or an edit of the rules file, which ``watch`` polls)
is validated first: an invalid one is refused with every reason and the running set stays. A
valid one is applied between two units of work (under the pipeline's ``evaluating`` lock): the
engine's state is snapshotted and restored under the new rules (``rules.snapshot``), so every
rule whose id survives keeps its pending holds, open incidents and baselines, and the state of
removed rules is dropped and counted (``dropped_tracks``). Nothing that arrives meanwhile is
lost: the consumer waits for the lock like it waits for any unit of work.

Every applied set is a version: number, time, author, where it came from (``start``, ``api``,
``file``), its SHA-256, its text and a unified diff against the previous one. The history is
kept in the node's data directory (``rules.history.jsonl`` beside ingest's checkpoint) and
survives restarts. A node on the built-in rules refuses ``PUT`` (there is no file to write).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.pipeline import IngestPipeline
from ingest.shadow import Shadow
from rules import ReadOnlyRulesError, RuleError, RuleSet, parse_rules
from rules.inherit import Scope, explain
from rules.snapshot import restore, snapshot

log = logging.getLogger(__name__)

Source = Literal["start", "api", "file"]
WATCH_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class RulesVersion:
    version: int
    at: datetime
    author: str
    source: Source
    sha256: str
    text: str
    diff: str
    """Unified diff from the previous version ("" for the first)."""

    def as_json(self) -> str:
        document = asdict(self) | {"at": self.at.isoformat()}
        return json.dumps(document, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> RulesVersion:
        data: dict[str, Any] = json.loads(line)
        return cls(**(data | {"at": datetime.fromisoformat(data["at"])}))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class RulesControl:
    def __init__(
        self,
        pipeline: IngestPipeline,
        text: str,
        path: Path | None = None,
        *,
        history_path: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pipeline = pipeline
        self.path = path
        self.clock = clock
        self.history_path = history_path
        """Where the versions are kept (the node's data directory); None: in memory only."""
        self.history: list[RulesVersion] = self._load_history()
        self.applied = 0
        self.refused = 0
        self._refused_sha: str | None = None
        self._seen: tuple[int, int] | None = self._stat()
        if not self.history or self.history[-1].sha256 != _sha(text):
            self._record(text, "file" if path is not None else "built-in", "start")
        pipeline.rules_version = self.current.version
        pipeline.metrics.registry.register(_RulesCollector(self))

    @property
    def current(self) -> RulesVersion:
        return self.history[-1]

    def effective(self, sensor_id: str) -> dict[str, Any] | None:
        """The running rules' settings for one sensor and the level each comes from
        (``rules.inherit.explain``); None for a sensor no birth named and no reading carried."""
        engine, registry = self.pipeline.engine, self.pipeline.registry
        info, seen = registry.sensor(sensor_id), engine.sensors.get(sensor_id)
        if info is None and seen is None:
            return None
        kind = info.kind.value if info is not None else seen.kind if seen is not None else ""
        station = registry.owner(sensor_id) or (
            seen.station if seen is not None else Scope.of(sensor_id).station_id
        )
        district = registry.district(sensor_id) or engine.districts.get(sensor_id)
        found = explain(engine.rules, Scope(sensor_id, station, district), kind)
        return {**found, "version": self.current.version}

    async def apply(self, text: str, author: str, source: Source = "api") -> RulesVersion:
        """Validate ``text`` and run it from the next unit of work on; an ``api`` version is
        also written to the rules file (atomically). Raises ``RuleError`` with every reason
        (the running set stays) or, for ``api`` without a rules file, ``ReadOnlyRulesError``."""
        if source == "api" and self.path is None:
            raise ReadOnlyRulesError(
                "this node runs the built-in rules: start it with --rules FILE"
            )
        try:
            rules = parse_rules(text, str(self.path or "<rules>"))
        except RuleError:
            self.refused += 1
            raise
        if _sha(text) == self.current.sha256:
            return self.current
        if source == "api" and self.path is not None:
            await asyncio.to_thread(_write_atomically, self.path, text)
            self._seen = self._stat()
        await self._swap(rules)
        self.applied += 1
        version = self._record(text, author, source)
        log.info("rules version %d applied (%s, by %s)", version.version, source, author)
        return version

    async def start_shadow(self, text: str, author: str) -> Shadow:
        """Evaluate ``text`` beside the running rules from the next unit of work on (replacing
        a shadow run already going); raises ``RuleError`` with every reason."""
        rules = parse_rules(text, "<shadow rules>")
        async with self.pipeline.evaluating:
            shadow = Shadow.start(rules, self.pipeline.engine, _sha(text), author, self.clock())
            self.pipeline.shadow = shadow
        log.info("shadow rules %s started by %s", shadow.version[:12], author)
        return shadow

    async def stop_shadow(self) -> Shadow | None:
        async with self.pipeline.evaluating:
            shadow, self.pipeline.shadow = self.pipeline.shadow, None
        return shadow

    @property
    def shadow(self) -> Shadow | None:
        return self.pipeline.shadow

    async def check_file(self) -> RulesVersion | None:
        """Apply the rules file when it changed since it was last seen; a file that does not
        validate is refused (once per content) and the running set stays."""
        stat = self._stat()
        if self.path is None or stat is None or stat == self._seen:
            return None
        self._seen = stat
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        except OSError as exc:
            log.error("rules file %s unreadable (%s); the running rules stay", self.path, exc)
            return None
        if _sha(text) in (self.current.sha256, self._refused_sha):
            return None
        try:
            return await self.apply(text, "file", "file")
        except RuleError as exc:
            self._refused_sha = _sha(text)
            log.error(
                "rules file %s refused; version %d stays: %s", self.path, self.current.version, exc
            )
            return None

    async def watch(self, every_s: float = WATCH_EVERY_S) -> None:
        """Poll the rules file for edits until cancelled; never raises."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.check_file()
            except Exception:  # a bug here must not stop the node
                log.exception("checking the rules file failed; trying again")

    async def _swap(self, rules: RuleSet) -> None:
        pipeline = self.pipeline
        async with pipeline.evaluating:  # between units of work
            old = pipeline.engine
            engine = restore(
                rules, snapshot(old), locate=pipeline.registry.location, clock=old.clock_policy
            )
            dropped = engine.stats.dropped_tracks
            engine.stats = old.stats
            engine.stats.dropped_tracks += dropped
            pipeline.replace_engine(engine)

    def _record(self, text: str, author: str, source: Source) -> RulesVersion:
        previous = self.history[-1] if self.history else None
        diff = ""
        if previous is not None:
            diff = "".join(
                difflib.unified_diff(
                    previous.text.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    f"version {previous.version}",
                    f"version {previous.version + 1}",
                )
            )
        version = RulesVersion(
            version=previous.version + 1 if previous else 1,
            at=self.clock(),
            author=author,
            source=source,
            sha256=_sha(text),
            text=text,
            diff=diff,
        )
        self.history.append(version)
        self.pipeline.rules_version = version.version
        if self.history_path is not None:
            try:  # the data directory may not be there yet (a first start)
                self.history_path.parent.mkdir(parents=True, exist_ok=True)
                with self.history_path.open("a", encoding="utf-8") as history:
                    history.write(version.as_json() + "\n")
            except OSError as exc:
                log.error("rules history %s not written: %s", self.history_path, exc)
        return version

    def _load_history(self) -> list[RulesVersion]:
        if self.history_path is None or not self.history_path.exists():
            return []
        versions = []
        with contextlib.suppress(OSError):
            for number, line in enumerate(self.history_path.read_text("utf-8").splitlines(), 1):
                try:
                    versions.append(RulesVersion.from_json(line))
                except (ValueError, TypeError, KeyError) as exc:
                    log.error("%s line %d unreadable (%s); skipped", self.history_path, number, exc)
        return versions

    def _stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


class _RulesCollector(Collector):
    def __init__(self, control: RulesControl) -> None:
        self.control = control

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily(
            "citysense_rules_version",
            "Version of the rule set running",
            self.control.current.version,
        )
        reloads = CounterMetricFamily(
            "citysense_rules_reloads",
            "Rule sets offered while running, by outcome",
            labels=["outcome"],
        )
        reloads.add_metric(["applied"], self.control.applied)
        reloads.add_metric(["refused"], self.control.refused)
        yield reloads


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
