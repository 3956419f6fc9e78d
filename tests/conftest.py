"""Shared fixtures: real services on free loopback ports.

In CI (``CI=true``) and everywhere else a missing service fails the test: it never skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from citysense.broker import MosquittoBroker, _die_with_parent, free_port


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A private Mosquitto started from broker_config/dev.conf on a free loopback port."""
    with MosquittoBroker() as broker:
        yield broker


@dataclass
class VictoriaMetrics:
    """A private ``victoria-metrics`` process with its own data dir; ``start``/``stop`` it.

    ``-retentionPeriod=100y``: VictoriaMetrics silently drops points older than its retention
    (one month by default), and the tests write at fixed dates in the past.
    ``-dedup.minScrapeInterval=1ms``: a re-sent point (same series and millisecond) is kept
    once, as production should run it (at-least-once delivery re-sends).
    """

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> VictoriaMetrics:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            pytest.fail("victoria-metrics is not on PATH: apt-get install victoria-metrics")
        self.port = self.port or free_port(self.host)
        log = (self.data_dir / "victoria-metrics.log").open("ab")
        self._process = subprocess.Popen(
            [
                binary,
                f"-storageDataPath={self.data_dir / 'data'}",
                f"-httpListenAddr={self.host}:{self.port}",
                "-retentionPeriod=100y",
                "-dedup.minScrapeInterval=1ms",
                "-loggerLevel=WARN",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = (self.data_dir / "victoria-metrics.log").read_text(errors="replace")
                self.stop()
                pytest.fail(f"victoria-metrics did not become healthy: {output[-2000:]}")
            time.sleep(0.05)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def export(self, match: str) -> list[dict[str, object]]:
        """Every series matching the selector, as ``/api/v1/export`` gives them (JSON lines)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def victoria() -> Iterator[VictoriaMetrics]:
    """A private VictoriaMetrics on a free loopback port with a temporary data dir."""
    with tempfile.TemporaryDirectory(prefix="citysense-victoria-") as workdir:
        server = VictoriaMetrics(Path(workdir)).start()
        try:
            yield server
        finally:
            server.stop()
