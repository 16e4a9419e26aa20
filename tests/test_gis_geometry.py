"""Pure GIS rules: polygon validation, metres, STRtree matching, coverage, ranking, masking."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from shapely.geometry import Point, Polygon, box

from gis import geometry, model, regional
from gis.geometry import GeometryError, LocalProjection, haversine_m
from gis.model import RegionalWarning

ZHEJIANG = (118.0, 27.0, 123.0, 31.5)


def square(lon: float, lat: float, d: float = 0.01, *, cw: bool = False) -> dict:
    ring = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring[::-1] if cw else ring]}


# --- validation -----------------------------------------------------------------------------

def test_bow_tie_is_rejected_with_the_self_intersection_point() -> None:
    bow = {"type": "Polygon", "coordinates": [[[120, 30], [120.01, 30.01], [120, 30.01],
                                               [120.01, 30], [120, 30]]]}
    with pytest.raises(GeometryError, match=r"Self-intersection\[120.005 30.005\]"):
        geometry.parse_area(bow)


def test_unclosed_ring_is_rejected_not_closed_silently() -> None:
    ring = [[120, 30], [120.01, 30], [120.01, 30.01], [120, 30.01]]
    with pytest.raises(GeometryError, match="ring 0 is not closed"):
        geometry.parse_area({"type": "Polygon", "coordinates": [ring]})


def test_swapped_coordinates_are_named_as_swapped() -> None:
    with pytest.raises(GeometryError, match="latitude 120.0 .*look swapped"):
        geometry.parse_area({"type": "Polygon", "coordinates": [
            [[30, 120], [30, 120.01], [30.01, 120.01], [30, 120]]]})
    # Both in range but swapped relative to the region: only the region check can tell.
    with pytest.raises(GeometryError, match="outside the region.*look swapped"):
        geometry.parse_point({"type": "Point", "coordinates": [45.0, 15.0]},
                             region=(10.0, 40.0, 20.0, 50.0))
    with pytest.raises(GeometryError, match=r"outside the region lon 118.0..123.0"):
        geometry.parse_point({"type": "Point", "coordinates": [116.4, 39.9]}, region=ZHEJIANG)
    with pytest.raises(GeometryError, match="longitude 200.0 is outside"):
        geometry.parse_point({"type": "Point", "coordinates": [200, 30]})


def test_clockwise_exterior_is_reoriented_with_a_warning() -> None:
    geom, warnings = geometry.parse_area(square(120, 30, cw=True))
    assert warnings and "re-oriented" in warnings[0]
    assert isinstance(geom, Polygon) and geom.exterior.is_ccw
    same, none = geometry.parse_area(square(120, 30))
    assert none == [] and same.equals(geom)


def test_hole_winding_is_fixed_and_reported() -> None:
    outer = [[120, 30], [120.1, 30], [120.1, 30.1], [120, 30.1], [120, 30]]
    hole_ccw = [[120.02, 30.02], [120.05, 30.02], [120.05, 30.05], [120.02, 30.05],
                [120.02, 30.02]]
    geom, warnings = geometry.parse_area({"type": "Polygon", "coordinates": [outer, hole_ccw]})
    assert any("hole 0" in w for w in warnings)
    assert isinstance(geom, Polygon) and not geom.interiors[0].is_ccw


@pytest.mark.parametrize("geom, message", [
    (None, "geometry is missing"),
    ({"type": "Point", "coordinates": [120, 30]}, "not Polygon or MultiPolygon"),
    ({"type": "Polygon", "coordinates": [[[120, 30], [120.1, 30], [120, 30]]]}, "needs >= 4"),
    ({"type": "Polygon", "coordinates": [[[120, "30"], [120.1, 30], [120.1, 30.1],
                                          [120, "30"]]]}, "must be numbers"),
    ({"type": "Polygon", "coordinates": [[[120, 30], [120.1, 30], [120.2, 30],
                                          [120, 30]]]}, "invalid polygon|zero area"),
])
def test_bad_geometries_say_why(geom: object, message: str) -> None:
    with pytest.raises(GeometryError, match=message):
        geometry.parse_area(geom)


def test_wkt_gets_the_same_checks() -> None:
    geom, warnings = geometry.area_from_wkt(
        "POLYGON ((120 30, 120 30.01, 120.01 30.01, 120.01 30, 120 30))")
    assert warnings and geom.exterior.is_ccw
    with pytest.raises(GeometryError, match="Self-intersection"):
        geometry.area_from_wkt("POLYGON ((120 30, 120.01 30.01, 120 30.01, 120.01 30, 120 30))")
    with pytest.raises(GeometryError, match="unreadable WKT"):
        geometry.area_from_wkt("POLYGON ((120 30, 120.01 30.01")


# --- metres ---------------------------------------------------------------------------------

def test_distances_agree_with_haversine_within_half_a_percent() -> None:
    rng = random.Random(7)
    for _ in range(300):
        lon, lat = rng.uniform(118, 123), rng.uniform(27, 31.5)
        lon2, lat2 = lon + rng.uniform(-0.5, 0.5), lat + rng.uniform(-0.5, 0.5)
        expected = haversine_m(lon, lat, lon2, lat2)
        got = geometry.distance_m(lon, lat, Point(lon2, lat2))
        assert got == pytest.approx(expected, rel=0.005)


def test_projection_off_centre_pairs_stay_within_half_a_percent() -> None:
    # Two points both ~100 km from the projection centre, in different directions.
    proj = LocalProjection.at(120.0, 29.0)
    xy = proj.forward(np.array([[120.9, 29.3], [119.4, 28.2]]))
    got = float(np.hypot(*(xy[0] - xy[1])))
    assert got == pytest.approx(haversine_m(120.9, 29.3, 119.4, 28.2), rel=0.005)


def test_distance_to_a_polygon_corner_and_inside() -> None:
    poly = Polygon([(120, 30), (120.01, 30), (120.01, 30.01), (120, 30.01)])
    # South-west of the corner (120, 30): the nearest point is the corner itself.
    d = geometry.distance_m(119.995, 29.996, poly)
    assert d == pytest.approx(haversine_m(119.995, 29.996, 120, 30), rel=0.005)
    assert geometry.distance_m(120.005, 30.005, poly) == 0.0


# --- matching -------------------------------------------------------------------------------

def _random_areas(rng: random.Random, n: int) -> list[tuple[str, Polygon]]:
    areas = []
    for i in range(n):
        lon, lat = rng.uniform(119.5, 120.5), rng.uniform(28.5, 29.5)
        w, h = rng.uniform(0.001, 0.01), rng.uniform(0.001, 0.01)
        areas.append((f"H{i:03d}", box(lon, lat, lon + w, lat + h)))
    return areas


def test_strtree_matching_equals_brute_force() -> None:
    rng = random.Random(42)
    areas = _random_areas(rng, 150)
    points = [(f"D{i:03d}", rng.uniform(119.5, 120.5), rng.uniform(28.5, 29.5))
              for i in range(300)]
    # Put some points inside areas so both branches are exercised.
    points += [(f"IN{i}", *areas[i][1].centroid.coords[0]) for i in range(0, 150, 5)]
    within = 1500.0
    matched = geometry.match_points_to_areas(points, areas, within)
    for pid, lon, lat in points:
        assert matched[pid] == geometry.nearest_area_brute_force(lon, lat, areas, within), pid
    found = [m for m in matched.values() if m is not None]
    assert any(m.distance_m == 0 for m in found)
    assert any(0 < m.distance_m <= within for m in found)
    assert any(m is None for m in matched.values())


def test_inside_overlapping_areas_goes_to_the_smaller_one() -> None:
    big = ("BIG", box(120, 30, 120.1, 30.1))
    small = ("SMALL", box(120.04, 30.04, 120.06, 30.06))
    for order in ([big, small], [small, big]):
        m = geometry.match_points_to_areas([("D", 120.05, 30.05)], order, 0)["D"]
        assert m == geometry.AreaMatch("SMALL", 0.0)


def test_code_covers_follows_the_administrative_hierarchy() -> None:
    assert geometry.code_covers("331122", "331122")
    assert not geometry.code_covers("331122", "331127")
    assert geometry.code_covers("331100", "331127")  # city covers its counties
    assert not geometry.code_covers("331100", "330185")
    assert geometry.code_covers("330000", "330185")  # province covers everything in it
    assert not geometry.code_covers("330000", "350102")


def test_shelter_ranking_skips_full_and_inside_shelters() -> None:
    hazard = box(120.0, 30.0, 120.01, 30.01)
    shelters = [
        ("FAR", 120.05, 30.005, 50),
        ("NEAR_FULL", 120.012, 30.005, 0),
        ("NEAR", 120.015, 30.005, 10),
        ("INSIDE", 120.005, 30.005, 100),  # in the threatened area itself: never a refuge
        ("TOO_FAR", 121.0, 30.005, 100),
        ("FEW", 120.02, 30.005, 2),
    ]
    ranked = geometry.rank_shelters(hazard, shelters, max_distance_m=10_000, min_free=3)
    assert [r.shelter_id for r in ranked] == ["NEAR", "FAR"]
    assert ranked[0].distance_m == pytest.approx(haversine_m(120.01, 30.005, 120.015, 30.005),
                                                 rel=0.005)


# --- regional floor (pure) ------------------------------------------------------------------

def test_floor_levels_take_the_highest_active_warning() -> None:
    t0 = datetime(2026, 6, 20, 12, tzinfo=UTC)
    hazards = [("A", "331122", box(120, 28.6, 120.01, 28.61)),
               ("B", "331127", box(119.5, 28.0, 119.51, 28.01)),
               ("C", "330185", box(119.7, 30.2, 119.71, 30.21))]
    warnings = [
        RegionalWarning("W1", "x", 2, t0, t0 + timedelta(hours=24), county_codes=("331100",)),
        RegionalWarning("W2", "x", 4, t0, t0 + timedelta(hours=6),
                        geometry=box(119.49, 27.99, 119.505, 28.005)),
        RegionalWarning("W3", "x", 3, t0, t0 + timedelta(hours=24), county_codes=("331122",),
                        cancelled_at=t0 + timedelta(hours=1)),
    ]
    assert regional.floor_levels(hazards, warnings, t0) == {"A": 3, "B": 4, "C": 0}
    later = t0 + timedelta(hours=6)  # W2 ended (valid_to is exclusive), W3 cancelled
    assert regional.floor_levels(hazards, warnings, later) == {"A": 2, "B": 2, "C": 0}
    assert regional.floor_levels(hazards, warnings, t0 - timedelta(seconds=1)) == {
        "A": 0, "B": 0, "C": 0}


# --- rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("people, level", [
    (0, "county"), (29, "county"), (30, "city"), (99, "city"), (100, "province"),
    (5000, "province")])
def test_cancellation_level_thresholds(people: int, level: str) -> None:
    assert model.cancellation_level(people) == level


@pytest.mark.parametrize("phone, masked", [
    ("13812341234", "138****1234"),
    ("+8613812341234", "+86138****1234"),
    ("0571-88001234", "057*-****1234"),
    ("12345", "***45"),
    (None, None),
])
def test_phone_masking(phone: str | None, masked: str | None) -> None:
    assert model.mask_phone(phone) == masked


def test_masking_never_shows_more_than_seven_digits() -> None:
    for n in range(5, 20):
        shown = sum(ch.isdigit() for ch in model.mask_phone("9" * n) or "")
        assert shown == (7 if n >= 9 else 2), n
