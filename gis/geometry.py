"""Pure geometry: GeoJSON validation, metre distances, and STRtree matching.

Coordinates are lon/lat degrees (WGS84 and CGCS2000 differ by centimetres, which nothing here
can see). Distances are metres on a sphere of the local Gaussian radius (the geometric mean of
the meridian and prime-vertical radii at the place), which is within ~0.3% of the ellipsoid in
any direction; pyproj is not needed for that.

Why no global projection: the data may span a province or the country, and one projection
distorts far from its centre. Instead the candidates are found with an STRtree in lon/lat
using a conservatively widened box, and each exact distance is measured in an azimuthal
equidistant projection centred on the point being measured from, where distances from the
centre are exact geodesic (spherical) distances.

Polygon orientation: RFC 7946 §3.1.6 wants exterior rings counter-clockwise but also says
parsers SHOULD NOT reject polygons that do not follow it, so wrongly wound rings are re-oriented
and reported as a warning, never rejected. Unclosed rings are rejected: GeoJSON requires the
first and last position to be equal, and a missing closing position usually means a truncated
file, which silently closing would hide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.validation import explain_validity

# IUGG mean Earth radius: what haversine conventionally uses.
MEAN_EARTH_RADIUS_M = 6_371_008.8
_WGS84_A = 6_378_137.0
_WGS84_E2 = 0.006_694_379_990_14

Bbox = tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat


class GeometryError(ValueError):
    """A geometry is unusable; the message says where and why."""


# --- validation -----------------------------------------------------------------------------

def _position(pos: Any, where: str, region: Bbox | None) -> tuple[float, float]:
    if not isinstance(pos, list | tuple) or len(pos) not in (2, 3):
        raise GeometryError(f"{where}: a position must be [lon, lat] or [lon, lat, height], "
                            f"got {pos!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos):
        raise GeometryError(f"{where}: coordinates must be numbers, got {pos!r}")
    lon, lat = float(pos[0]), float(pos[1])
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise GeometryError(f"{where}: coordinates must be finite, got {pos!r}")
    if not -90 <= lat <= 90:
        hint = (" (lat/lon look swapped: GeoJSON order is [lon, lat])"
                if -90 <= lon <= 90 and -180 <= lat <= 180 else "")
        raise GeometryError(f"{where}: latitude {lat} is outside [-90, 90]{hint}")
    if not -180 <= lon <= 180:
        raise GeometryError(f"{where}: longitude {lon} is outside [-180, 180]")
    if region is not None and not _in_box(lon, lat, region):
        hint = (" (lat/lon look swapped: GeoJSON order is [lon, lat])"
                if _in_box(lat, lon, region) else "")
        raise GeometryError(f"{where}: ({lon}, {lat}) is outside the region "
                            f"lon {region[0]}..{region[2]}, lat {region[1]}..{region[3]}{hint}")
    return lon, lat


def _in_box(lon: float, lat: float, b: Bbox) -> bool:
    return b[0] <= lon <= b[2] and b[1] <= lat <= b[3]


def _ring(coords: Any, where: str, region: Bbox | None) -> list[tuple[float, float]]:
    if not isinstance(coords, list) or not coords:
        raise GeometryError(f"{where}: a ring must be a non-empty list of positions")
    ring = [_position(p, f"{where} position {i}", region) for i, p in enumerate(coords)]
    if ring[0] != ring[-1]:
        raise GeometryError(f"{where} is not closed: first position {list(ring[0])} differs "
                            f"from last {list(ring[-1])}")
    if len(ring) < 4:
        raise GeometryError(f"{where} has {len(ring)} positions; a closed ring needs >= 4")
    return ring


def _polygon(coords: Any, where: str, region: Bbox | None) -> Polygon:
    if not isinstance(coords, list) or not coords:
        raise GeometryError(f"{where}: polygon coordinates must be a non-empty list of rings")
    rings = [_ring(r, f"{where} ring {i}", region) for i, r in enumerate(coords)]
    return Polygon(rings[0], rings[1:])


def parse_area(geom: Any, *, region: Bbox | None = None) -> tuple[BaseGeometry, list[str]]:
    """A GeoJSON Polygon/MultiPolygon as a valid, RFC 7946-oriented shapely geometry.

    Returns the geometry and warnings (re-oriented rings); raises GeometryError.
    """
    if not isinstance(geom, Mapping):
        raise GeometryError("geometry is missing (a Polygon or MultiPolygon is required)")
    kind = geom.get("type")
    coords = geom.get("coordinates")
    if kind == "Polygon":
        result: BaseGeometry = _polygon(coords, "polygon", region)
    elif kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise GeometryError("MultiPolygon coordinates must be a non-empty list of polygons")
        result = MultiPolygon([_polygon(p, f"polygon {i}", region)
                               for i, p in enumerate(coords)])
    else:
        raise GeometryError(f"geometry type {kind!r} is not Polygon or MultiPolygon")
    return _valid_oriented(result)


def area_from_wkt(text: str, *, region: Bbox | None = None) -> tuple[BaseGeometry, list[str]]:
    """A WKT POLYGON/MULTIPOLYGON, validated exactly like GeoJSON."""
    try:
        geom = shapely.from_wkt(text)
    except shapely.errors.ShapelyError as exc:
        raise GeometryError(f"unreadable WKT: {exc}") from None
    if geom is None or geom.is_empty:
        raise GeometryError("WKT geometry is empty")
    # Round-trip through GeoJSON so that ranges, swaps and rings get the same checks.
    return parse_area(_lists(mapping(geom)), region=region)


def _valid_oriented(geom: BaseGeometry) -> tuple[BaseGeometry, list[str]]:
    if not geom.is_valid:
        raise GeometryError(f"invalid polygon: {explain_validity(geom)}")
    if geom.area == 0:
        raise GeometryError("polygon has zero area")
    warnings: list[str] = []
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    fixed = []
    for i, part in enumerate(parts):
        assert isinstance(part, Polygon)
        label = f"polygon {i} " if len(parts) > 1 else ""
        if not part.exterior.is_ccw:
            warnings.append(f"{label}exterior ring was clockwise; re-oriented "
                            "counter-clockwise (RFC 7946 §3.1.6)")
        for j, hole in enumerate(part.interiors):
            if hole.is_ccw:
                warnings.append(f"{label}hole {j} was counter-clockwise; re-oriented "
                                "clockwise (RFC 7946 §3.1.6)")
        fixed.append(orient(part, sign=1.0))
    result = MultiPolygon(fixed) if isinstance(geom, MultiPolygon) else fixed[0]
    return result, warnings


def parse_point(geom: Any, *, region: Bbox | None = None) -> tuple[float, float]:
    if not isinstance(geom, Mapping) or geom.get("type") != "Point":
        kind = geom.get("type") if isinstance(geom, Mapping) else None
        raise GeometryError(f"geometry must be a Point, got {kind!r}")
    return _position(geom.get("coordinates"), "point", region)


def check_lonlat(lon: float, lat: float, *, region: Bbox | None = None) -> tuple[float, float]:
    return _position([lon, lat], "point", region)


def to_geojson(geom: BaseGeometry) -> dict[str, Any]:
    """RFC 7946 geometry: CCW exteriors, plain lists (json.dumps-able)."""
    if isinstance(geom, Polygon):
        geom = orient(geom, sign=1.0)
    elif isinstance(geom, MultiPolygon):
        geom = MultiPolygon([orient(p, sign=1.0) for p in geom.geoms])
    return _lists(mapping(geom))


def _lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_lists(v) for v in obj]
    return obj


def from_geojson(obj: Mapping[str, Any]) -> BaseGeometry:
    """A geometry this package stored itself (already validated)."""
    return shape(obj)


# --- metres ---------------------------------------------------------------------------------

def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float,
                radius: float = MEAN_EARTH_RADIUS_M) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(min(1.0, math.sqrt(h)))


def gaussian_radius(lat: float) -> float:
    """sqrt(M·N) of the WGS84 ellipsoid at latitude `lat` (metres)."""
    s2 = math.sin(math.radians(lat)) ** 2
    w = 1 - _WGS84_E2 * s2
    meridian = _WGS84_A * (1 - _WGS84_E2) / w ** 1.5
    prime = _WGS84_A / math.sqrt(w)
    return math.sqrt(meridian * prime)


@dataclass(frozen=True)
class LocalProjection:
    """Spherical azimuthal equidistant projection centred on (lon0, lat0), in metres."""

    lon0: float
    lat0: float
    radius: float

    @classmethod
    def at(cls, lon0: float, lat0: float) -> LocalProjection:
        return cls(lon0, lat0, gaussian_radius(lat0))

    def forward(self, lonlat: np.ndarray) -> np.ndarray:
        lam = np.radians(lonlat[:, 0] - self.lon0)
        phi = np.radians(lonlat[:, 1])
        phi0 = math.radians(self.lat0)
        cos_c = np.clip(math.sin(phi0) * np.sin(phi)
                        + math.cos(phi0) * np.cos(phi) * np.cos(lam), -1.0, 1.0)
        c = np.arccos(cos_c)
        sin_c = np.sin(c)
        with np.errstate(invalid="ignore", divide="ignore"):
            k = np.where(c < 1e-12, 1.0, c / np.where(sin_c == 0, 1.0, sin_c))
        x = self.radius * k * np.cos(phi) * np.sin(lam)
        y = self.radius * k * (math.cos(phi0) * np.sin(phi)
                               - math.sin(phi0) * np.cos(phi) * np.cos(lam))
        return np.column_stack([x, y])

    def project(self, geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geom, self.forward)


def distance_m(lon: float, lat: float, geom: BaseGeometry) -> float:
    """Metres from the point (lon, lat) to `geom` (0 when inside it)."""
    if geom.covers(Point(lon, lat)):
        return 0.0
    projected = LocalProjection.at(lon, lat).project(geom)
    return float(Point(0.0, 0.0).distance(projected))


def widen(bounds: Bbox, metres: float) -> BaseGeometry:
    """A lon/lat box containing every point within `metres` of `bounds` (conservatively)."""
    # The smallest radius of curvature on WGS84 is ~6335 km (meridian at the equator).
    dlat = math.degrees(metres / 6_335_000.0) * 1.01
    min_lon, min_lat, max_lon, max_lat = bounds
    south, north = max(-90.0, min_lat - dlat), min(90.0, max_lat + dlat)
    widest = max(abs(south), abs(north))
    if widest >= 89.0:
        return box(-180.0, south, 180.0, north)
    dlon = dlat / math.cos(math.radians(widest))
    return box(max(-180.0, min_lon - dlon), south, min(180.0, max_lon + dlon), north)


# --- matching -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AreaMatch:
    area_id: str
    distance_m: float  # 0 when the point is inside


def match_points_to_areas(points: Sequence[tuple[str, float, float]],
                          areas: Sequence[tuple[str, BaseGeometry]],
                          within_m: float) -> dict[str, AreaMatch | None]:
    """For each (id, lon, lat), the area it lies in or the nearest within `within_m` metres.

    Ties (a point inside overlapping areas) go to the smaller area, then the smaller id, so
    the answer does not depend on input order.
    """
    if within_m < 0:
        raise ValueError(f"within_m must be >= 0, got {within_m}")
    result: dict[str, AreaMatch | None] = {}
    if not areas:
        return {pid: None for pid, _, _ in points}
    geoms = [g for _, g in areas]
    tree = shapely.STRtree(geoms)
    for pid, lon, lat in points:
        candidates = tree.query(widen((lon, lat, lon, lat), within_m))
        result[pid] = _best(lon, lat, [areas[int(i)] for i in candidates], within_m)
    return result


def nearest_area_brute_force(lon: float, lat: float,
                             areas: Sequence[tuple[str, BaseGeometry]],
                             within_m: float) -> AreaMatch | None:
    """The same answer as match_points_to_areas without the index (for checking it)."""
    return _best(lon, lat, areas, within_m)


def _best(lon: float, lat: float, candidates: Sequence[tuple[str, BaseGeometry]],
          within_m: float) -> AreaMatch | None:
    scored = []
    for area_id, geom in candidates:
        d = distance_m(lon, lat, geom)
        if d <= within_m:
            scored.append((d, geom.area, area_id))
    if not scored:
        return None
    d, _, area_id = min(scored)
    return AreaMatch(area_id, d)


def areas_intersecting(areas: Sequence[tuple[str, BaseGeometry]],
                       region: BaseGeometry) -> list[str]:
    """Ids of the areas that touch or overlap `region` (a warning polygon), sorted."""
    if not areas:
        return []
    tree = shapely.STRtree([g for _, g in areas])
    hits = tree.query(region, predicate="intersects")
    return sorted(areas[int(i)][0] for i in hits)


def code_covers(warning_code: str, county_code: str) -> bool:
    """Whether an administrative code covers a county: 330000 covers all of Zhejiang,
    331100 all of Lishui city, 331102 only that county (GB/T 2260 hierarchy)."""
    if warning_code == county_code:
        return True
    if warning_code.endswith("0000"):
        return county_code[:2] == warning_code[:2]
    if warning_code.endswith("00"):
        return county_code[:4] == warning_code[:4]
    return False


@dataclass(frozen=True)
class RankedShelter:
    shelter_id: str
    distance_m: float
    free: int


def rank_shelters(hazard: BaseGeometry,
                  shelters: Sequence[tuple[str, float, float, int]],
                  *, max_distance_m: float, min_free: int = 1) -> list[RankedShelter]:
    """Shelters (id, lon, lat, free places) near a hazard polygon, nearest first.

    Distance is from the polygon's edge: the way out of the threatened area. A shelter with
    fewer than `min_free` free places, or lying inside the hazard polygon itself, is skipped.
    """
    if not shelters:
        return []
    tree = shapely.STRtree([Point(lon, lat) for _, lon, lat, _ in shelters])
    candidates = tree.query(widen(hazard.bounds, max_distance_m))
    ranked = []
    for i in candidates:
        sid, lon, lat, free = shelters[int(i)]
        if free < min_free:
            continue
        d = distance_m(lon, lat, hazard)
        if 0 < d <= max_distance_m:
            ranked.append(RankedShelter(sid, d, free))
    ranked.sort(key=lambda r: (r.distance_m, r.shelter_id))
    return ranked

