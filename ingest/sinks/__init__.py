"""Telemetry sinks behind ``ingest.ports.ReadingSink``: one file per implementation.

- ``victoria``: VictoriaMetrics (InfluxDB v2 write API) through ``influxdb-client``.
- ``recorder``: every accepted message, replayable, in rotating recording files.
- ``settings``: ``SinkSettings`` (``CITYSENSE_SINK_*``) and ``build_sinks``.

See ``docs/sinks.md``.
"""

from ingest.errors import BatchKey, PermanentSinkError, SinkError, TransientSinkError
from ingest.sinks.recorder import RecorderPosition, RecorderSink, read_recorded, recorded_files
from ingest.sinks.settings import SinkSettings, build_sinks
from ingest.sinks.victoria import RetryPolicy, VictoriaSink

__all__ = [
    "BatchKey",
    "PermanentSinkError",
    "RecorderPosition",
    "RecorderSink",
    "RetryPolicy",
    "SinkError",
    "SinkSettings",
    "TransientSinkError",
    "VictoriaSink",
    "build_sinks",
    "read_recorded",
    "recorded_files",
]
