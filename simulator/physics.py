"""Sensor physics: what each kind of sensor reads when nothing is wrong.

A model is deterministic given ``(seed, sensor_id)`` and the sequence of sample times it is
asked for. Slow effects (daily cycles, wind, rain, battery drain) are functions of time;
measurement noise comes from the model's own ``random.Random``; and events that happen in
time (a vehicle rocking a cover, a knock on a pole, a shower) are scheduled on streams of
their own, hour by hour or day by day, so they do not depend on how often you sample.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from protocol import SensorInfo, SensorKind
from simulator.devices import (
    BEIJING,
    DAY_S,
    LOW_BATTERY_V,
    Battery,
    Rocking,
    SpikeSchedule,
    aware_utc,
    beijing_hour,
    daily,
    epoch_seconds,
    stream,
)
from simulator.traffic import (
    GUST_S,
    GUST_TILT_DEG,
    REAL_DAY,
    WIND_GUST_GAP_S,
    DayClock,
    VehicleStreams,
    gust_shape,
)
from simulator.weather import Weather

__all__ = [
    "BEIJING",
    "DAY_S",
    "GAS_ALARM_PPM",
    "GAS_COVER_CLASSES",
    "LOW_BATTERY_V",
    "RAIN_CEILING_M",
    "WATER_ALARM_M",
    "Battery",
    "CoverModel",
    "PoleModel",
    "PressureModel",
    "Rocking",
    "SensorModel",
    "Street",
    "aware_utc",
    "beijing_hour",
    "epoch_seconds",
    "model_for",
]

WATER_ALARM_M = 1.5
"""Water depth in a well at which a cover's level gauge alarms (estimate: half a metre below
the cover of a 2 m well). A flooded well reads more; ordinary rain never gets there."""
RAIN_CEILING_M = 1.3
"""Ordinary rain fills a well towards this depth at most."""
GAS_COVER_CLASSES = ("0102", "0111")
"""Sewer (污水) and gas (燃气) wells carry a CH4 sensor; other covers report no gas."""
GAS_ALARM_PPM = 2_500.0
"""CH4 alarm of a well's gas sensor: 5 % of the lower explosive limit (LEL = 5 % vol =
50,000 ppm). Estimate; combustible-gas detectors alarm at 1-25 % LEL."""
STORM_CLASSES = ("0103", "0104")
"""Storm-water wells and grates fill fastest when it rains."""


Interval = tuple[float, float]
"""[start, end) in epoch seconds."""
Wind = Literal["calm", "breezy", "gusty"]


class SensorModel(Protocol):
    def sample(self, ts: datetime) -> dict[str, float]:
        """The values the sensor reads at ``ts`` (timezone-aware); every value is finite."""
        ...

    def sample_at(self, t: float) -> dict[str, float]:
        """``sample`` at epoch seconds ``t``: the same physics without building a datetime."""
        ...

    def busy(self, start: float, end: float) -> list[Interval]:
        """The scheduled events overlapping [start, end) during which a value may cross one of
        the device's alarm thresholds (vehicles, gusts). Outside them, and outside incidents,
        every value stays well inside its normal range, so a device may sleep."""
        ...


@dataclass(frozen=True, slots=True)
class Street:
    """How hard the street is on the sensors. The defaults are an ordinary city street: 15 % of
    covers seated loosely (rocked by streams of vehicles), breezy wind (a gust past a pole's warn
    angle now and then), a real-time day. ``Street(loose_covers=0, wind="calm")`` is gentle."""

    loose_covers: float = 0.15
    """Share of covers seated loosely (picked per sensor from the seed); streams of vehicles
    rock a loose cover past any tilt threshold."""
    wind: Wind = "breezy"
    clock: DayClock = REAL_DAY

    def __post_init__(self) -> None:
        if not 0.0 <= self.loose_covers <= 1.0:
            raise ValueError(f"loose_covers is a share in [0, 1], not {self.loose_covers}")

    def loose(self, seed: int, sensor_id: str) -> bool:
        """Whether this cover sits loosely in its frame (a draw of its own per sensor)."""
        return stream(seed, sensor_id, "seating").random() < self.loose_covers


def model_for(
    sensor: SensorInfo,
    seed: int,
    *,
    weather: Weather | None = None,
    low_battery: bool = False,
    street: Street | None = None,
) -> SensorModel:
    """The physics model for one installed sensor.

    ``weather`` lets the covers of a fleet share one rain schedule (built from ``seed`` when
    omitted); ``low_battery`` starts a battery-powered sensor with a nearly flat battery;
    ``street`` sets loose covers, wind and the day's length (default ``Street()``: an ordinary
    street).
    """
    street = street or Street()
    if sensor.kind is SensorKind.COVER:
        return CoverModel(
            seed,
            sensor.sensor_id,
            class_code=sensor.class_code,
            district=sensor.component_id[:6],
            weather=weather,
            low_battery=low_battery,
            loose=street.loose(seed, sensor.sensor_id),
            clock=street.clock,
        )
    if sensor.kind is SensorKind.PRESSURE:
        return PressureModel(seed, sensor.sensor_id, low_battery=low_battery, clock=street.clock)
    return PoleModel(seed, sensor.sensor_id, gust_gap_s=WIND_GUST_GAP_S[street.wind])


class CoverModel:
    """A smart manhole cover: tilt, water level in the well, battery, and CH4 in sewer and gas
    wells. Rain fills the well over tens of minutes; it drains after the shower.

    Every cover is rocked briefly by a passing vehicle now and then. A ``loose`` cover is also
    rocked by streams of back-to-back vehicles (most at rush hour, on ``clock``): each vehicle
    kicks it to 8-40° for 0.3-1.5 s and it re-seats at 0.3-3° between them.
    """

    TILT_NOISE_DEG = 0.3
    ROCKING_MAX_S = 1.5
    """Longest rocking spike. Vendors debounce > 15° held for 2 s, so a spike stays shorter."""
    ROCKING_MIN_GAP_S = 2.0
    """Quiet time between two rocking spikes, so two spikes never merge into one long one."""
    RUSH_STREAM_GAP_S = (180.0, 420.0)
    """Mean time between streams of vehicles over a loose cover at rush hour."""

    def __init__(
        self,
        seed: int,
        sensor_id: str,
        *,
        class_code: str | None = None,
        district: str | None = None,
        weather: Weather | None = None,
        low_battery: bool = False,
        loose: bool = False,
        clock: DayClock = REAL_DAY,
    ) -> None:
        setup = stream(seed, sensor_id, "setup")
        self.loose = loose
        self.mean_rocking_gap_s = setup.uniform(120.0, 900.0)
        self.water_level_m = setup.uniform(0.3, 1.0)
        self._phase = setup.uniform(0.0, 2 * math.pi)
        gain, tau = _drain(setup, class_code)
        self.rain_gain_m_per_mm_h, self.drain_tau_s = gain, tau
        self.gas_ppm = setup.uniform(2.0, 15.0) if class_code in GAS_COVER_CLASSES else None
        self.district = district
        self.weather = weather if weather is not None else Weather(seed)
        self.battery = Battery(seed, sensor_id, low=low_battery)
        self._noise = stream(seed, sensor_id, "noise")
        self._slow_span: int | None = None
        self._slow_values: tuple[float, float | None] = (0.0, None)
        self._traffic = SpikeSchedule(
            f"{seed}/{sensor_id}/traffic",
            mean_gap_s=self.mean_rocking_gap_s,
            min_gap_s=self.ROCKING_MIN_GAP_S,
            duration_s=(0.3, self.ROCKING_MAX_S),
            peak=(10.0, 30.0),
        )
        self.streams: VehicleStreams | None = None
        if loose:
            self.streams = VehicleStreams(
                f"{seed}/{sensor_id}/streams",
                rush_gap_s=setup.uniform(*self.RUSH_STREAM_GAP_S),
                clock=clock,
            )

    def sample(self, ts: datetime) -> dict[str, float]:
        return self.sample_at(epoch_seconds(ts))

    def busy(self, start: float, end: float) -> list[Interval]:
        spikes = self._traffic.spikes(start - self.ROCKING_MAX_S, end)
        found = [(s.start, s.end) for s in spikes if s.end > start]
        if self.streams is not None:
            found += [(s.start, s.end) for s in self.streams.streams(start, end)]
        return found

    def sample_at(self, t: float) -> dict[str, float]:
        noise = self._noise
        tilt = abs(noise.gauss(0.0, self.TILT_NOISE_DEG))
        streamed = self.streams.tilt_at(t) if self.streams is not None else None
        if streamed is not None:
            tilt = streamed + noise.gauss(0.0, self.TILT_NOISE_DEG)
        else:
            rocking = self._traffic.at(t)
            if rocking is not None:
                tilt = rocking.peak + noise.gauss(0.0, 0.5)
        level, gas = self._slow(t)
        values = {
            "tilt_deg": abs(tilt),
            "water_level_m": max(0.0, level + noise.gauss(0, 0.005)),
            "battery_v": self.battery.volts(t, noise),
        }
        if gas is not None:
            values["gas_ppm"] = max(0.0, gas + noise.gauss(0.0, 0.5))
        return values

    SLOW_S = 30.0
    """Water level and gas change over minutes: worked out once per this span."""

    def _slow(self, t: float) -> tuple[float, float | None]:
        """Water level and gas (before noise) at the start of ``t``'s ``SLOW_S`` span."""
        span = math.floor(t / self.SLOW_S)
        if span != self._slow_span:
            at = span * self.SLOW_S
            gas = None
            if self.gas_ppm is not None:
                gas = self.gas_ppm * (1 + 0.2 * daily(at, self._phase))
            self._slow_span, self._slow_values = span, (self.water_level(at), gas)
        return self._slow_values

    def water_level(self, t: float) -> float:
        """Depth of water in the well at epoch ``t``, before measurement noise."""
        dry = self.water_level_m + 0.05 * daily(t, self._phase)
        raw = self.rain_gain_m_per_mm_h * self.weather.runoff(self.district, t, self.drain_tau_s)
        headroom = max(0.05, RAIN_CEILING_M - self.water_level_m)
        return dry + headroom * (1.0 - math.exp(-raw / headroom))


def _drain(setup: random.Random, class_code: str | None) -> tuple[float, float]:
    """How many metres a well rises per mm/h of rain, and how fast it fills and drains."""
    if class_code in STORM_CLASSES:
        return setup.uniform(0.04, 0.06), setup.uniform(15 * 60.0, 30 * 60.0)
    if class_code == "0102":  # combined sewers take rain too
        return setup.uniform(0.02, 0.035), setup.uniform(30 * 60.0, 45 * 60.0)
    return setup.uniform(0.003, 0.01), setup.uniform(30 * 60.0, 60 * 60.0)


class PressureModel:
    """Water-main pressure: a baseline (0.25-0.40 MPa) lowered by demand at the morning and
    evening peaks (by 0.03-0.06 MPa at their heart), on ``clock``'s possibly compressed day."""

    MORNING_PEAK_H = (8.0, 0.8)
    """Centre and width (hours, Beijing time) of the 07-09 demand peak."""
    EVENING_PEAK_H = (19.5, 1.1)
    """Centre and width of the 18-21 demand peak."""

    def __init__(
        self,
        seed: int,
        sensor_id: str,
        *,
        low_battery: bool = False,
        clock: DayClock = REAL_DAY,
    ) -> None:
        setup = stream(seed, sensor_id, "setup")
        self.clock = clock
        self.baseline_mpa = setup.uniform(0.25, 0.40)
        self.peak_drop_mpa = setup.uniform(0.03, 0.06)
        self.battery = Battery(seed, sensor_id, low=low_battery)
        self._noise = stream(seed, sensor_id, "noise")

    def demand(self, ts: datetime) -> float:
        """Relative demand in [0, 1]: 1 at the heart of a peak, near 0 at night."""
        return self.demand_at(epoch_seconds(ts))

    def demand_at(self, t: float) -> float:
        hour = self.clock.hour(t)
        return max(_bump(hour, *self.MORNING_PEAK_H), _bump(hour, *self.EVENING_PEAK_H))

    def sample(self, ts: datetime) -> dict[str, float]:
        return self.sample_at(epoch_seconds(ts))

    def sample_at(self, t: float) -> dict[str, float]:
        pressure = self.baseline_mpa - self.peak_drop_mpa * self.demand_at(t)
        return {
            "pressure_mpa": pressure + self._noise.gauss(0.0, 0.002),
            "battery_v": self.battery.volts(t, self._noise),
        }

    def busy(self, start: float, end: float) -> list[Interval]:
        return []


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)


class PoleModel:
    """A utility pole or street lamp on mains power: a small installed lean, sway in the wind,
    and vibration from gusts plus the odd knock of a passing truck.

    With ``gust_gap_s`` (mean time between gusts) a gust now and then pushes the pole over to
    1.2-2.2° for 2-8 s (past the warn angle, never near the 3° urgent limit)."""

    def __init__(self, seed: int, sensor_id: str, *, gust_gap_s: float | None = None) -> None:
        setup = stream(seed, sensor_id, "setup")
        self.lean_deg = setup.uniform(0.2, 0.5)
        self.sway_deg = setup.uniform(0.05, 0.15)
        self.natural_hz = setup.uniform(0.3, 1.2)
        self._gust_periods_s = (setup.uniform(1200, 3600), setup.uniform(300, 900))
        self._phases = tuple(setup.uniform(0.0, 2 * math.pi) for _ in range(3))
        self._noise = stream(seed, sensor_id, "noise")
        self._knocks = SpikeSchedule(
            f"{seed}/{sensor_id}/knocks",
            mean_gap_s=setup.uniform(600.0, 1800.0),
            min_gap_s=2.0,
            duration_s=(0.2, 1.0),
            peak=(0.05, 0.25),
        )
        self.gusts: SpikeSchedule | None = None
        if gust_gap_s is not None:
            self.gusts = SpikeSchedule(
                f"{seed}/{sensor_id}/gusts",
                mean_gap_s=gust_gap_s * setup.uniform(0.7, 1.3),
                min_gap_s=5.0,
                duration_s=GUST_S,
                peak=GUST_TILT_DEG,
            )

    def wind(self, t: float) -> float:
        """Wind strength in [0, 1], varying over minutes to an hour."""
        slow, fast = self._gust_periods_s
        return (
            0.5
            + 0.25 * math.sin(2 * math.pi * t / slow + self._phases[0])
            + 0.25 * math.sin(2 * math.pi * t / fast + self._phases[1])
        )

    def sample(self, ts: datetime) -> dict[str, float]:
        return self.sample_at(epoch_seconds(ts))

    def sample_at(self, t: float) -> dict[str, float]:
        wind = self.wind(t)
        sway = self.sway_deg * wind * math.sin(2 * math.pi * self.natural_hz * t + self._phases[2])
        tilt = self.lean_deg + sway + self._noise.gauss(0.0, 0.02)
        vibration = abs(self._noise.gauss(0.0, 0.005 + 0.02 * wind))
        gust = self.gusts.at(t) if self.gusts is not None else None
        if gust is not None:
            push = gust_shape(gust, t)
            tilt += (gust.peak - self.lean_deg) * push
            vibration += 0.08 * push
        knock = self._knocks.at(t)
        if knock is not None:
            vibration += knock.peak
        return {"tilt_deg": abs(tilt), "vibration_g": vibration}

    def busy(self, start: float, end: float) -> list[Interval]:
        if self.gusts is None:
            return []
        spikes = self.gusts.spikes(start - GUST_S[1], end)
        return [(s.start, s.end) for s in spikes if s.end > start]
