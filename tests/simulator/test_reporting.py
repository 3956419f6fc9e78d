from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protocol import SensorKind
from simulator.physics import PressureModel
from simulator.reporting import Reporter, ReportPolicy, Threshold, default_policy

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
COVER = default_policy(SensorKind.COVER, powered=False)
QUIET = {"tilt_deg": 0.2, "water_level_m": 0.6, "battery_v": 3.6}


def _reported(reporter: Reporter, samples: list[tuple[float, dict[str, float]]]) -> list[float]:
    """The sample times (seconds after T0) the device reported."""
    return [s for s, values in samples if reporter.offer(T0 + timedelta(seconds=s), values)]


def test_a_quiet_battery_device_reports_on_its_heartbeat() -> None:
    samples = [(float(s), QUIET) for s in range(0, 3 * 86_400, 60)]
    assert _reported(Reporter(COVER), samples) == [0, 43_200, 86_400, 129_600, 172_800, 216_000]


def test_an_alarm_is_reported_every_interval_and_its_recovery_once() -> None:
    tilted = {**QUIET, "tilt_deg": 20.0}
    samples = [(s / 2, QUIET if s < 20 or s >= 40 else tilted) for s in range(200)]
    assert _reported(Reporter(COVER), samples) == [0, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]


def test_a_brief_spike_makes_an_alarm_and_a_recovery_report() -> None:
    spike = {**QUIET, "tilt_deg": 25.0}
    samples = [(float(s), spike if s == 100 else QUIET) for s in range(300)]
    assert _reported(Reporter(COVER), samples) == [0, 100, 101]


def test_every_cover_alarm_counts() -> None:
    for name, value in (("water_level_m", 2.0), ("gas_ppm", 6_000.0), ("tilt_deg", 11.0)):
        assert COVER.abnormal({**QUIET, name: value})
    assert not COVER.abnormal({**QUIET, "gas_ppm": 20.0})


def test_due_is_a_pure_rule() -> None:
    later = T0 + timedelta(hours=1)
    assert COVER.due(None, T0, QUIET)
    assert not COVER.due(T0, later, QUIET)
    assert COVER.due(T0, T0 + timedelta(hours=12), QUIET)
    assert COVER.due(T0, later, {**QUIET, "tilt_deg": 30.0})  # alarm raised
    assert COVER.due(T0, later, QUIET, was_abnormal=True)  # recovery
    assert not COVER.due(
        later, later + timedelta(milliseconds=500), {"tilt_deg": 30.0}, was_abnormal=True
    )


def test_a_sharp_pressure_drop_raises_an_alarm_a_slow_one_does_not() -> None:
    policy = default_policy(SensorKind.PRESSURE, powered=False)
    reporter = Reporter(policy)
    samples = [(float(s), {"pressure_mpa": 0.30 - 0.00001 * s}) for s in range(0, 3600, 5)]
    assert _reported(reporter, samples) == [0, 900, 1800, 2700]  # 0.036 MPa lower, no alarm
    burst = [(3600.0 + s, {"pressure_mpa": 0.22}) for s in range(0, 60, 5)]
    assert _reported(reporter, burst) == [3600.0 + s for s in range(0, 60, 5)]
    recovered = [(3660.0 + s, {"pressure_mpa": 0.264}) for s in range(0, 60, 5)]
    assert _reported(reporter, recovered) == [3660.0]


def test_low_network_end_pressure_alarms() -> None:
    policy = default_policy(SensorKind.PRESSURE, powered=False)
    assert policy.abnormal({"pressure_mpa": 0.13})
    assert not policy.abnormal({"pressure_mpa": 0.15})


def test_the_daily_demand_cycle_raises_no_pressure_alarm() -> None:
    model = PressureModel(7, "st-410105-001.pressure-01")
    reporter = Reporter(default_policy(SensorKind.PRESSURE, powered=False))
    reports = 0
    for s in range(0, 86_400, 5):
        reports += reporter.offer(
            T0 + timedelta(seconds=s), model.sample(T0 + timedelta(seconds=s))
        )
        assert not reporter.abnormal
    assert reports == 96


def test_powered_devices_report_every_few_seconds() -> None:
    policy = default_policy(SensorKind.POLE, powered=True)
    samples = [(float(s), {"tilt_deg": 0.3, "vibration_g": 0.01}) for s in range(60)]
    assert _reported(Reporter(policy), samples) == list(range(0, 60, 5))
    assert policy.abnormal({"tilt_deg": 1.5})
    assert policy.abnormal({"tilt_deg": 0.3, "vibration_g": 2.0})


def test_policies_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReportPolicy(heartbeat=timedelta(0), alarm_interval=timedelta(seconds=1))
    assert not Threshold("x", above=1.0).abnormal({"y": 5.0})
