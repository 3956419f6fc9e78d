"""Side-by-side MQTT telemetry throughput on one machine, in one session.

Systems, each fed the same pre-built citysense telemetry (side_by_side_payloads.py) through its own fresh
Mosquitto (the project's broker_config/dev.conf plus ``sys_interval 1``) on a free port:

  pubonly    no subscriber: how fast the publishers get all messages acknowledged (publish ceiling)
  raw        mosquitto_sub -C N (C client, QoS 1): the raw broker delivery rate
  paho       side_by_side_paho.py: a do-nothing paho subscriber (QoS 1)
  nodered    Node-RED 4 flow (nodered_peer/flows.template.json): mqtt in (json) -> function
             counting the payload's readings and those with values.tilt_deg > 15
  citysense  `citysense serve` (ingest + rules + center; SQLite case store and dead letters in
             the run dir)

Per run: start the broker; publish every station's retained birth (QoS 1); start the consumer
and wait until the broker reports its subscription(s) (citysense: /healthz connected and every
sensor registered); launch one ``mosquitto_pub -l -q 1`` per station (the topic carries the
station id) reading that station's lines in seq order; wait until the consumer has all N
telemetry messages. Systems alternate (rep 1: every system, rep 2: every system, ...), and every
run starts fresh processes.

Modes:
  live   (default) the consumer runs while the publishers publish; clock starts at the launch
         of the first publisher.
  drain  the consumer is SIGSTOPped while the publishers publish (the broker queues), then
         SIGCONTed; clock starts at SIGCONT. Measures the consumer + broker without the
         publishers competing for the CPUs.

Figures (wall clock, time.time()): ``msgs_per_s`` = N / (done - start), ``done`` = the
consumer's last message (mosquitto_sub exit, paho's last callback, Node-RED's last Date.now(),
citysense: interpolated between the two /metrics samples around the last accepted batch, polled
every 0.5 s). ``steady_msgs_per_s``: least-squares slope of a counter over its samples between
10 % and 90 % of N (citysense /metrics, Node-RED /stats, raw/paho: broker $SYS messages sent).
CPU% = process CPU time over (done - start), 100 % = one core.

usage: python side_by_side.py --project CHECKOUT --payloads DIR [DIR ...] --work DIR
           [--nodered NODE_RED_DIR] [--systems pubonly,raw,paho,nodered,citysense] [--reps 3]
           [--mode live|drain]
Run it with the checkout's venv python (needs paho-mqtt). Appends to WORK/results.json and
keeps WORK/runs/<n>-<mode>-<system>-<shape>/ (broker log, consumer logs, samples.json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HERE = Path(__file__).resolve().parent
TELEMETRY_FILTER = "citysense/v1/stations/+/telemetry"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.5
SYS_TOPICS = [
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/publish/messages/#",
    "$SYS/broker/store/messages/count",
    "$SYS/broker/clients/connected",
]


# ---------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def http_get(url: str, timeout: float = 2.0, token: str | None = None) -> bytes | None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as r:
            return r.read()
    except OSError:
        return None


def slope(points: list[tuple[float, float]], lo: float, hi: float) -> float | None:
    """Least-squares count/s over the samples with lo <= count <= hi."""
    pts = [(t, c) for t, c in points if lo <= c <= hi]
    if len(pts) < 3:
        return None
    mt = statistics.fmean(t for t, _ in pts)
    mc = statistics.fmean(c for _, c in pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return sum((t - mt) * (c - mc) for t, c in pts) / den if den else None


def crossing(points: list[tuple[float, float]], target: float) -> float | None:
    """Time a counter reached ``target``, interpolated between the samples around it."""
    prev = None
    for t, c in points:
        if c >= target:
            if prev is None or c == prev[1]:
                return t
            return prev[0] + (target - prev[1]) * (t - prev[0]) / (c - prev[1])
        prev = (t, c)
    return None


def prom_values(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def prom_sum(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k == prefix or k.startswith(prefix + "{"))


class Proc:
    """A process we started. One waiter thread reaps it (os.wait4) and records when it exited,
    its exit code and its CPU time; signals go to its PID only, and only while it is unreaped."""

    def __init__(self, argv: list[str], **popen: Any) -> None:
        self.popen = subprocess.Popen(argv, **popen)
        self.pid = self.popen.pid
        self.exited = threading.Event()
        self.exit_at: float | None = None
        self.rc: int | None = None
        self.cpu_total: float | None = None  # user+system seconds, from rusage at exit
        self._lock = threading.Lock()
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        # Wait without reaping, then reap under the lock: the PID stays ours until marked exited.
        os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            _, status, ru = os.wait4(self.pid, 0)
            self.exit_at = time.time()
            self.rc = os.waitstatus_to_exitcode(status)
            self.cpu_total = ru.ru_utime + ru.ru_stime
            self.popen.returncode = self.rc  # so Popen never waits on it again
            self.exited.set()

    def send(self, sig: int) -> None:
        with self._lock:
            if not self.exited.is_set():
                os.kill(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        self.send(signal.SIGCONT)  # a stopped process cannot act on SIGTERM/SIGINT
        self.send(sig)
        if not self.exited.wait(grace):
            self.send(signal.SIGKILL)
            self.exited.wait(5)

    def cpu(self) -> float | None:
        """CPU seconds so far (all threads): /proc while alive, rusage once reaped."""
        with self._lock:
            if self.exited.is_set():
                return self.cpu_total
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / CLK_TCK
            except (OSError, IndexError, ValueError):
                return None

    def rss_peak_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None


# ---------------------------------------------------------------- broker


class Broker:
    """A private Mosquitto from the project's dev.conf, plus a $SYS watcher."""

    def __init__(self, run_dir: Path, base_conf: Path) -> None:
        self.port = free_port()
        conf = run_dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n{base_conf.read_text()}\nsys_interval 1\n"
        )
        self.log = (run_dir / "mosquitto.log").open("wb")
        self.proc = Proc(["mosquitto", "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port)
        self.sys: dict[str, float] = {}
        self.sys_at = 0.0
        self.sent_series: list[tuple[float, float]] = []  # (arrival time, publish/messages/sent)
        self.watch = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="sbs-sys-watch", protocol=mqtt.MQTTv311
        )
        self.watch.on_message = self._on_sys
        self.watch.connect("127.0.0.1", self.port)
        self.watch.subscribe([(t, 0) for t in SYS_TOPICS])
        self.watch.loop_start()
        self.own_subs = len(SYS_TOPICS)

    def _on_sys(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        try:
            key = m.topic.removeprefix("$SYS/broker/")
            self.sys[key] = float(m.payload)
            self.sys_at = time.time()
            if key == "publish/messages/sent":
                self.sent_series.append((self.sys_at, self.sys[key]))
        except ValueError:
            pass

    def subscriptions(self) -> int:
        return int(self.sys.get("subscriptions/count", 0))

    def wait_subscriptions(self, extra: int, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.subscriptions() >= self.own_subs + extra:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"broker reports {self.subscriptions()} subscriptions, wanted {self.own_subs + extra}"
        )

    def fresh_sys(self) -> dict[str, float]:
        """$SYS values published after now (sys_interval is 1 s)."""
        asked = time.time()
        deadline = asked + 5
        while self.sys_at <= asked + 0.05 and time.time() < deadline:
            time.sleep(0.1)
        return dict(self.sys)

    def publish_births(self, births: Path) -> int:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sbs-births", protocol=mqtt.MQTTv311)
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        infos = [
            c.publish(
                f"citysense/v1/stations/{f.stem}/state",
                f.read_bytes().rstrip(b"\n"),
                qos=1,
                retain=True,
            )
            for f in sorted(births.glob("*.json"))
        ]
        for i in infos:
            i.wait_for_publish(10)
        c.disconnect()
        c.loop_stop()
        return sum(1 for i in infos if i.is_published())

    def close(self) -> None:
        self.watch.loop_stop()
        self.watch.disconnect()
        self.proc.stop()
        self.log.close()


# ---------------------------------------------------------------- consumers


@dataclass
class Consumer:
    name: str
    run_dir: Path
    broker: Broker
    n: int
    batch: int
    opts: argparse.Namespace
    proc: Proc | None = None
    done_at: float | None = None
    got: int = 0
    readings: int | None = None
    points: list[tuple[float, float]] = field(default_factory=list)  # (t, consumer counter)
    extra: dict[str, Any] = field(default_factory=dict)
    pubs: list[Proc] = field(default_factory=list)
    subs: ClassVar[int] = 1  # subscriptions the consumer makes
    polls: ClassVar[bool] = False  # answers HTTP polls (cannot be polled while stopped)

    def start(self) -> None: ...
    def sample(self, now: float) -> None: ...
    def finished(self) -> bool:
        return self.done_at is not None

    def finish(self) -> None: ...
    def close(self) -> None:
        if self.proc:
            self.proc.stop()


class PubOnly(Consumer):
    """No subscriber: how fast the publishers get their messages acknowledged by the broker."""

    subs: ClassVar[int] = 0

    def finished(self) -> bool:
        if self.pubs and all(p.exited.is_set() for p in self.pubs):
            self.done_at = max(p.exit_at or 0.0 for p in self.pubs)
            self.got = self.n if all(p.rc == 0 for p in self.pubs) else 0
            return True
        return False


class RawSub(Consumer):
    def start(self) -> None:
        self.proc = Proc(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.broker.port),
                "-q",
                "1",
                "-i",
                "raw-sub",
                "-t",
                TELEMETRY_FILTER,
                "-C",
                str(self.n),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.run_dir / "consumer.log").open("wb"),
        )

    def finished(self) -> bool:
        assert self.proc
        if self.proc.exited.is_set():
            self.done_at = self.proc.exit_at
            self.got = self.n if self.proc.rc == 0 else 0
            return True
        return False


class PahoSub(Consumer):
    def start(self) -> None:
        self.out = self.run_dir / "consumer.out"
        self.proc = Proc(
            [
                sys.executable,
                str(HERE / "side_by_side_paho.py"),
                "127.0.0.1",
                str(self.broker.port),
                TELEMETRY_FILTER,
                "1",
                str(self.n),
                str(self.opts.stall_s),
            ],
            stdout=self.out.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def finished(self) -> bool:
        assert self.proc
        if not self.proc.exited.is_set():
            return False
        lines = [ln for ln in self.out.read_text().splitlines() if ln.startswith("{")]
        res = json.loads(lines[-1]) if lines else {"got": 0, "first": 0, "last": 0}
        self.got, self.done_at = res["got"], res["last"] or self.proc.exit_at
        self.extra["first_at"] = res["first"]
        return True


class NodeRed(Consumer):
    polls: ClassVar[bool] = True

    def start(self) -> None:
        hp = self.hp = free_port()
        tpl = Path(self.opts.nodered_flow).read_text()
        flows = (
            tpl.replace("@MQTT_PORT@", str(self.broker.port))
            .replace("@TOPIC@", TELEMETRY_FILTER)
            .replace("@QOS@", "1")
        )
        (self.run_dir / "flows.json").write_text(flows)
        (self.run_dir / "settings.js").write_text(
            'module.exports = { uiPort: %d, uiHost: "127.0.0.1", flowFile: "%s", userDir: "%s", '
            'httpAdminRoot: false, logging: {console: {level: "warn"}}, editorTheme: {projects: {enabled: false}}, '
            "telemetry: {enabled: false}, diagnostics: {enabled: false}, runtimeState: {enabled: false} };\n"
            % (hp, self.run_dir / "flows.json", self.run_dir)
        )
        exe = Path(self.opts.nodered) / "node_modules" / ".bin" / "node-red"
        self.proc = Proc(
            [str(exe), "-s", str(self.run_dir / "settings.js")],
            stdout=(self.run_dir / "nodered.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline and http_get(f"http://127.0.0.1:{hp}/stats") is None:
            if self.proc.exited.is_set():
                break
            time.sleep(0.5)
        self.stats()

    def stats(self) -> dict[str, Any]:
        # Node-RED answers HTTP on the event loop that handles the MQTT flood: be patient.
        raw = http_get(f"http://127.0.0.1:{self.hp}/stats", timeout=60)
        if raw is None:
            raise RuntimeError(f"node-red /stats does not answer (see {self.run_dir}/nodered.log)")
        return json.loads(raw)

    def sample(self, now: float) -> None:
        s = self.stats()
        asked, now = now, time.time()  # the counter is as of the answer, which may come late
        self.extra["max_poll_latency_s"] = max(
            self.extra.get("max_poll_latency_s", 0.0), now - asked
        )
        self.points.append((now, s["c"]))
        if s["c"] >= self.n:
            self.got, self.readings = s["c"], s["n"]
            self.done_at = s["t1"] / 1000
            self.extra.update(first_at=s["t0"] / 1000, above_15=s["a"])


class Citysense(Consumer):
    subs: ClassVar[int] = 2
    polls: ClassVar[bool] = True

    def start(self) -> None:
        hp = self.hp = free_port()
        database = f"sqlite+aiosqlite:///{self.run_dir / 'cases.db'}"
        env = dict(
            os.environ,
            CITYSENSE_INGEST_MQTT_HOST="127.0.0.1",
            CITYSENSE_INGEST_MQTT_PORT=str(self.broker.port),
            CITYSENSE_INGEST_DEAD_LETTER_PATH=str(self.run_dir / "dead_letters.jsonl"),
            CITYSENSE_CENTER_DATABASE_URL=database,
            CITYSENSE_CENTER_HOST="127.0.0.1",
            CITYSENSE_CENTER_PORT=str(hp),
        )
        exe = Path(self.opts.project) / ".venv" / "bin" / "citysense"
        # every route but /healthz needs a credential (docs/access.md): a viewer's API token
        users = [str(exe), "users"]
        subprocess.run(
            [
                *users,
                "add",
                "peer",
                "--role",
                "viewer",
                "--password-stdin",
                "--database-url",
                database,
            ],
            input=secrets.token_urlsafe(18) + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        self.token = subprocess.run(
            [
                *users,
                "token",
                "peer",
                "--name",
                "peer",
                "--role",
                "viewer",
                "--database-url",
                database,
            ],
            text=True,
            check=True,
            capture_output=True,
        ).stdout.strip()
        self.proc = Proc(
            [str(exe), "serve"],
            cwd=self.run_dir,
            env=env,
            stdout=(self.run_dir / "serve.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        want = self.opts.meta["stations"] * self.opts.meta["sensors_per_station"]
        deadline = time.time() + 60
        while time.time() < deadline and not self.proc.exited.is_set():
            raw = http_get(f"http://127.0.0.1:{hp}/api/v1/health", token=self.token)
            if raw:
                h = json.loads(raw)
                self.extra["healthz"] = h
                if h.get("mqtt_connected") and h.get("sensors_registered") == want:
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"citysense serve not ready: {self.extra.get('healthz')} (see {self.run_dir}/serve.log)"
        )

    def metrics(self) -> dict[str, float]:
        raw = http_get(f"http://127.0.0.1:{self.hp}/metrics", timeout=60, token=self.token)
        if raw is None:
            raise RuntimeError(f"citysense /metrics does not answer (see {self.run_dir}/serve.log)")
        return prom_values(raw.decode())

    def sample(self, now: float) -> None:
        m = self.metrics()
        asked, now = now, time.time()
        self.extra["max_poll_latency_s"] = max(
            self.extra.get("max_poll_latency_s", 0.0), now - asked
        )
        batches = m.get("citysense_ingest_batches_total", 0.0)
        self.points.append((now, batches))
        self.extra.setdefault("readings_points", []).append(
            (now, m.get("citysense_ingest_readings_total", 0.0))
        )
        refused = prom_sum(m, "citysense_ingest_rejected_total") + m.get(
            "citysense_ingest_duplicate_batches_total", 0.0
        )
        if batches + refused >= self.n:
            self.got = int(batches)
            self.readings = int(m.get("citysense_ingest_readings_total", 0.0))
            self.done_at = crossing(self.points, batches) or now
            self.extra["metrics_at_done"] = m

    def finish(self) -> None:
        time.sleep(1.0)  # let the last alert reach the case store
        m = self.metrics()
        self.extra["metrics_final"] = {k: v for k, v in m.items() if k.startswith("citysense_")}
        self.extra["rejected"] = prom_sum(m, "citysense_ingest_rejected_total")
        self.extra["duplicates"] = m.get("citysense_ingest_duplicate_batches_total")
        self.extra["unregistered_readings"] = m.get("citysense_ingest_unregistered_readings_total")
        self.extra["alerts_open"] = m.get(
            'citysense_rules_alerts_total{rule="cover-open",state="open"}'
        )
        self.extra["alerts_cleared"] = m.get(
            'citysense_rules_alerts_total{rule="cover-open",state="cleared"}'
        )
        cases = http_get(
            f"http://127.0.0.1:{self.hp}/api/v1/cases?limit=1", timeout=30, token=self.token
        )
        open_cases = http_get(
            f"http://127.0.0.1:{self.hp}/api/v1/cases?limit=1&status=open", timeout=30
        )
        self.extra["cases_total"] = json.loads(cases)["total"] if cases else None
        self.extra["cases_open"] = json.loads(open_cases)["total"] if open_cases else None
        self.extra["healthz_final"] = json.loads(
            http_get(f"http://127.0.0.1:{self.hp}/api/v1/health", timeout=30, token=self.token)
            or b"{}"
        )

    def close(self) -> None:
        if self.proc:
            self.proc.stop(signal.SIGINT, grace=15)  # Ctrl-C: serve exits cleanly


SYSTEMS: dict[str, type[Consumer]] = {
    "pubonly": PubOnly,
    "raw": RawSub,
    "paho": PahoSub,
    "nodered": NodeRed,
    "citysense": Citysense,
}


# ---------------------------------------------------------------- one run


def launch_publishers(broker: Broker, payload: Path, log: Path) -> list[Proc]:
    out = log.open("wb")
    pubs = []
    for f in sorted((payload / "telemetry").glob("*.jsonl")):
        sid = f.stem
        with f.open("rb") as stdin:
            pubs.append(
                Proc(
                    [
                        "mosquitto_pub",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(broker.port),
                        "-q",
                        "1",
                        "-l",
                        "-i",
                        f"pub-{sid}",
                        "-t",
                        f"citysense/v1/stations/{sid}/telemetry",
                    ],
                    stdin=stdin,
                    stdout=subprocess.DEVNULL,
                    stderr=out,
                )
            )
    out.close()
    return pubs


def one_run(system: str, payload: Path, run_dir: Path, opts: argparse.Namespace) -> dict[str, Any]:
    meta = json.loads((payload / "meta.json").read_text())
    opts.meta = meta
    n, batch = meta["messages"], meta["readings_per_message"]
    run_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "system": system,
        "shape": payload.name,
        "mode": opts.mode,
        "n": n,
        "batch": batch,
        "readings_above_15_sent": meta["readings_above_15"],
        "incidents_sent": meta["incidents"],
        "run_dir": str(run_dir),
    }
    broker = Broker(run_dir, Path(opts.broker_conf))
    consumer = SYSTEMS[system](system, run_dir, broker, n, batch, opts)
    drain = opts.mode == "drain" and system != "pubonly"
    try:
        result["births_acked"] = broker.publish_births(payload / "births")
        consumer.start()
        broker.wait_subscriptions(consumer.subs)
        time.sleep(0.3)
        result["loadavg_before"] = os.getloadavg()
        cproc = consumer.proc
        t_pub = time.time()
        if drain:
            assert cproc
            cproc.send(signal.SIGSTOP)
        consumer.pubs = launch_publishers(broker, payload, run_dir / "publishers.log")
        result["launch_s"] = time.time() - t_pub
        if drain:  # wait until the broker holds everything, then let the consumer go
            deadline = time.time() + opts.limit_s
            while not all(p.exited.is_set() for p in consumer.pubs) and time.time() < deadline:
                time.sleep(0.1)
            result["queued_before_cont"] = broker.fresh_sys().get("store/messages/count")
        sent0 = broker.fresh_sys().get("publish/messages/sent", 0.0) if drain else None
        cpu0 = {"consumer": cproc.cpu() if cproc else None, "broker": broker.proc.cpu()}
        m0 = machine_cpu()
        t_start = time.time() if drain else t_pub
        if drain:
            assert cproc
            cproc.send(signal.SIGCONT)
        else:
            sent0 = 0.0
        samples: list[dict[str, Any]] = []
        last_progress, last_sent = time.time(), -1.0
        while True:
            time.sleep(SAMPLE_S)
            now = time.time()
            consumer.sample(now)
            sent = broker.sys.get("publish/messages/sent", 0.0)
            samples.append(
                {
                    "t": now - t_start,
                    "consumer_cpu": cproc.cpu() if cproc else None,
                    "consumer_rss_peak_mb": cproc.rss_peak_mb() if cproc else None,
                    "broker_cpu": broker.proc.cpu(),
                    "sys_sent": sent,
                    "sys_received": broker.sys.get("publish/messages/received", 0.0),
                    "counter": consumer.points[-1][1] if consumer.points else None,
                    "pubs_done": sum(1 for p in consumer.pubs if p.exited.is_set()),
                }
            )
            if consumer.finished():
                break
            if sent != last_sent:
                last_sent, last_progress = sent, now
            elif now - last_progress > opts.stall_s:
                raise RuntimeError(f"no progress for {opts.stall_s} s (broker sent {sent})")
            if now - t_start > opts.limit_s:
                raise RuntimeError(f"run longer than {opts.limit_s} s")
        m1 = machine_cpu()
        cpu_end = cproc.cpu() if cproc else None
        rss_peak = cproc.rss_peak_mb() if cproc else None
        t_done = consumer.done_at
        assert t_done is not None
        deadline = time.time() + 60
        while not all(p.exited.is_set() for p in consumer.pubs) and time.time() < deadline:
            time.sleep(0.1)
        consumer.finish()
        sys_end = broker.fresh_sys()
        wall = t_done - t_start
        bcpu_end = next(
            (s["broker_cpu"] for s in samples if s["t"] >= wall), samples[-1]["broker_cpu"]
        )
        pub_done = max((p.exit_at or 0.0) for p in consumer.pubs)
        if system in ("citysense", "nodered"):
            steady_pts = consumer.points
        elif system == "pubonly":
            steady_pts = []
        else:
            steady_pts = [(t, v - (sent0 or 0.0)) for t, v in broker.sent_series if t >= t_start]
        steady = slope(steady_pts, 0.1 * n, 0.9 * n)
        readings = consumer.readings if consumer.readings is not None else consumer.got * batch
        first_at = consumer.extra.get("first_at")
        result.update(
            {
                "ok": consumer.got == n,
                "got": consumer.got,
                "readings": readings,
                "wall_s": wall,
                "msgs_per_s": consumer.got / wall,
                "readings_per_s": readings / wall,
                "first_to_last_msgs_per_s": (consumer.got - 1) / (t_done - first_at)
                if first_at
                else None,
                "steady_msgs_per_s": steady,
                "steady_readings_per_s": steady * batch if steady else None,
                "consumer_cpu_pct": 100 * (cpu_end - cpu0["consumer"]) / wall
                if cpu_end is not None and cpu0["consumer"] is not None
                else None,
                "consumer_rss_peak_mb": rss_peak,
                "broker_cpu_pct": 100 * ((bcpu_end or 0) - (cpu0["broker"] or 0)) / wall,
                "machine_busy_pct": 100
                * (m1[0] - m0[0])
                / max(1, m1[1] - m0[1])
                * (os.cpu_count() or 1),
                "publishers": len(consumer.pubs),
                "publishers_failed": sum(1 for p in consumer.pubs if p.rc != 0),
                "publishers_done_s": pub_done - t_pub,
                "publishers_cpu_s": sum(p.cpu_total or 0.0 for p in consumer.pubs),
                "consumer_done_after_publishers_s": t_done - pub_done,
                "broker_sys_end": {
                    k: v for k, v in sys_end.items() if k.startswith(("publish/", "store/"))
                },
                "broker_received": sys_end.get("publish/messages/received"),
                "broker_dropped": sys_end.get("publish/messages/dropped"),
            }
        )
        result.update({k: v for k, v in consumer.extra.items() if k != "readings_points"})
        if system == "citysense":
            result["steady_readings_per_s"] = slope(
                consumer.extra["readings_points"], 0.1 * n * batch, 0.9 * n * batch
            )
        (run_dir / "samples.json").write_text(
            json.dumps(
                {
                    "t_start": t_start,
                    "samples": samples,
                    "points": consumer.points,
                    "sent_series": broker.sent_series,
                },
                indent=0,
            )
        )
    except Exception as exc:  # a failed run is recorded, the series goes on
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}", got=consumer.got)
    finally:  # every process this run started, each step on its own
        for step in (consumer.close, *(p.stop for p in consumer.pubs), broker.close):
            try:
                step()
            except Exception as exc:
                result.setdefault("cleanup_errors", []).append(repr(exc))
        blog = (run_dir / "mosquitto.log").read_text(errors="replace")
        result["broker_log_drop_lines"] = [
            ln for ln in blog.splitlines() if re.search(r"drop", ln, re.I)
        ][:5]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--project", required=True, help="citysense checkout with its .venv")
    ap.add_argument(
        "--payloads",
        nargs="+",
        required=True,
        type=Path,
        help="dirs written by side_by_side_payloads.py",
    )
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--nodered", help="dir with node_modules/.bin/node-red (Node-RED 4)")
    ap.add_argument("--nodered-flow", default=str(HERE / "nodered_peer" / "flows.template.json"))
    ap.add_argument("--broker-conf", help="default: PROJECT/broker_config/dev.conf")
    ap.add_argument("--systems", default="pubonly,raw,paho,nodered,citysense")
    ap.add_argument("--mode", choices=("live", "drain"), default="live")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--stall-s", type=float, default=20.0)
    ap.add_argument("--limit-s", type=float, default=600.0)
    ap.add_argument("--pause-s", type=float, default=2.0, help="idle time between runs")
    opts = ap.parse_args()
    opts.broker_conf = opts.broker_conf or str(Path(opts.project) / "broker_config" / "dev.conf")
    systems = opts.systems.split(",")
    if unknown := set(systems) - set(SYSTEMS):
        ap.error(f"unknown systems {sorted(unknown)}")
    if "nodered" in systems and not opts.nodered:
        ap.error("--nodered DIR is needed for the nodered system")
    if opts.mode == "drain" and "pubonly" in systems:
        systems.remove("pubonly")
    for tool in ("mosquitto", "mosquitto_pub", "mosquitto_sub"):
        if not shutil.which(tool):
            ap.error(f"{tool} not on PATH")
    opts.work.mkdir(parents=True, exist_ok=True)
    results_file = opts.work / "results.json"
    results: list[dict[str, Any]] = (
        json.loads(results_file.read_text()) if results_file.exists() else []
    )
    k = len(results)
    for payload in opts.payloads:
        for rep in range(1, opts.reps + 1):
            for system in systems:
                k += 1
                run_dir = opts.work / "runs" / f"{k:03d}-{opts.mode}-{system}-{payload.name}"
                print(
                    f"[{time.strftime('%H:%M:%S')}] {opts.mode} {payload.name} rep {rep} {system} ...",
                    flush=True,
                )
                r = one_run(system, payload, run_dir, opts)
                r["rep"] = rep
                results.append(r)
                results_file.write_text(json.dumps(results, indent=1, default=str))
                if r.get("ok"):
                    print(
                        f"    {r['msgs_per_s']:,.0f} msg/s  {r['readings_per_s']:,.0f} readings/s  "
                        f"steady {r['steady_msgs_per_s'] or 0:,.0f} msg/s  cpu {r['consumer_cpu_pct'] or 0:.0f}%  "
                        f"wall {r['wall_s']:.1f}s  publishers done {r['publishers_done_s']:.1f}s  "
                        f"dropped {r['broker_dropped']}",
                        flush=True,
                    )
                else:
                    print(f"    FAILED: {r.get('error')} got {r.get('got')}/{r['n']}", flush=True)
                time.sleep(opts.pause_s)
    print(f"results: {results_file}")


if __name__ == "__main__":
    main()
