from pathlib import Path

import pytest
from pydantic import ValidationError

from ingest.sinks import RecorderSink, SinkSettings, VictoriaSink, build_sinks
from ingest.sinks.settings import build_store


def test_without_a_store_url_the_recorder_alone_keeps_telemetry() -> None:
    (only,) = build_sinks(SinkSettings())
    assert isinstance(only, RecorderSink)
    assert only.directory == Path("data/recordings")


async def test_settings_come_from_citysense_sink_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CITYSENSE_SINK_VICTORIA_URL", "http://127.0.0.1:8428/")
    monkeypatch.setenv("CITYSENSE_SINK_BATCH_POINTS", "100")
    monkeypatch.setenv("CITYSENSE_SINK_RETRY_ATTEMPTS", "2")
    monkeypatch.setenv("CITYSENSE_SINK_RECORDER_DIR", str(tmp_path))
    monkeypatch.setenv("CITYSENSE_SINK_RECORDER_KEEP_FILES", "3")
    victoria, recorder = build_sinks(SinkSettings())
    assert isinstance(victoria, VictoriaSink)
    assert (victoria.url, victoria.batch_points, victoria.retry.attempts) == (
        "http://127.0.0.1:8428",
        100,
        2,
    )
    assert isinstance(recorder, RecorderSink)
    assert (recorder.directory, recorder.keep_files) == (tmp_path, 3)
    await victoria.aclose()


def test_no_sink_at_all_is_allowed_but_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CITYSENSE_SINK_RECORDER_DIR", "none")
    monkeypatch.setenv("CITYSENSE_SINK_VICTORIA_URL", "")
    assert build_sinks(SinkSettings()) == []
    assert "no telemetry sink" in caplog.text


def test_a_store_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="http"):
        SinkSettings(victoria_url="localhost:8428")


def test_gzip_is_on_for_a_remote_store_and_off_on_loopback() -> None:
    def gzip_of(url: str, **extra: object) -> bool:
        store = build_store(SinkSettings(victoria_url=url, **extra))
        assert store is not None
        return store.gzip

    assert gzip_of("http://vm.example:8428")
    assert not gzip_of("http://127.0.0.1:8428")
    assert not gzip_of("http://localhost:8428")
    assert gzip_of("http://127.0.0.1:8428", gzip=True)
