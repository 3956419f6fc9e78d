"""District outlines on the map: the convex hull of a district's sensors grown by about 250 m
(``center.city_map``), pure."""

from __future__ import annotations

import math
import random

import pytest

from center.city_map import OUTLINE_PAD_M, Point, _outermost, convex_hull, outline

METRES_PER_DEGREE = 111_320.0


def _metres(a: Point, b: Point) -> float:
    k = math.cos(math.radians((a[1] + b[1]) / 2))
    return math.hypot((a[0] - b[0]) * k, a[1] - b[1]) * METRES_PER_DEGREE


def _distance_inside(point: Point, polygon: list[Point]) -> float:
    """Metres from ``point`` to the nearest edge of the counter-clockwise ``polygon``; negative
    when the point is outside it."""
    k = math.cos(math.radians(point[1]))
    nearest = math.inf
    for a, b in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        ax, ay, bx, by = a[0] * k, a[1], b[0] * k, b[1]
        px, py = point[0] * k, point[1]
        cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
        nearest = min(nearest, cross / math.hypot(bx - ax, by - ay) * METRES_PER_DEGREE)
    return nearest


def test_the_hull_is_the_corners_counter_clockwise_without_inner_or_collinear_points() -> None:
    square = [(0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0)]
    inner = [(1.0, 1.0), (0.5, 1.5), (1.0, 0.0), (2.0, 1.0)]  # two of them on an edge
    assert convex_hull(inner + square + square) == square
    assert convex_hull([(1.0, 1.0), (0.0, 0.0), (2.0, 2.0)]) == [(0.0, 0.0), (2.0, 2.0)]
    assert convex_hull([(3.0, 4.0)]) == [(3.0, 4.0)]


def test_a_lone_sensor_is_outlined_by_an_octagon_about_250_m_around_it() -> None:
    sensor = (113.68, 34.78)
    octagon = outline([sensor])
    assert len(octagon) == 8
    for corner in octagon:
        assert _metres(sensor, corner) == pytest.approx(OUTLINE_PAD_M, rel=0.01)
    assert _distance_inside(sensor, octagon) == pytest.approx(
        OUTLINE_PAD_M * math.cos(math.pi / 8), rel=0.01
    )


def test_every_sensor_of_a_district_is_well_inside_its_outline() -> None:
    rng = random.Random(7)
    sensors = [(113.6 + rng.random() * 0.08, 34.72 + rng.gauss(0, 0.02)) for _ in range(3000)]
    shape = outline(sensors)
    margin = min(_distance_inside(s, shape) for s in sensors)
    assert OUTLINE_PAD_M * 0.9 < margin < OUTLINE_PAD_M * 1.01  # the outermost sit at the pad
    assert len(shape) < 200  # a polygon for a browser, not a point per sensor


def test_the_points_left_out_before_the_hull_are_never_on_it() -> None:
    rng = random.Random(11)
    for spread in (rng.random, lambda: rng.gauss(0, 1), lambda: rng.choice((0.0, 1.0))):
        points = [(rng.random(), spread()) for _ in range(5000)]
        kept = _outermost(points)
        assert convex_hull(kept) == convex_hull(points)
        # only points on the boundary are all kept: two streets, every sensor on an edge
        assert len(kept) < len(points) / 4 or {p[1] for p in points} == {0.0, 1.0}
