"""Per-sensor report-by-exception with a heartbeat, on a fake gateway clock."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from edge.exception import (
    DEFAULT_POLICIES,
    ExceptionFilter,
    ReportByException,
    ReportSettings,
)
from protocol import Reading, SensorInfo, SensorKind
from tests.factories import T0, sensor_info

COVER_ID = "st-1.cover-01"
MAIN_ID = "st-1.main-01"
POLE_ID = "st-1.pole-01"


def cover(tilt: float, *, at: datetime = T0, **more: float) -> Reading:
    return Reading(
        sensor_id=COVER_ID, kind=SensorKind.COVER, ts=at, values={"tilt_deg": tilt, **more}
    )


def main(mpa: float) -> Reading:
    return Reading(sensor_id=MAIN_ID, kind=SensorKind.PRESSURE, ts=T0, values={"pressure_mpa": mpa})


def pole(tilt: float, sensor_id: str = POLE_ID) -> Reading:
    return Reading(sensor_id=sensor_id, kind=SensorKind.POLE, ts=T0, values={"tilt_deg": tilt})


def offered(chosen: ExceptionFilter, readings: Sequence[tuple[float, Reading]]) -> list[str | None]:
    return [chosen.offer(reading, now) for now, reading in readings]


def test_a_change_within_the_deadband_is_suppressed_and_a_drift_is_forwarded_once() -> None:
    chosen = ExceptionFilter()
    assert DEFAULT_POLICIES[SensorKind.COVER].deadband["tilt_deg"] == 1.0
    reasons = offered(
        chosen,
        [(0, cover(2.0)), (1, cover(2.4)), (2, cover(2.9)), (3, cover(3.1)), (4, cover(2.5))],
    )
    # 3.1 is 1.1 past the last *forwarded* 2.0; 2.5 is within 1.0 of the forwarded 3.1.
    assert reasons == ["first", None, None, "change", None]
    assert chosen.stats.suppressed == 3
    assert chosen.stats.forwarded == Counter({"first": 1, "change": 1})


def test_a_value_appearing_or_disappearing_is_a_change() -> None:
    chosen = ExceptionFilter()
    assert offered(
        chosen, [(0, cover(2.0)), (1, cover(2.0, battery_v=3.6)), (2, cover(2.0, battery_v=3.6))]
    ) == ["first", "change", None]
    assert chosen.offer(cover(2.0), 3) == "change"


def test_the_heartbeat_forwards_an_unchanged_sensor_on_the_gateway_clock() -> None:
    chosen = ExceptionFilter()
    heartbeat = DEFAULT_POLICIES[SensorKind.COVER].heartbeat_s
    assert chosen.offer(cover(2.0), 100.0) == "first"
    assert chosen.offer(cover(2.0), 100.0 + heartbeat - 0.001) is None
    assert chosen.offer(cover(2.0), 100.0 + heartbeat) == "heartbeat"
    assert chosen.offer(cover(2.0), 100.0 + heartbeat + 1) is None  # counted from the last one
    # The device clock resetting to 2000-01-01 changes nothing: the gateway clock counts.
    reset = datetime(2000, 1, 1, tzinfo=UTC)
    assert chosen.offer(cover(2.0, at=reset), 100.0 + heartbeat + 2) is None
    assert chosen.offer(cover(2.0, at=reset), 100.0 + 2 * heartbeat) == "heartbeat"


def test_a_change_restarts_the_heartbeat() -> None:
    chosen = ExceptionFilter(
        ReportSettings.model_validate({"kinds": {"cover": {"heartbeat_s": 10}}})
    )
    assert offered(
        chosen, [(0, cover(2.0)), (8, cover(5.0)), (12, cover(5.0)), (18, cover(5.0))]
    ) == [
        "first",
        "change",
        None,
        "heartbeat",
    ]


def test_alarm_readings_always_pass_and_the_recovery_is_forwarded_once() -> None:
    chosen = ExceptionFilter()
    reasons = offered(
        chosen,
        [
            (0, cover(2.0)),
            (1, cover(2.5)),  # suppressed
            (2, cover(10.5)),  # the vendor alarm angle: forwarded, however small the step
            (3, cover(10.5)),  # unchanged, still forwarded: the rules' hold needs every sample
            (4, cover(10.6)),
            (5, cover(9.9)),  # back under the alarm angle: the recovery goes
            (6, cover(9.9)),
        ],
    )
    assert reasons == ["first", None, "alarm", "alarm", "alarm", "recovery", None]


def test_each_kind_has_its_own_alarm_and_each_sensor_its_own_state() -> None:
    chosen = ExceptionFilter()
    # Water main: below the network minimum of 0.14 MPa every sample goes.
    assert offered(
        chosen, [(0, main(0.30)), (1, main(0.302)), (2, main(0.139)), (3, main(0.139))]
    ) == [
        "first",
        None,
        "alarm",
        "alarm",
    ]
    # A burst drop (>= 0.02 MPa) is far past the 0.005 MPa deadband.
    assert chosen.offer(main(0.30), 4) == "recovery"
    assert chosen.offer(main(0.27), 5) == "change"
    # Two poles: one leaning past the warning angle, one steady.
    assert offered(
        chosen,
        [
            (0, pole(0.2)),
            (0, pole(0.2, "st-1.pole-02")),
            (1, pole(1.2)),
            (1, pole(0.25, "st-1.pole-02")),
        ],
    ) == ["first", "first", "alarm", None]
    # Another field can raise the alarm too: methane in a well.
    assert chosen.offer(cover(1.0, gas_ppm=0.0), 0) == "first"
    assert chosen.offer(cover(1.0, gas_ppm=1200.0), 1) == "alarm"


def test_configured_overrides_merge_with_the_defaults() -> None:
    settings = ReportSettings.model_validate(
        {
            "kinds": {
                "cover": {
                    "heartbeat_s": 3600,
                    "deadband": {"tilt_deg": 0.5},
                    "alarm_above": {"tilt_deg": math.inf},  # switched off
                }
            }
        }
    )
    policy = settings.policy(SensorKind.COVER)
    assert policy.heartbeat_s == 3600
    assert policy.deadband["tilt_deg"] == 0.5
    assert (
        policy.deadband["water_level_m"]
        == DEFAULT_POLICIES[SensorKind.COVER].deadband["water_level_m"]
    )
    assert policy.alarm_above["gas_ppm"] == 1000.0
    assert settings.policy(SensorKind.POLE) == DEFAULT_POLICIES[SensorKind.POLE]
    chosen = ExceptionFilter(settings)
    assert offered(
        chosen, [(0, cover(2.0)), (1, cover(2.6)), (2, cover(40.0)), (3, cover(40.0))]
    ) == [
        "first",
        "change",
        "change",
        None,  # no tilt alarm any more: 40° unchanged is suppressed
    ]


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        (
            {"cover": {"deadband": {"pressure_mpa": 0.1}}},
            "a cover reading has no value pressure_mpa",
        ),
        ({"pole": {"alarm_above": {"tilt": 3}}}, "a pole reading has no value tilt"),
        ({"cover": {"deadband": {"tilt_deg": -1}}}, "deadband of tilt_deg must be >= 0"),
        ({"cover": {"heartbeat_s": 0}}, "greater than 0"),
        ({"volcano": {}}, "Input should be 'cover', 'pressure' or 'pole'"),
        ({"cover": {"hearbeat_s": 5}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_overrides_are_refused(kinds: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReportSettings.model_validate({"kinds": kinds})


class ListDriver:
    def __init__(self, batches: list[list[Reading]]) -> None:
        self.batches = batches
        self.inventory = [sensor_info(COVER_ID)]

    def sensors(self) -> Sequence[SensorInfo]:
        return self.inventory

    def read(self, ts: datetime) -> list[Reading]:
        return self.batches.pop(0)


def test_the_driver_wrapper_forwards_only_what_the_filter_lets_through() -> None:
    now = [0.0]
    inner = ListDriver(
        [
            [cover(2.0), main(0.3)],
            [cover(2.1), main(0.3)],
            [cover(2.1), main(0.1)],
            [cover(2.1), main(0.1)],
        ]
    )
    driver = ReportByException(inner, clock=lambda: now[0])
    assert driver.sensors() == inner.inventory
    seen = []
    for step in range(4):
        now[0] = step * 70.0  # the pressure heartbeat (60 s) passes, the cover's (300 s) not
        seen.append([(r.sensor_id, r.values) for r in driver.read(T0 + timedelta(seconds=step))])
    assert seen == [
        [(COVER_ID, {"tilt_deg": 2.0}), (MAIN_ID, {"pressure_mpa": 0.3})],
        [(MAIN_ID, {"pressure_mpa": 0.3})],
        [(MAIN_ID, {"pressure_mpa": 0.1})],
        [(MAIN_ID, {"pressure_mpa": 0.1})],
    ]
    assert driver.stats.forwarded == Counter({"first": 2, "heartbeat": 1, "alarm": 2})
    assert driver.stats.suppressed == 3
