from datetime import UTC, datetime, timedelta

from ingest.sinks.lines import LineFormatter, batch_line, tag, unix_ns
from protocol import Reading, SensorKind
from tests.factories import T0, batch, tilt


def test_one_line_per_reading_with_kind_tags_values_and_device_time() -> None:
    cover = Reading(
        sensor_id="st-1.cover-01",
        kind=SensorKind.COVER,
        ts=T0 + timedelta(milliseconds=1500),
        values={"tilt_deg": 12.5, "battery_v": 3.6},
    )
    pressure = Reading(
        sensor_id="st-1.p:7", kind=SensorKind.PRESSURE, ts=T0, values={"pressure_mpa": 1e-05}
    )
    lines = LineFormatter().reading_lines(batch([cover, pressure]))
    t0_ns = 1_782_892_800_000_000_000
    assert lines == [
        "cover,station=st-1,sensor=st-1.cover-01 tilt_deg=12.5,battery_v=3.6"
        f" {t0_ns + 1_500_000_000}",
        f"pressure,station=st-1,sensor=st-1.p:7 pressure_mpa=0.00001 {t0_ns}",
    ]


def test_batch_line_carries_edge_and_ingest_times_at_the_send_time() -> None:
    received = T0 + timedelta(seconds=12)
    line = batch_line(batch([tilt(0, 1), tilt(5, 2)], seq=9), received)
    assert line == (
        "citysense_batch,station=st-1 readings=2.0,seq=9.0,sent_at=1782892805.0,"
        f"received_at=1782892812.0,transit_s=7.0,age_s=12.0 {unix_ns(T0 + timedelta(seconds=5))}"
    )


def test_unix_ns_keeps_microseconds_and_any_offset() -> None:
    ts = datetime(2026, 7, 1, 16, 0, 0, 123456, tzinfo=UTC).astimezone()
    assert unix_ns(ts) == 1_782_921_600_123_456_000


def test_tag_escapes_line_protocol_specials() -> None:
    assert tag("a b,c=d") == r"a\ b\,c\=d"


def test_a_sensor_whose_value_names_change_gets_its_own_line_and_templates_stay_bounded() -> None:
    formatter = LineFormatter(kept=2)
    one = Reading(sensor_id="st-1.c", kind=SensorKind.COVER, ts=T0, values={"tilt_deg": 1.0})
    two = Reading(
        sensor_id="st-1.c", kind=SensorKind.COVER, ts=T0, values={"tilt_deg": 2.0, "gas_ppm": 3.0}
    )
    three = Reading(sensor_id="st-1.d", kind=SensorKind.POLE, ts=T0, values={"tilt_deg": 0.5})
    t0_ns = 1_782_892_800_000_000_000
    for _ in range(2):  # built, then from the templates (cleared once past two)
        assert formatter.reading_lines(batch([one, two, three])) == [
            f"cover,station=st-1,sensor=st-1.c tilt_deg=1.0 {t0_ns}",
            f"cover,station=st-1,sensor=st-1.c tilt_deg=2.0,gas_ppm=3.0 {t0_ns}",
            f"pole,station=st-1,sensor=st-1.d tilt_deg=0.5 {t0_ns}",
        ]
    assert len(formatter._templates) <= 2


def test_ids_from_elsewhere_are_escaped_and_braces_survive_the_template() -> None:
    odd = Reading.model_construct(
        sensor_id="st 1.{x},y=z", kind=SensorKind.POLE, ts=T0, values={"tilt_deg": 0.5}
    )
    line = LineFormatter().reading_lines(batch([odd]).model_copy(update={"station_id": "st 1"}))
    assert line == [r"pole,station=st\ 1,sensor=st\ 1.{x}\,y\=z tilt_deg=0.5 1782892800000000000"]
