"""A private VictoriaMetrics for the whole-stack measurements (the tests have their own fixture).

Started like ``tests/conftest.py``'s ``VictoriaMetrics``: its own data dir, a free loopback port,
``-retentionPeriod=100y`` and ``-dedup.minScrapeInterval=1ms``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from bench.report import BenchError
from citysense.broker import _die_with_parent, free_port

START_TIMEOUT_S = 15.0


class PrivateVictoria:
    """``with PrivateVictoria() as vm: vm.url``; the process and its data go on exit."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, 0
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def __enter__(self) -> PrivateVictoria:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise BenchError("victoria-metrics is not on PATH (apt-get install victoria-metrics)")
        self._workdir = tempfile.TemporaryDirectory(prefix="citysense-bench-vm-")
        workdir = Path(self._workdir.name)
        self.port = free_port(self.host)
        with (workdir / "victoria-metrics.log").open("wb") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"-storageDataPath={workdir / 'data'}",
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
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._healthy():
            if self._process.poll() is not None or time.monotonic() > deadline:
                said = (workdir / "victoria-metrics.log").read_text(errors="replace")[-2000:]
                self.__exit__(None, None, None)
                raise BenchError(f"victoria-metrics did not become healthy: {said}")
            time.sleep(0.05)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
