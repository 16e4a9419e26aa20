"""Regional geohazard risk warnings: CAP 1.2 and GeoJSON import, coverage, the level floor."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from shapely.geometry import box

from alerts.methods.levels import Level
from geowarn import cli
from geowarn.errors import InvalidInput, NotFound
from gis import cap, geojson_io, regional, store
from gis.model import FieldError

EXAMPLES = Path(__file__).resolve().parent.parent / "gis" / "examples"
CST = timezone(timedelta(hours=8))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=CST)


@pytest.fixture
def hazards(conn: psycopg.Connection) -> psycopg.Connection:
    """The synthetic example hazard points (counties 331122, 331127, 330185)."""
    text = (EXAMPLES / "hazards.geojson").read_text(encoding="utf-8")
    assert store.import_records(conn, "hazards", geojson_io.read(text, "hazards")).errors == ()
    return conn


ALL = ["SYN-LS-001", "SYN-CL-002", "SYN-DF-003", "SYN-GF-004"]


def cap_doc(*, identifier: str = "SYN-1", msg_type: str = "Alert", status: str = "Actual",
            sent: str = "2026-06-21T08:00:00+08:00", info: str | None = None,
            references: str = "") -> str:
    if info is None:
        info = cap_info()
    refs = f"<references>{references}</references>" if references else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier><sender>synthetic@example.org</sender>
  <sent>{sent}</sent><status>{status}</status><msgType>{msg_type}</msgType>
  <scope>Public</scope>{refs}{info}
</alert>"""


def cap_info(*, severity: str = "Moderate", params: str = "",
             expires: str = "<expires>2026-06-22T08:00:00+08:00</expires>",
             area: str = "<geocode><valueName>ADCODE</valueName><value>331122</value></geocode>"
             ) -> str:
    return (f"<info><category>Geo</category><event>risk</event><urgency>Expected</urgency>"
            f"<severity>{severity}</severity><certainty>Likely</certainty>{expires}{params}"
            f"<area><areaDesc>synthetic</areaDesc>{area}</area></info>")


def test_example_cap_document_imports_and_sets_floors(hazards: psycopg.Connection) -> None:
    text = (EXAMPLES / "warning.cap.xml").read_bytes()
    report = regional.import_cap(hazards, text)
    assert (report.inserted, report.errors) == (1, ())
    row = hazards.execute("SELECT level, county_codes, source, issuer, valid_from, valid_to "
                          "FROM regional_warnings WHERE warning_id = 'SYN-CAP-2026-0621-01'"
                          ).fetchone()
    assert row == (4, ["330185"], "cap", "Synthetic provincial geohazard warning centre",
                   at(21, 8), at(22, 8))
    floors = regional.regional_floor(hazards, ALL, at(21, 12))
    # SYN-GF-004 by its county code, SYN-DF-003 by the polygon ("lat,lon" pairs).
    assert floors == {"SYN-LS-001": 0, "SYN-CL-002": 0, "SYN-DF-003": 4, "SYN-GF-004": 4}
    assert regional.regional_floor(hazards, ALL, at(22, 8)) == dict.fromkeys(ALL, 0)
    assert regional.regional_floor(hazards, ALL, at(21, 7, 59)) == dict.fromkeys(ALL, 0)
    assert regional.import_cap(hazards, text).unchanged == 1  # idempotent


def test_levels_are_the_ints_of_the_alerts_level_enum(hazards: psycopg.Connection) -> None:
    """gis returns plain ints (it imports nothing from alerts, the layer above); they are the
    values of alerts' Level."""
    regional.import_cap(hazards, cap_doc(info=cap_info(severity="Severe")))
    floors = regional.regional_floor(hazards, ["SYN-LS-001"], at(21, 9))
    assert type(floors["SYN-LS-001"]) is int
    assert Level(floors["SYN-LS-001"]) is Level.ORANGE


@pytest.mark.parametrize("severity, params, level", [
    ("Minor", "", 1), ("Moderate", "", 2), ("Severe", "", 3), ("Extreme", "", 4),
    ("Minor", "<parameter><valueName>level</valueName><value>red</value></parameter>", 4),
    ("Unknown", "<parameter><valueName>预警颜色</valueName><value>橙色</value></parameter>", 3),
    ("Unknown", "<parameter><valueName>warningLevel</valueName><value>IV</value></parameter>",
     1),
])
def test_cap_level_mapping(severity: str, params: str, level: int) -> None:
    msg = cap.parse(cap_doc(info=cap_info(severity=severity, params=params)))
    assert [w.level for w in msg.warnings] == [level]


@pytest.mark.parametrize("doc, message", [
    (cap_doc(status="Exercise"), "only 'Actual'"),
    (cap_doc(sent="2026-06-21T08:00:00"), "lacks its ±hh:mm offset"),
    (cap_doc(info=cap_info(severity="Unknown")), "severity 'Unknown' gives no level"),
    (cap_doc(info=cap_info(expires="")), "no <expires>"),
    (cap_doc(info=cap_info(area="<geocode><valueName>FIPS</valueName><value>1</value>"
                                "</geocode>")), "no usable area"),
    (cap_doc(info=cap_info(area="<polygon>28.04,119.49 28.04,119.52 28.06,119.52</polygon>")),
     "not closed"),
    (cap_doc(info=cap_info(area="<polygon>119.49,28.04 119.52,28.04 119.52,28.06 "
                                "119.49,28.04</polygon>")), "look swapped"),
    (cap_doc(msg_type="Cancel"), "Cancel without <references>"),
    ("<alert><identifier>x</identifier></alert>", "not a CAP 1.2 <alert>"),
    ("<alert", "not well-formed XML"),
])
def test_cap_errors_are_specific(doc: str, message: str) -> None:
    with pytest.raises((FieldError, ValueError), match=message):
        cap.parse(doc)


def test_cap_cancel_ends_a_warning_at_its_sent_time(hazards: psycopg.Connection) -> None:
    regional.import_cap(hazards, cap_doc(identifier="SYN-A",
                                         info=cap_info(severity="Extreme")))
    assert regional.regional_floor(hazards, ["SYN-LS-001"], at(21, 10)) == {"SYN-LS-001": 4}
    cancel = cap_doc(identifier="SYN-A-cancel", msg_type="Cancel",
                     sent="2026-06-21T12:00:00+08:00",
                     references="synthetic@example.org,SYN-A,2026-06-21T08:00:00+08:00")
    report = regional.import_cap(hazards, cancel)
    assert report.warnings == ()
    # Event time decides: before the Cancel the warning still counted (replays agree).
    assert regional.regional_floor(hazards, ["SYN-LS-001"], at(21, 11)) == {"SYN-LS-001": 4}
    assert regional.regional_floor(hazards, ["SYN-LS-001"], at(21, 12)) == {"SYN-LS-001": 0}
    unknown = cap_doc(identifier="SYN-B-cancel", msg_type="Cancel",
                      references="synthetic@example.org,SYN-NOPE,2026-06-21T08:00:00+08:00")
    assert "no stored warning 'SYN-NOPE'" in str(regional.import_cap(hazards, unknown).warnings)


def test_cap_update_supersedes_the_referenced_warning(hazards: psycopg.Connection) -> None:
    regional.import_cap(hazards, cap_doc(identifier="SYN-U1", info=cap_info(severity="Minor")))
    update = cap_doc(identifier="SYN-U2", msg_type="Update", sent="2026-06-21T10:00:00+08:00",
                     info=cap_info(severity="Severe"),
                     references="synthetic@example.org,SYN-U1,2026-06-21T08:00:00+08:00")
    assert regional.import_cap(hazards, update).inserted == 1
    assert regional.regional_floor(hazards, ["SYN-CL-002"], at(21, 9)) == {"SYN-CL-002": 1}
    assert regional.regional_floor(hazards, ["SYN-CL-002"], at(21, 11)) == {"SYN-CL-002": 3}


def test_geojson_warnings_with_codes_and_polygons(hazards: psycopg.Connection) -> None:
    parsed = regional.read_geojson((EXAMPLES / "warnings.geojson").read_text(encoding="utf-8"))
    assert parsed.errors == ()
    assert regional.store_warnings(hazards, parsed).inserted == 2
    floors = regional.regional_floor(hazards, ALL, at(21, 0))
    assert floors == {"SYN-LS-001": 2, "SYN-CL-002": 2, "SYN-DF-003": 3, "SYN-GF-004": 0}
    # A city code covers every county under it, a province code the whole province.
    city = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": None, "properties": {
            "id": "CITY", "issuer": "x", "level": 4, "valid_from": "2026-06-21T00:00:00+08:00",
            "valid_to": "2026-06-21T06:00:00+08:00", "county_codes": "331100"}}]}
    regional.store_warnings(hazards, regional.read_geojson(json.dumps(city)))
    floors = regional.regional_floor(hazards, ALL, at(21, 1))
    assert floors == {"SYN-LS-001": 4, "SYN-CL-002": 4, "SYN-DF-003": 4, "SYN-GF-004": 0}


def test_geojson_warning_errors(hazards: psycopg.Connection) -> None:
    def feature(**props: object) -> dict:
        base: dict[str, object] = {
            "id": "W", "issuer": "x", "level": "yellow", "county_codes": ["331122"],
            "valid_from": "2026-06-21T00:00:00+08:00", "valid_to": "2026-06-22T00:00:00+08:00"}
        base.update(props)
        return {"type": "Feature", "geometry": None, "properties": base}
    doc = {"type": "FeatureCollection", "features": [
        feature(id="A", level="purple"), feature(id="B", county_codes=None),
        feature(id="C", valid_to="2026-06-20T00:00:00+08:00"),
        feature(id="D", valid_from="2026-06-21T00:00:00"), feature(id="E", county_codes="33")]}
    errors = [p.reason for p in regional.read_geojson(json.dumps(doc)).errors]
    assert "level 'purple' is not blue" in errors[0]
    assert "needs county_codes or a polygon" in errors[1]
    assert "is not after valid_from" in errors[2]
    assert "has no UTC offset" in errors[3]
    assert "not a six-digit administrative code" in errors[4]


def test_regional_floor_refuses_unknown_ids_and_naive_times(
        hazards: psycopg.Connection) -> None:
    with pytest.raises(NotFound, match="SYN-NOPE"):
        regional.regional_floor(hazards, ["SYN-LS-001", "SYN-NOPE"], at(21, 0))
    with pytest.raises(InvalidInput, match="aware datetime"):
        regional.regional_floor(hazards, ["SYN-LS-001"], datetime(2026, 6, 21))
    assert regional.regional_floor(hazards, [], at(21, 0)) == {}


def test_hazards_covered_by_code_and_polygon(hazards: psycopg.Connection) -> None:
    assert store.hazards_covered(hazards, county_codes=["331122"]) == ["SYN-CL-002",
                                                                        "SYN-LS-001"]
    assert store.hazards_covered(hazards, county_codes=["330000"]) == sorted(ALL)
    assert store.hazards_covered(hazards, polygon=box(119.49, 28.04, 119.52, 28.06)) == [
        "SYN-DF-003"]
    assert store.hazards_covered(hazards, polygon=box(100, 20, 101, 21)) == []


def test_cli_warnings(hazards: psycopg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["warnings", "import", str(EXAMPLES / "warning.cap.xml")]) == 0
    assert cli.main(["warnings", "floor", "SYN-GF-004", "SYN-LS-001",
                     "--at", "2026-06-21T09:00:00+08:00"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["SYN-GF-004\tred", "SYN-LS-001\tnone"]
