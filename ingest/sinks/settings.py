"""Where ingest stores telemetry: one settings model and the factory that builds the sinks.

Without a time-series store URL, the recorder alone keeps telemetry (the embedded default of
``make demo``): every accepted message, replayable and backtestable, in ``recorder_dir``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.ports import ReadingSink
from ingest.sinks.recorder import RecorderSink
from ingest.sinks.victoria import RetryPolicy, VictoriaSink

log = logging.getLogger(__name__)


class SinkSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CITYSENSE_SINK_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        env_parse_none_str="none",  # CITYSENSE_SINK_RECORDER_DIR=none: record nothing
    )

    victoria_url: str | None = None
    """Base URL of VictoriaMetrics (``http://host:8428``) or any InfluxDB v2 write API.
    None: no time-series store."""
    victoria_token: SecretStr | None = None
    """Sent as ``Authorization: Token …``; VictoriaMetrics ignores it (a vmauth proxy may not)."""
    batch_points: int = Field(default=20_000, ge=1, le=100_000)
    """Points per write request. 20,000 rather than 5,000: with 100-reading messages a node
    drained 232,000–248,000 readings/s against 208,000–222,000 (scratch A/B, two pairs of two
    runs; VictoriaMetrics on loopback also used less CPU); 50,000 was no better."""
    max_buffered_points: int = Field(default=200_000, ge=1)
    """Beyond this, ``write_batch`` refuses new batches (``TransientSinkError``)."""
    flush_interval_s: float = Field(default=1.0, gt=0, le=3600)
    """A buffered point waits at most this long for more before ``write_batch`` posts it."""
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    """Whole-request timeout (connect, send, answer) of one write."""
    gzip: bool | None = None
    """Compress writes; None (default): only when the store is not on this machine (the
    library's level-9 gzip cost a fifth of ingest's time on loopback, `make bench`)."""
    retry_attempts: int = Field(default=5, ge=1, le=100)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)
    max_retry_after_s: float = Field(default=60.0, ge=0)

    recorder_dir: Path | None = Path("data/recordings")
    """Where accepted messages are recorded; None: not recorded."""
    recorder_max_file_bytes: int = Field(default=64 << 20, ge=4096)
    recorder_max_file_age_s: float | None = Field(default=3600.0, gt=0)
    recorder_keep_files: int | None = Field(default=48, ge=1)
    """How many recording files are kept (the oldest go first); None: all."""

    @field_validator("victoria_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"victoria_url must be an http(s) URL, not {url!r}")
        return url.rstrip("/") if url else None

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.retry_attempts,
            initial_s=self.retry_initial_s,
            maximum_s=max(self.retry_max_s, self.retry_initial_s),
            max_retry_after_s=self.max_retry_after_s,
        )


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def build_store(settings: SinkSettings) -> VictoriaSink | None:
    """The time-series store's sink, when a URL is set (build inside the running service:
    it holds an HTTP pool and a worker thread; close it with ``await sink.aclose()``)."""
    if not settings.victoria_url:
        return None
    token = settings.victoria_token.get_secret_value() if settings.victoria_token else None
    return VictoriaSink(
        settings.victoria_url,
        token=token,
        batch_points=settings.batch_points,
        max_buffered_points=max(settings.max_buffered_points, settings.batch_points),
        flush_interval_s=settings.flush_interval_s,
        timeout_s=settings.timeout_s,
        gzip=settings.gzip if settings.gzip is not None else not _loopback(settings.victoria_url),
        retry=settings.retry_policy(),
    )


def build_recorder(settings: SinkSettings) -> RecorderSink | None:
    """The recorder, when a directory is set. ``citysense serve`` uses it as ingest's journal
    (every accepted message, durable before it is acknowledged)."""
    if settings.recorder_dir is None:
        return None
    return RecorderSink(
        settings.recorder_dir,
        max_file_bytes=settings.recorder_max_file_bytes,
        max_file_age_s=settings.recorder_max_file_age_s,
        keep_files=settings.recorder_keep_files,
    )


def build_sinks(settings: SinkSettings) -> list[ReadingSink]:
    """The configured sinks: VictoriaMetrics when a URL is set, the recorder when a dir is."""
    sinks: list[ReadingSink] = []
    for sink in (build_store(settings), build_recorder(settings)):
        if sink is not None:
            sinks.append(sink)
    if not sinks:
        log.warning("no telemetry sink configured: readings are evaluated, not stored")
    return sinks
