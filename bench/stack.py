"""A whole node on the real stack: Mosquitto, VictoriaMetrics, SQLite, the journal.

The node is ``citysense.node.build_node`` as ``citysense serve`` builds it (default rules and
allowed lateness, case store on SQLite, the VictoriaMetrics sink, the recorder as journal, the
checkpoint), in this process. A drain starts its background tasks (the MQTT consumer and the
checkpoints) against a queue the broker already holds and stops them when ingest has committed
and acknowledged every message. During a drain this process runs nothing else (the publishers
have finished, the bench only waits), so its CPU time (``getrusage``: every thread — the event
loop with the MQTT session, the sink's worker, the case store's writer thread) is the node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.drain import DRAIN_LIMIT_S
from bench.report import BenchError
from center.settings import CenterSettings
from citysense.broker import MosquittoBroker, free_port
from citysense.node import Node, build_node, node_tasks
from citysense.runtime import runtime_tasks, tune
from citysense.victoria import VictoriaMetrics
from ingest.settings import IngestSettings
from ingest.sinks.settings import SinkSettings

QUIET_S = 30.0
"""A drain that sees no new message for this long is over (short of what was expected); longer
than the pipeline's longest retry backoff (10 s), so a stall waited out is not an end."""
DEFAULT_SWITCH_INTERVAL_S = sys.getswitchinterval()
"""The interpreter's, before a node tunes it (``citysense.runtime.tune_threads``)."""


@dataclass(frozen=True)
class Services:
    """The stack the node runs against, with the process ids whose CPU is accounted."""

    mqtt_host: str
    mqtt_port: int
    victoria_url: str
    broker_pid: int | None = None
    victoria_pid: int | None = None

    @classmethod
    def of(cls, broker: MosquittoBroker, victoria: VictoriaMetrics) -> Services:
        """A running private broker and VictoriaMetrics (their CPU is reported beside the
        node's)."""
        process = broker._process
        return cls(
            broker.host,
            broker.port,
            victoria.url,
            broker_pid=None if process is None else process.pid,
            victoria_pid=victoria.pid,
        )


@asynccontextmanager
async def node_on(
    services: Services,
    workdir: Path,
    *,
    rules_path: Path | None = None,
    allowed_lateness_s: float = IngestSettings.model_fields["allowed_lateness_s"].default,
) -> AsyncIterator[Node]:
    """A fresh node (own SQLite, journal, checkpoint and client id) in ``workdir``."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    ingest = IngestSettings(
        mqtt_host=services.mqtt_host,
        mqtt_port=services.mqtt_port,
        client_id=f"bench-node-{uuid.uuid4().hex[:8]}",
        dead_letter_path=workdir / "dead_letters.jsonl",
        snapshot_path=workdir / "rules.snapshot",
        rules_path=rules_path,
        allowed_lateness_s=allowed_lateness_s,
    )
    center = CenterSettings(
        database_url=f"sqlite+aiosqlite:///{workdir / 'cases.db'}", port=free_port()
    )
    sinks = SinkSettings(victoria_url=services.victoria_url, recorder_dir=workdir / "journal")
    async with build_node(ingest, center, sinks) as node:
        tune()  # as citysense serve does
        try:
            yield node
        finally:
            sys.setswitchinterval(DEFAULT_SWITCH_INTERVAL_S)


@contextmanager
def untuned() -> Iterator[None]:
    """The consumer baselines run in this process beside a node: as programs of their own,
    with the interpreter's switch interval, not the one the node set."""
    tuned = sys.getswitchinterval()
    sys.setswitchinterval(DEFAULT_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(tuned)


class ClockedGroups:
    """Clocks the consumer's unit of work: when the first group started to be handled
    (``pipeline.handle_messages``), when the last commit finished (``pipeline.commit``), and
    how many messages the consumer acknowledged after their commits (since ``reset``)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._handle: Callable[[Sequence[tuple[str, bytes]]], Awaitable[None]]
        self._handle = node.pipeline.handle_messages
        self._commit: Callable[[], Awaitable[object]] = node.pipeline.commit
        node.pipeline.handle_messages = self._handled  # type: ignore[method-assign]
        node.pipeline.commit = self._committed  # type: ignore[method-assign]
        self.reset()

    def reset(self) -> None:
        self._base = self._node.consumer.acknowledged
        self.first, self.last = 0.0, 0.0

    @property
    def messages(self) -> int:
        return self._node.consumer.acknowledged - self._base

    async def _handled(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not self.first:
            self.first = time.monotonic()
        await self._handle(messages)

    async def _committed(self) -> object:
        result = await self._commit()
        self.last = time.monotonic()
        return result


def _proc_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of another process, from /proc (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    wall: float
    node: float
    event_loop: float
    broker: float
    victoria: float

    @classmethod
    def now(cls, services: Services) -> CpuSample:
        """Call it on the event loop's thread: ``thread_time`` is that thread's CPU."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(
            time.monotonic(),
            usage.ru_utime + usage.ru_stime,
            time.thread_time(),
            _proc_cpu_s(services.broker_pid),
            _proc_cpu_s(services.victoria_pid),
        )

    def since(self, before: CpuSample) -> dict[str, float]:
        wall = self.wall - before.wall
        node = self.node - before.node
        return {
            "cpu_window_s": wall,
            "node_cpu_s": node,
            "node_event_loop_cpu_s": self.event_loop - before.event_loop,
            "node_other_threads_cpu_s": node - (self.event_loop - before.event_loop),
            "node_cores": node / wall if wall > 0 else 0.0,
            "broker_cpu_s": self.broker - before.broker,
            "victoria_cpu_s": self.victoria - before.victoria,
        }


async def _wait_for(clock: ClockedGroups, expected: int) -> None:
    deadline = time.monotonic() + DRAIN_LIMIT_S
    seen, changed = clock.messages, time.monotonic()
    while clock.messages < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        if clock.messages != seen:
            seen, changed = clock.messages, time.monotonic()
        elif time.monotonic() - changed > QUIET_S:
            return


async def drain_node(
    node: Node,
    clock: ClockedGroups,
    services: Services,
    expected: int,
    watch: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, float]:
    """Run the node's tasks until ingest has committed ``expected`` messages; ``watch`` is
    entered around the drain (a profiler). Figures: messages/s and the CPU of the window."""
    clock.reset()
    with watch():
        before = CpuSample.now(services)
        async with asyncio.TaskGroup() as group:
            tasks = node_tasks(node) | runtime_tasks()
            running = [group.create_task(c, name=n) for n, c in tasks.items()]
            try:
                await _wait_for(clock, expected)
                after = CpuSample.now(services)
            finally:
                for task in running:
                    task.cancel()
    if clock.messages != expected:
        raise BenchError(f"ingest committed {clock.messages} of {expected} messages")
    span = clock.last - clock.first
    if span <= 0:
        raise BenchError("ingest drained everything in one group: too few for a rate")
    figures = {
        "messages_per_s": clock.messages / span,
        "messages": float(clock.messages),
        "seconds": span,
    }
    return figures | after.since(before)
