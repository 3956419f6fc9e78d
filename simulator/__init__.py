"""The simulated city: fleet model, sensor physics and injected incidents with ground truth."""

from simulator.city import (
    DEFAULT_DISTRICTS,
    ZHENGZHOU_DISTRICTS,
    City,
    District,
    Station,
    build_city,
)
from simulator.fleet import SimulatedFleet, SimulatedStation, schedule_cover_incidents
from simulator.incidents import CoverOpen, Incident
from simulator.physics import (
    CoverModel,
    PoleModel,
    PressureModel,
    SensorModel,
    Street,
    model_for,
)

__all__ = [
    "DEFAULT_DISTRICTS",
    "ZHENGZHOU_DISTRICTS",
    "City",
    "CoverModel",
    "CoverOpen",
    "District",
    "Incident",
    "PoleModel",
    "PressureModel",
    "SensorModel",
    "SimulatedFleet",
    "SimulatedStation",
    "Station",
    "Street",
    "build_city",
    "model_for",
    "schedule_cover_incidents",
]
