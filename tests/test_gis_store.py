"""GIS import/export and spatial queries over the real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from geowarn import cli
from geowarn.errors import InvalidInput, NotFound
from gis import csv_io, geojson_io, store
from gis.geometry import haversine_m

EXAMPLES = Path(__file__).resolve().parent.parent / "gis" / "examples"


def hazard_feature(hid: str, lon: float = 120.0, lat: float = 30.0, **props: Any) -> dict:
    ring = [[lon, lat], [lon + 0.01, lat], [lon + 0.01, lat + 0.01], [lon, lat + 0.01],
            [lon, lat]]
    base = {"id": hid, "name": f"Synthetic {hid}", "type": "landslide", "scale": "small",
            "county_code": "331122", "people": 10, "households": 3,
            "responsible": {"name": "Example Person", "phone": "13800001111"},
            "monitors": [{"name": "Example Monitor", "phone": "13900002222"}]}
    base.update(props)
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": base}


def collection(*features: Any) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def import_geojson(conn: psycopg.Connection, text: str, kind: str = "hazards"
                   ) -> store.ImportReport:
    return store.import_records(conn, kind, geojson_io.read(text, kind))


def test_import_reports_each_bad_feature_and_keeps_the_good(conn: psycopg.Connection) -> None:
    bow = hazard_feature("BOW")
    bow["geometry"]["coordinates"] = [[[120, 30], [120.01, 30.01], [120, 30.01], [120.01, 30],
                                       [120, 30]]]
    unclosed = hazard_feature("OPEN")
    unclosed["geometry"]["coordinates"][0].pop()
    swapped = hazard_feature("SWAP")
    swapped["geometry"]["coordinates"] = [[[lat, lon] for lon, lat in
                                           swapped["geometry"]["coordinates"][0]]]
    no_name = hazard_feature("NONAME")
    del no_name["properties"]["name"]
    bad_type = hazard_feature("BADTYPE", type="earthquake")
    clockwise = hazard_feature("CW", lon=120.2)
    clockwise["geometry"]["coordinates"][0].reverse()
    text = collection(hazard_feature("GOOD"), bow, unclosed, swapped, no_name, bad_type,
                      clockwise, hazard_feature("GOOD", lon=120.5), "not a feature")
    report = import_geojson(conn, text)
    errors = {p.where: p.reason for p in report.errors}
    assert set(errors) == {f"feature {i}" for i in (1, 2, 3, 4, 5, 7, 8)}
    assert "Self-intersection" in errors["feature 1"]
    assert "not closed" in errors["feature 2"]
    assert "swapped" in errors["feature 3"]
    assert "missing required field 'name'" in errors["feature 4"]
    assert "'earthquake' is not one of landslide" in errors["feature 5"]
    assert "duplicate id 'GOOD' (first at feature 0)" in errors["feature 7"]
    assert "not a GeoJSON Feature" in errors["feature 8"]
    assert [(w.where, "re-oriented" in w.reason) for w in report.warnings] == [
        ("feature 6", True)]
    assert (report.inserted, report.updated, report.unchanged) == (2, 0, 0)
    ids = [r[0] for r in conn.execute("SELECT hazard_id FROM hazard_points ORDER BY 1")]
    assert ids == ["CW", "GOOD"]
    stored = conn.execute("SELECT geometry FROM hazard_points WHERE hazard_id = 'CW'")
    ring = stored.fetchone()[0]["coordinates"][0]  # type: ignore[index]
    assert _signed_area(ring) > 0  # stored counter-clockwise


def test_reimport_is_idempotent_and_updates_changes(conn: psycopg.Connection) -> None:
    text = collection(hazard_feature("A"), hazard_feature("B", lon=120.1))
    assert import_geojson(conn, text).inserted == 2
    stamp = conn.execute("SELECT updated_at FROM hazard_points WHERE hazard_id = 'A'")
    before = stamp.fetchone()
    again = import_geojson(conn, text)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    assert conn.execute("SELECT updated_at FROM hazard_points WHERE hazard_id = 'A'"
                        ).fetchone() == before
    changed = import_geojson(conn, collection(hazard_feature("A", people=45),
                                              hazard_feature("B", lon=120.1)))
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 1)
    assert conn.execute("SELECT people FROM hazard_points WHERE hazard_id = 'A'"
                        ).fetchone() == (45,)
    assert conn.execute("SELECT count(*) FROM hazard_points").fetchone() == (2,)


def _signed_area(ring: list[list[float]]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False)) / 2


def _assert_rfc7946(doc: dict) -> None:
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    for feature in doc["features"]:
        assert feature["type"] == "Feature"
        assert set(feature) >= {"geometry", "properties"}
        geom = feature["geometry"]
        if geom is None:
            continue
        polygons = {"Polygon": [geom["coordinates"]], "MultiPolygon": geom["coordinates"],
                    "Point": []}[geom["type"]]
        if geom["type"] == "Point":
            lon, lat = geom["coordinates"]
            assert -180 <= lon <= 180 and -90 <= lat <= 90
        for rings in polygons:
            for i, ring in enumerate(rings):
                assert len(ring) >= 4 and ring[0] == ring[-1]
                assert all(-180 <= x <= 180 and -90 <= y <= 90 for x, y in ring)
                # RFC 7946 §3.1.6: exteriors counter-clockwise, holes clockwise.
                assert (_signed_area(ring) > 0) == (i == 0)


def test_examples_import_and_export_round_trip_as_rfc7946(conn: psycopg.Connection) -> None:
    for name, kind in (("hazards.geojson", "hazards"), ("shelters.geojson", "shelters")):
        report = import_geojson(conn, (EXAMPLES / name).read_text(encoding="utf-8"), kind)
        assert report.errors == () and report.inserted > 0
    csv_report = store.import_records(conn, "hazards", csv_io.read(
        (EXAMPLES / "hazards.csv").read_text(encoding="utf-8"), "hazards"))
    assert csv_report.inserted == 1 and csv_report.errors == ()
    hh = store.import_records(conn, "households", csv_io.read(
        (EXAMPLES / "households.csv").read_text(encoding="utf-8"), "households"))
    assert hh.inserted == 4 and hh.errors == ()

    for kind, items in (("hazards", store.list_hazards(conn, reveal_phones=True)),
                        ("shelters", store.list_shelters(conn, reveal_phones=True)),
                        ("households", store.list_households(conn, reveal_phones=True))):
        text = geojson_io.dumps(items, reveal_phones=True)
        doc = json.loads(text)
        _assert_rfc7946(doc)
        back = import_geojson(conn, text, kind)
        assert back.errors == () and (back.inserted, back.updated) == (0, 0), kind
        assert back.unchanged == len(items)
    multi = store.get_hazard(conn, "SYN-DF-003")
    assert multi.geometry.geom_type == "MultiPolygon" and len(multi.monitors) == 1


def test_masked_export_cannot_overwrite_real_phones(conn: psycopg.Connection) -> None:
    import_geojson(conn, collection(hazard_feature("A")))
    masked = geojson_io.dumps(store.list_hazards(conn), reveal_phones=True)
    assert "138****1111" in masked and "13800001111" not in masked
    report = import_geojson(conn, masked)
    assert report.errors and "is masked" in report.errors[0].reason
    assert store.get_hazard(conn, "A").responsible.phone == "13800001111"  # type: ignore[union-attr]


def test_households_need_a_known_hazard_and_listing_masks_phones(
        conn: psycopg.Connection) -> None:
    import_geojson(conn, collection(hazard_feature("H1")))
    text = ("id,hazard_id,head,members,phone\n"
            "HH1,H1,Example Head,4,13812341234\n"
            "HH2,NOPE,Example Head,2,\n"
            "HH3,H1,Example Head,zero,\n"
            "HH4,H1,,2,\n"
            "HH5,H1,Example Head,2,12-ab\n")
    report = store.import_records(conn, "households", csv_io.read(text, "households"))
    errors = {p.where: p.reason for p in report.errors}
    assert "hazard point 'NOPE' does not exist" in errors["line 3"]
    assert "members must be a whole number" in errors["line 4"]
    assert "missing required field 'head'" in errors["line 5"]
    assert "not a phone number" in errors["line 6"]
    assert report.inserted == 1
    assert [h.phone for h in store.list_households(conn)] == ["138****1234"]
    assert [h.phone for h in store.list_households(conn, reveal_phones=True)] == [
        "13812341234"]
    hazards = store.list_hazards(conn)
    assert hazards[0].responsible.phone == "138****1111"  # type: ignore[union-attr]
    assert hazards[0].monitors[0].phone == "139****2222"


def test_csv_errors_name_lines_and_columns(conn: psycopg.Connection) -> None:
    with pytest.raises(Exception, match="lacks column.*wkt"):
        csv_io.read("id,name\nA,b\n", "hazards")
    text = ("id,name,type,scale,county_code,wkt\n"
            'A,Slope,landslide,small,331122,"POLYGON ((120 30, 120.01 30, 120.01 30.01, '
            '120 30.01, 120 30))"\n'
            'B,Slope,landslide,small,33112,"POLYGON ((120 30, 120.01 30, 120.01 30.01, '
            '120 30.01, 120 30))"\n'
            "C,Slope,landslide,small,331122,\n"
            'D,Slope,landslide,huge,331122,"POLYGON ((120 30, 120.01 30, 120.01 30.01, '
            '120 30.01, 120 30))"\n')
    parsed = csv_io.read(text, "hazards")
    errors = {p.where: p.reason for p in parsed.errors}
    assert "not a six-digit administrative code" in errors["line 3"]
    assert "missing wkt" in errors["line 4"]
    assert "scale 'huge' is not one of" in errors["line 5"]
    shelters = csv_io.read("id,name,capacity,lon,lat\nS1,Hall,50,120.1,30.1\n"
                           "S2,Hall,0,120.1,30.1\nS3,Hall,5,30.1,120.1\n", "shelters")
    assert [s.shelter_id for s in shelters.records] == ["S1"]  # type: ignore[union-attr]
    reasons = [p.reason for p in shelters.errors]
    assert "capacity must be >= 1" in reasons[0] and "swapped" in reasons[1]


def test_cancellation_in_the_database(conn: psycopg.Connection) -> None:
    import_geojson(conn, collection(hazard_feature("P29", people=29),
                                    hazard_feature("P30", people=30),
                                    hazard_feature("P99", people=99),
                                    hazard_feature("P100", people=100)))
    at = datetime(2026, 7, 1, 9, tzinfo=UTC)
    got = {hid: store.cancel_hazard(conn, hid, at=at, approved_by="Synthetic bureau")
           for hid in ("P29", "P30", "P99", "P100")}
    assert got == {"P29": "county", "P30": "city", "P99": "city", "P100": "province"}
    rows = conn.execute("SELECT hazard_id, status, cancel_level FROM hazard_points "
                        "ORDER BY people").fetchall()
    assert rows == [("P29", "cancelled", "county"), ("P30", "cancelled", "city"),
                    ("P99", "cancelled", "city"), ("P100", "cancelled", "province")]
    exported = json.loads(geojson_io.dumps(store.list_hazards(conn, reveal_phones=True),
                                           reveal_phones=True))
    p100 = next(f for f in exported["features"] if f["id"] == "P100")
    assert p100["properties"]["cancel_level"] == "province"
    back = import_geojson(conn, json.dumps(exported))
    assert (back.errors, back.unchanged) == ((), 4)
    # The level approved at the time is history: fewer people later do not rewrite it.
    p100["properties"]["people"] = 5
    import_geojson(conn, json.dumps(exported))
    assert conn.execute("SELECT people, cancel_level FROM hazard_points "
                        "WHERE hazard_id = 'P100'").fetchone() == (5, "province")
    with pytest.raises(InvalidInput, match="already cancelled"):
        store.cancel_hazard(conn, "P29", at=at, approved_by="x")
    import_geojson(conn, collection(hazard_feature("Q", people=100)))
    with pytest.raises(InvalidInput, match="needs province-level approval, not city"):
        store.cancel_hazard(conn, "Q", at=at, approved_by="City bureau", approver_level="city")
    assert store.get_hazard(conn, "Q").status == "active"
    with pytest.raises(NotFound):
        store.cancel_hazard(conn, "NOPE", at=at, approved_by="x")


def test_nearest_shelters_skip_full_ones(conn: psycopg.Connection) -> None:
    import_geojson(conn, collection(hazard_feature("H", lon=120.0, lat=30.0)))
    shelters = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, 30.005]},
         "properties": {"id": sid, "name": sid, "capacity": 100, "occupancy": occ}}
        for sid, lon, occ in (("NEAR_FULL", 120.011, 100), ("NEAR", 120.013, 10),
                              ("FAR", 120.03, 0), ("OVERFULL", 120.012, 130),
                              ("OUT_OF_RANGE", 120.5, 0))]}
    assert import_geojson(conn, json.dumps(shelters), "shelters").inserted == 5
    ranked = store.nearest_shelters(conn, "H", max_distance_m=5000)
    assert [(r.shelter_id, r.free) for r in ranked] == [("NEAR", 90), ("FAR", 100)]
    assert ranked[0].distance_m == pytest.approx(haversine_m(120.01, 30.005, 120.013, 30.005),
                                                 rel=0.005)
    store.set_occupancy(conn, "NEAR", 100)
    assert [r.shelter_id for r in store.nearest_shelters(conn, "H", max_distance_m=5000)] == [
        "FAR"]
    assert store.nearest_shelters(conn, "H", max_distance_m=5000, min_free=101) == []
    with pytest.raises(NotFound):
        store.set_occupancy(conn, "NOPE", 1)


def test_devices_are_matched_to_hazard_points(conn: psycopg.Connection) -> None:
    import_geojson(conn, collection(hazard_feature("H1", lon=120.0), hazard_feature(
        "H2", lon=120.1)))
    for did, lon, lat, hazard in (("IN1", 120.005, 30.005, None), ("NEAR2", 120.112, 30.005,
                                  None), ("FAR", 120.3, 30.3, None),
                                  ("FIXED", 120.005, 30.005, "OTHER")):
        conn.execute("INSERT INTO devices (device_id, profile, lon, lat, hazard_id) "
                     "VALUES (%s, 'national', %s, %s, %s)", (did, lon, lat, hazard))
    matches = store.match_devices(conn, within_m=300)
    assert {d: (m.area_id if m else None) for d, m in matches.items()} == {
        "IN1": "H1", "NEAR2": "H2", "FAR": None, "FIXED": "H1"}
    assert matches["NEAR2"].distance_m == pytest.approx(  # type: ignore[union-attr]
        haversine_m(120.11, 30.005, 120.112, 30.005), rel=0.005)
    assert store.apply_device_matches(conn, matches) == 2
    rows: dict[str, str | None] = dict(
        conn.execute("SELECT device_id, hazard_id FROM devices").fetchall())
    assert rows == {"IN1": "H1", "NEAR2": "H2", "FAR": None, "FIXED": "OTHER"}


def test_cli_import_export(db_url: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hazards", "import", str(EXAMPLES / "hazards.geojson")]) == 0
    bad = tmp_path / "bad.geojson"
    bad.write_text(collection(hazard_feature("X", type="volcano")), encoding="utf-8")
    assert cli.main(["hazards", "import", str(bad)]) == 1
    assert "feature 0: type 'volcano'" in capsys.readouterr().err
    out = tmp_path / "out.geojson"
    assert cli.main(["hazards", "export", "--out", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    _assert_rfc7946(doc)
    assert len(doc["features"]) == 4 and "13800000001" not in out.read_text(encoding="utf-8")
    assert cli.main(["hazards", "import", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
