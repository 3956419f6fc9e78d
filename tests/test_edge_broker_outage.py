"""The broker killed for 30 s mid-stream, then restarted (no persistence: what it held for
ingest is gone): the shipped agent (durable outbox) and ``citysense serve`` (gap re-send) get
every reading the agent produced stored exactly once. Produced = what the outbox sealed, read
back from its retention window; stored = what ingest accepted into its journal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citysense.broker import MosquittoBroker
from edge.outbox_sqlite import SqliteOutbox
from ingest.sinks.recorder import read_recorded
from simulator import build_city
from tests.serve_process import api, metric, serve, serve_env, wait_for

pytestmark = pytest.mark.integration

STATION = build_city(seed=7).stations[0].station_id


def start_agent(broker: MosquittoBroker, state: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CITYSENSE_EDGE_STATE_DIR": str(state),
        "CITYSENSE_EDGE_REPORT__ENABLED": "false",
        "CITYSENSE_EDGE_MAX_BATCH": "20",
        "CITYSENSE_EDGE_RECONNECT_MAX_S": "1",
    }
    command = [sys.executable, "-m", "citysense.cli", "edge", STATION]
    with log.open("ab") as errors:
        return subprocess.Popen(
            [*command, "--mqtt-port", str(broker.port), "--interval", "0.1"],
            env=env,
            stderr=errors,
        )


def produced(state: Path) -> tuple[dict[int, int], set[int]]:
    """What the agent's outbox sealed: seq -> readings of the batches the broker acknowledged
    (all still in the retention window here), and the seqs still waiting (in flight as the
    agent stopped: sent on its next start)."""
    outbox = SqliteOutbox(state / "outbox.sqlite", boot_epoch=0)
    try:
        found = outbox.resend(0, max(outbox.stats.next_seq - 1, 0))
        assert not found.evicted, "the retention window should hold every batch here"
        return {b.seq: b.count for b in found.batches}, set(found.pending)
    finally:
        outbox.close()


def stored(journal: Path) -> dict[int, list[int]]:
    """seq -> the readings of each time ingest accepted it."""
    seqs: dict[int, list[int]] = {}
    for record in read_recorded(journal):
        if record.topic.endswith(f"/{STATION}/telemetry"):
            body = json.loads(record.payload)
            seqs.setdefault(body["seq"], []).append(len(body["readings"]))
    return seqs


def stop_and_account(agent: subprocess.Popen[bytes], log: Path, state: Path, data: Path) -> None:
    """Stop the agent, then: every batch the broker acknowledged is stored, once, with its
    readings; nothing stored that the agent did not seal; at most a window still in flight."""
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=20) == 0, log.read_text()
    acked, waiting = produced(state)
    journal = data / "journal"
    try:
        wait_for(lambda: set(stored(journal)) >= set(acked), 90, "every batch stored")
    except AssertionError as exc:
        missing = sorted(set(acked) - set(stored(journal)))
        raise AssertionError(f"{exc}: seqs {missing} missing from the journal") from None
    time.sleep(1.0)  # anything doubled would show now
    accepted = stored(journal)
    assert set(acked) <= set(accepted) <= set(acked) | waiting  # none lost
    assert all(len(times) == 1 for times in accepted.values()), "a batch stored twice"
    assert all(accepted[seq] == [count] for seq, count in acked.items())
    assert len(waiting) <= 8  # at most the window was in flight at the stop


def test_broker_killed_for_30s_mid_stream_every_reading_stored_exactly_once(
    tmp_path: Path,
) -> None:
    state, log = tmp_path / "edge", tmp_path / "edge.log"
    broker = MosquittoBroker().start()
    env = serve_env(broker, tmp_path, CITYSENSE_INGEST_RESEND_AFTER_S="2")
    try:
        with serve(env):
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "serve")
            agent = start_agent(broker, state, log)
            wait_for(lambda: metric(env, "citysense_ingest_batches_total") > 20, 30, "flowing")
            broker.kill()  # mid-stream; what it queued for ingest dies with it
            before = metric(env, "citysense_ingest_batches_total")
            time.sleep(30.0)
            broker = MosquittoBroker(port=broker.port).start()
            caught_up = before + 150  # 30 s of batches, and then some
            wait_for(lambda: metric(env, "citysense_ingest_batches_total") > caught_up, 60, "back")
            # What the agent published after the restart and before ingest had subscribed again
            # went to nobody (the broker lost ingest's session): a gap, re-sent on ingest's
            # request. The agent must still run to answer it (CI once stopped it first).
            wait_for(lambda: metric(env, "citysense_ingest_gap_batches") == 0, 60, "gaps filled")
            stop_and_account(agent, log, state, tmp_path)
            assert metric(env, "citysense_ingest_gap_batches") == 0
            assert metric(env, "citysense_edge_lost_readings_total", reason="bytes") == 0
    finally:
        broker.stop()


def test_a_gap_the_broker_makes_past_its_queue_limit_is_resent_and_stored_once(
    tmp_path: Path,
) -> None:
    """Ingest hung (SIGSTOP: its session stays up, so the agent keeps sending) while the broker
    queues for it, past a small queue limit: the broker drops the rest (acknowledged to the
    agent, never delivered); ingest notices the gap when it runs again, asks, and the agent
    re-sends from its retention window."""
    limited = tmp_path / "limited.conf"
    dev = (Path(__file__).parents[1] / "broker_config" / "dev.conf").read_text()
    assert "max_queued_messages 100000" in dev
    assert "max_inflight_messages 1000\n" in dev
    limited.write_text(
        dev.replace("max_queued_messages 100000", "max_queued_messages 30").replace(
            "max_inflight_messages 1000\n", "max_inflight_messages 10\n"
        )
    )
    state, log = tmp_path / "edge", tmp_path / "edge.log"
    with MosquittoBroker(config=limited) as broker:
        env = serve_env(broker, tmp_path, CITYSENSE_INGEST_RESEND_AFTER_S="2")
        with serve(env) as node:
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "serve")
            agent = start_agent(broker, state, log)
            wait_for(lambda: metric(env, "citysense_ingest_batches_total") > 20, 30, "flowing")
            node.send_signal(signal.SIGSTOP)  # ingest hangs, its session stays up (no will)
            time.sleep(8.0)  # ~80 batches for 30 queued + 10 in flight: the rest is dropped
            node.send_signal(signal.SIGCONT)
            wait_for(lambda: metric(env, "citysense_ingest_resend_requests_total") > 0, 30, "ask")
            time.sleep(3.0)
            stop_and_account(agent, log, state, tmp_path)
            assert metric(env, "citysense_ingest_gaps_filled_total") >= 40
            assert metric(env, "citysense_ingest_gap_batches") == 0


def test_ingest_hung_while_the_broker_queues_then_the_broker_killed_loses_nothing(
    tmp_path: Path,
) -> None:
    """What the broker acknowledged and queued for a hung ingest dies with a ``kill -9`` of a
    broker without persistence: the gap re-send brings it back (the production config also
    saves it: tests/broker/test_persistence.py)."""
    state, log = tmp_path / "edge", tmp_path / "edge.log"
    few = tmp_path / "few-in-flight.conf"  # so that the broker queues, not the socket
    dev = (Path(__file__).parents[1] / "broker_config" / "dev.conf").read_text()
    assert "max_inflight_messages 1000\n" in dev
    few.write_text(dev.replace("max_inflight_messages 1000\n", "max_inflight_messages 5\n"))
    broker = MosquittoBroker(config=few).start()
    env = serve_env(broker, tmp_path, CITYSENSE_INGEST_RESEND_AFTER_S="2")
    try:
        with serve(env) as node:
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "serve")
            agent = start_agent(broker, state, log)
            wait_for(lambda: metric(env, "citysense_ingest_batches_total") > 20, 30, "flowing")
            node.send_signal(signal.SIGSTOP)  # the broker queues for it from now on
            time.sleep(5.0)
            broker.kill()  # and loses the queue
            broker = MosquittoBroker(config=few, port=broker.port).start()
            node.send_signal(signal.SIGCONT)
            wait_for(lambda: metric(env, "citysense_ingest_resend_requests_total") > 0, 60, "ask")
            time.sleep(3.0)
            stop_and_account(agent, log, state, tmp_path)
            assert metric(env, "citysense_ingest_gaps_filled_total") >= 20
    finally:
        broker.stop()
