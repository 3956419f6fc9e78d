"""A private VictoriaMetrics process for ``citysense demo`` and the tests: Debian's
``victoria-metrics`` on a free loopback port with its own data directory.

``-retentionPeriod=100y``: VictoriaMetrics silently drops points older than its retention (one
month by default), and replays and tests write at dates in the past.
``-dedup.minScrapeInterval=1ms``: a re-sent point (same series and millisecond) is kept once, as
production should run it (at-least-once delivery sends again after a crash).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from citysense.broker import _die_with_parent, free_port


class VictoriaError(RuntimeError):
    """VictoriaMetrics is missing or did not come up."""


@dataclass
class VictoriaMetrics:
    """``start``/``stop`` a private ``victoria-metrics``; ``export`` reads series back."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @staticmethod
    def available() -> bool:
        return shutil.which("victoria-metrics") is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = 15.0) -> VictoriaMetrics:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise VictoriaError("victoria-metrics is not on PATH: apt-get install victoria-metrics")
        self.port = self.port or free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
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
                raise VictoriaError(f"victoria-metrics did not become healthy: {output[-2000:]}")
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
        # ``end`` defaults to now: points stamped ahead of the wall clock would be left out
        query = urllib.parse.urlencode({"match[]": match, "start": "0", "end": "4102444800"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]

    def __enter__(self) -> VictoriaMetrics:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
