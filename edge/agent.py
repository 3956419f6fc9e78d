"""The edge agent of one base station: sample the sensors, batch, publish over MQTT.

Two tasks run side by side: sampling never stops, whatever the link does, and fills the
outbox; the MQTT session (re)connects with backoff, announces the station, and drains the
outbox at QoS 1 with up to ``window`` batches in flight. A batch leaves the outbox only after
the broker's PUBACK, and stays in its retention window so that a range the center never
received can be asked for again on the station's ``cmd`` topic. What the outbox gives up
(full, too old, damaged) is announced on the ``gaps`` topic.

With a ``state_dir`` the outbox is on disk (``edge.outbox_sqlite``, surviving ``kill -9`` and
power loss) and the boot identity grows on every start (``edge.identity``); without one the
outbox is in memory (tests, the demo). The same rules engine as the center's runs on what is
sampled: readings of a sensor in alarm go to the outbox with alarm priority and are sent first.
Outbox calls run on one worker thread: the disk outbox fsyncs.

The center's desired config arrives retained on the station's ``config`` topic
(``edge.remote_config``): a newer version is applied (intervals, report-by-exception, alarm
thresholds) without touching the outbox or the rules' pending state, kept in the state
directory, and answered on ``ack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

import aiomqtt

from edge.core import EdgeCore
from edge.driver import SensorDriver
from edge.exception import ReportByException, ReportSettings
from edge.identity import next_boot
from edge.outbox import GapMarker, MemoryOutbox, Outbox, OutboxLimits, SealedBatch
from edge.outbox_sqlite import SqliteOutbox
from edge.remote_config import ConfigError, RunSettings, read_saved, resolve, save, swap_rules
from edge.settings import EdgeSettings
from protocol import (
    INGEST_STATE_TOPIC,
    Channel,
    ConfigAck,
    PayloadError,
    ResendRequest,
    StationConfig,
    StationState,
    StationTopic,
    decode_command,
    decode_config,
    decode_ingest_state,
    encode,
)
from protocol.backoff import Backoff
from protocol.connection import MqttAuth, check_station_identity
from rules import RuleSet, load_rules

log = logging.getLogger(__name__)

GOODBYE_TIMEOUT_S = 2.0
T = TypeVar("T")
PRESENCE_GRACE_S = 0.5
"""After connecting, the agent waits this long for ingest's retained presence before sending
(it comes right after the subscription when there is one)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class EdgeAgent:
    def __init__(
        self,
        station_id: str,
        driver: SensorDriver,
        *,
        host: str,
        port: int,
        sample_interval: float = 1.0,
        batch_interval: float = 1.0,
        max_batch: int = 500,
        buffer_readings: int = 100_000,
        clock: Callable[[], datetime] = utc_now,
        boot_epoch: int | None = None,
        backoff: Backoff | None = None,
        auth: MqttAuth | None = None,
        window: int = 8,
        state_dir: Path | None = None,
        outbox_limits: OutboxLimits | None = None,
        outbox: Outbox | None = None,
        alarm_rules: RuleSet | None = None,
    ) -> None:
        """``state_dir``: where the durable outbox and the boot counter live (None: memory).
        ``outbox``: one built by the caller (tests), with its own boot epoch. ``alarm_rules``:
        the rules whose pending or open conditions make a reading alarm priority (default: the
        center's default set)."""
        if sample_interval <= 0 or batch_interval <= 0:
            raise ValueError("sample and batch intervals must be positive")
        self.station_id = station_id
        self._state_topic = str(StationTopic(station_id, Channel.STATE))
        self._telemetry_topic = str(StationTopic(station_id, Channel.TELEMETRY))
        self._gaps_topic = str(StationTopic(station_id, Channel.GAPS))
        self._ack_topic = str(StationTopic(station_id, Channel.ACK))
        self._command_topic = str(StationTopic(station_id, Channel.COMMAND))
        self._config_topic = str(StationTopic(station_id, Channel.CONFIG))
        self._state_dir = state_dir
        self._driver = driver
        self._host = host
        self._port = port
        self._auth = auth or MqttAuth()
        check_station_identity(self._auth, station_id)
        self._sample_interval = sample_interval
        self._batch_interval = batch_interval
        self._clock = clock
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"edge-{station_id}-outbox")
        limits = outbox_limits or OutboxLimits(max_readings=buffer_readings)
        if outbox is not None:
            self._outbox: Outbox = outbox
            self.boot_epoch = outbox.boot_epoch if boot_epoch is None else boot_epoch
        elif state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            identity = next_boot(state_dir / "boot", self._now(), floor=boot_epoch or 0)
            self.boot_epoch = identity.boot_epoch
            self._outbox = self._io.submit(
                SqliteOutbox,
                state_dir / "outbox.sqlite",
                boot_epoch=self.boot_epoch,
                limits=limits,
                max_batch=max_batch,
                window=window,
                clock=self._now,
            ).result()
        else:
            self.boot_epoch = int(self._now().timestamp()) if boot_epoch is None else boot_epoch
            self._outbox = MemoryOutbox(
                limits,
                boot_epoch=self.boot_epoch,
                max_batch=max_batch,
                window=window,
                clock=self._now,
            )
        self._core = EdgeCore(station_id, self._outbox, alarm_rules or load_rules())
        self._backoff = backoff or Backoff()
        self._data = asyncio.Event()
        self.ingest_online = asyncio.Event()
        """Cleared while ingest's retained presence says offline (never seen: online)."""
        self.ingest_online.set()
        self._presence_seen = asyncio.Event()
        self._resample = asyncio.Event()
        self.stats = self._core.stats
        self._local = RunSettings(
            sample_interval,
            batch_interval,
            driver.filter.settings
            if isinstance(driver, ReportByException)
            else ReportSettings(enabled=False),
            self._core.engine.rules,
        )
        self._config: StationConfig | None = None
        if state_dir is not None:
            self._restore_config(state_dir)

    async def _call(self, work: Callable[[], T]) -> T:
        """Run an outbox call on the outbox's thread (one at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._io, work)

    def close(self) -> None:
        """Close the outbox (after ``run`` has ended)."""
        self._io.submit(self._outbox.close).result()
        self._io.shutdown()

    @classmethod
    def from_settings(
        cls,
        settings: EdgeSettings,
        driver: SensorDriver,
        *,
        clock: Callable[[], datetime] = utc_now,
        backoff: Backoff | None = None,
    ) -> EdgeAgent:
        return cls(
            settings.station_id,
            driver,
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            sample_interval=settings.sample_interval_s,
            batch_interval=settings.batch_interval_s,
            max_batch=settings.max_batch,
            buffer_readings=settings.buffer_readings,
            clock=clock,
            backoff=backoff
            or Backoff(
                initial=min(0.5, settings.reconnect_max_s), maximum=settings.reconnect_max_s
            ),
            auth=settings.mqtt_auth,
            window=settings.window,
            state_dir=settings.state_dir,
            outbox_limits=settings.outbox_limits(),
        )

    @property
    def config_version(self) -> int:
        """The version of the center's config in force (0: the local settings)."""
        return 0 if self._config is None else self._config.config_version

    def _restore_config(self, state_dir: Path) -> None:
        """Apply the config kept before the restart; a damaged or now invalid one is ignored."""
        try:
            saved = read_saved(state_dir, self.station_id)
            if saved is not None:
                self._apply(saved, resolve(self._local, saved))
        except (OSError, ValueError) as exc:
            log.warning("%s: kept config not applied (%s)", self.station_id, exc)

    def _apply(self, config: StationConfig, settings: RunSettings) -> None:
        """Run with ``settings`` from now on; the outbox is not touched and the rules keep the
        state of every rule whose id survives."""
        self._sample_interval = settings.sample_interval
        self._batch_interval = settings.batch_interval
        if isinstance(self._driver, ReportByException):
            self._driver.filter.reconfigure(settings.report)
        elif settings.report.enabled:
            self._driver = ReportByException(self._driver, settings.report)
        self._core.engine = swap_rules(self._core.engine, settings.rules)
        self._config = config
        self._resample.set()

    @property
    def backlog(self) -> int:
        """Readings waiting for the broker's acknowledgement."""
        return len(self._outbox)

    async def run(self) -> None:
        """Sample and publish until cancelled; on cancellation say goodbye (retained offline)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._sample_forever(), name=f"edge-{self.station_id}-sample")
            tasks.create_task(self._keep_session(), name=f"edge-{self.station_id}-session")

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the agent's clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def _state(self, status: Literal["online", "offline"]) -> bytes:
        sensors = list(self._driver.sensors()) if status == "online" else []
        return encode(
            StationState(
                station_id=self.station_id,
                status=status,
                boot_epoch=self.boot_epoch,
                ts=self._now(),
                sensors=sensors,
            )
        )

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            now = self._now()
            readings = self._driver.read(now)
            if readings:
                alarm = self._core.in_alarm(readings, now)
                await self._call(partial(self._core.put, readings, alarm))
                self._data.set()
            sampled_at = due
            due = max(due + self._sample_interval, loop.time())
            while (wait := due - loop.time()) > 0:  # a new interval counts from the last sample
                self._resample.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._resample.wait(), wait)
                if self._resample.is_set():
                    due = max(sampled_at + self._sample_interval, loop.time())

    async def _keep_session(self) -> None:
        """The one place that reconnects: after any MQTT failure, back off and start over.

        Each connection runs in a task of its own: on Python 3.11 a task group whose child fails
        leaves its parent task marked as cancelling, and that mark must die with the session.
        """
        while True:
            reason = "session ended"
            session = asyncio.create_task(self._session(), name=f"edge-{self.station_id}-mqtt")
            try:
                await session
            except* aiomqtt.MqttError as failure:
                reason = "; ".join(str(error) for error in failure.exceptions)
            _raise_if_cancelling()
            self.stats.link_failures += 1
            delay = self._backoff.next_delay()
            log.warning("%s: MQTT link down (%s); retry in %.1f s", self.station_id, reason, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        will = aiomqtt.Will(self._state_topic, self._state("offline"), qos=1, retain=True)
        async with aiomqtt.Client(
            self._host,
            self._port,
            identifier=f"edge-{self.station_id}",
            will=will,
            **self._auth.aiomqtt_kwargs(),
        ) as client:
            self.stats.connects += 1
            try:
                await client.publish(self._state_topic, self._state("online"), qos=1, retain=True)
                await client.subscribe(self._command_topic, qos=1)
                await client.subscribe(self._config_topic, qos=1)
                self._presence_seen.clear()
                await client.subscribe(INGEST_STATE_TOPIC, qos=1)
                _raise_if_cancelling()
                self._backoff.reset()
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._listen(client), name=f"edge-{self.station_id}-cmd")
                    tasks.create_task(self._drain(client), name=f"edge-{self.station_id}-publish")
            except asyncio.CancelledError:
                await self._say_goodbye(client)
                raise

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Commands and config from the center; raises ``MqttError`` as soon as the connection
        drops."""
        async for message in client.messages:
            if not isinstance(message.payload, bytes):
                continue
            if str(message.topic) == INGEST_STATE_TOPIC:
                self._ingest_presence(message.payload)
                continue
            if str(message.topic) == self._config_topic:
                if message.payload:  # empty: the center took its retained config back
                    await self._configure(client, message.payload)
                continue
            if str(message.topic) != self._command_topic:
                continue
            try:
                request = decode_command(
                    StationTopic(self.station_id, Channel.COMMAND), message.payload
                )
            except PayloadError as exc:
                self.stats.bad_commands += 1
                log.warning("%s: command refused (%s)", self.station_id, exc)
                continue
            await self._resend(client, request)

    def _ingest_presence(self, payload: bytes) -> None:
        """Hold the outbox while ingest is away (its retained presence says offline): the data
        waits here, within the outbox's bounds, rather than in the broker's queue."""
        self._presence_seen.set()
        try:
            state = decode_ingest_state(payload) if payload else None
        except PayloadError as exc:
            log.warning("%s: ingest presence not understood (%s)", self.station_id, exc)
            return
        if state is None or state.status == "online":
            if not self.ingest_online.is_set():
                log.info("%s: ingest is back; sending", self.station_id)
            self.ingest_online.set()
        else:
            if self.ingest_online.is_set():
                self.stats.holds += 1
                log.warning("%s: ingest is away; holding data", self.station_id)
            self.ingest_online.clear()

    async def _configure(self, client: aiomqtt.Client, payload: bytes) -> None:
        """Apply a newer config, or refuse it with the reason; answer on ``ack`` either way."""
        offered: int | None = None
        try:
            config = decode_config(StationTopic(self.station_id, Channel.CONFIG), payload)
            offered = config.config_version
            if offered <= self.config_version:
                await self._config_ack(client, "current", offered)
                return
            settings = resolve(self._local, config)
            if self._state_dir is not None:
                state_dir = self._state_dir
                await self._call(partial(save, state_dir, config))
        except (PayloadError, ConfigError, OSError) as exc:
            self.stats.configs_rejected += 1
            log.warning("%s: config refused (%s)", self.station_id, exc)
            await self._config_ack(client, "rejected", offered, str(exc))
            return
        self._apply(config, settings)
        self.stats.configs_applied += 1
        log.info("%s: config version %d applied", self.station_id, offered)
        await self._config_ack(client, "applied", offered)

    async def _config_ack(
        self,
        client: aiomqtt.Client,
        status: Literal["applied", "current", "rejected"],
        offered: int | None,
        reason: str | None = None,
    ) -> None:
        ack = ConfigAck(
            station_id=self.station_id,
            status=status,
            config_version=self.config_version,
            offered_version=offered,
            reason=reason,
            sent_at=self._now(),
        )
        await client.publish(self._ack_topic, encode(ack), qos=1)

    async def _resend(self, client: aiomqtt.Client, request: ResendRequest) -> None:
        """Publish again what the retention window holds of the range; report what it lost."""
        found = await self._call(lambda: self._outbox.resend(request.first_seq, request.last_seq))
        telemetry, gaps, ack = self._core.answer(request, found, self.boot_epoch, self._now())
        for payload in telemetry:
            await client.publish(self._telemetry_topic, payload, qos=1)
        for payload in gaps:
            await client.publish(self._gaps_topic, payload, qos=1)
        await client.publish(self._ack_topic, ack, qos=1)

    async def _drain(self, client: aiomqtt.Client) -> None:
        await self._call(self._outbox.rewind)  # batches in flight when the link dropped go again
        with contextlib.suppress(TimeoutError):  # ingest's retained presence comes first
            await asyncio.wait_for(self._presence_seen.wait(), PRESENCE_GRACE_S)
        while True:
            if not self.ingest_online.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ingest_online.wait(), self._batch_interval)
                continue
            for marker in await self._call(self._outbox.pending_gaps):
                await client.publish(self._gaps_topic, self._gap_report(marker), qos=1)
                await self._call(partial(self._outbox.gap_announced, marker.marker_id))
                self.stats.gap_reports += 1
            batches = await self._call(self._outbox.take)
            if not batches:
                if not await self._call(self._outbox.__len__):
                    self._core.drained()
                self._data.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._data.wait(), self._batch_interval)
                continue
            async with asyncio.TaskGroup() as window:  # up to the outbox's window in flight
                for sealed in batches:
                    window.create_task(self._publish(client, sealed))
            _raise_if_cancelling()

    async def _publish(self, client: aiomqtt.Client, sealed: SealedBatch) -> None:
        await client.publish(self._telemetry_topic, self._payload(sealed), qos=1)
        await self._call(lambda: self._outbox.ack(sealed.seq))
        self.stats.batches_published += 1

    def _payload(self, sealed: SealedBatch) -> bytes:
        return self._core.payload(sealed, self._now())

    def _gap_report(self, marker: GapMarker) -> bytes:
        return self._core.gap_report(marker, self._now())

    async def _say_goodbye(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(
                self._state_topic,
                self._state("offline"),
                qos=1,
                retain=True,
                timeout=GOODBYE_TIMEOUT_S,
            )


def _raise_if_cancelling() -> None:
    """Honour a cancellation that was swallowed instead of raised.

    A task group that is handling a child's ``MqttError`` raises that error rather than the
    cancellation, and Python 3.11's ``asyncio.wait_for`` (inside aiomqtt) returns normally when
    a cancellation races the awaited PUBACK or CONNACK.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
