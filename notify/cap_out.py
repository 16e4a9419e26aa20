"""CAP 1.2 documents for warning events (pure; OASIS CAP 1.2, GB/T 35965.1 where it applies).

Every event of an alert becomes one <alert>: the opening is msgType Alert; a rise, fall or
clearing is an Update and the resolution a Cancel, each referencing every earlier message
of the same alert (CAP 1.2 §3.2.1 "sender,identifier,sent" triples). The area is the hazard
polygon (CAP writes "lat,lon" pairs); the info is zh-CN. Severity follows the mapping
gis/cap.py reads back (blue Minor, yellow Moderate, orange Severe, red Extreme, as China's
CAP profile uses for the four colours), and the level is also given as the parameter
预警级别 with the colour word, which gis/cap.py prefers. Urgency and certainty rise with the
level (red: Immediate/Likely; blue: Future/Possible); a Cancel says Past/Observed with
responseType AllClear. Times are written with an explicit +08:00 offset, as the XSD's
dateTime pattern requires (no "Z").

A drill's messages (notify/drill.py) say status Exercise, with a <note> naming the exercise
(CAP 1.2 §3.2.1: the note "should" identify the exercise), and 【演练】 before the headline:
a CAP consumer that ignores status still shows a drill as one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from gis.cap import CODE_NAME, COLOUR_ZH, LEVEL_PARAM, NS, SEVERITY_LEVEL, CapHeader, polygon_text
from notify.messages import KIND_ZH

CHINA = timezone(timedelta(hours=8))
# The reader's severity -> level mapping, turned round (an all-clear says Minor).
SEVERITY = {0: "Minor", **{level: name for name, level in SEVERITY_LEVEL.items()}}
URGENCY = {0: "Past", 1: "Future", 2: "Expected", 3: "Expected", 4: "Immediate"}
CERTAINTY = {0: "Observed", 1: "Possible", 2: "Possible", 3: "Likely", 4: "Likely"}
RESPONSE = {1: "Monitor", 2: "Monitor", 3: "Prepare", 4: "Evacuate"}


@dataclass(frozen=True)
class CapEvent(CapHeader):
    level: int
    hazard_kind: str
    headline: str
    area_desc: str
    area: BaseGeometry | None
    county_code: str
    expires: datetime
    references: Sequence[tuple[str, str, datetime]] = ()
    instruction: str = ""
    status: str = "Actual"  # or "Exercise" (a drill)
    note: str = ""


def cap_time(t: datetime) -> str:
    return t.astimezone(CHINA).replace(microsecond=0).isoformat()


def _polygons(geom: BaseGeometry | None) -> list[str]:
    if geom is None:
        return []
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    out = []
    for p in parts:
        if isinstance(p, Polygon):
            out.append(polygon_text(p))
    return out


def build(ev: CapEvent) -> str:
    ET.register_namespace("", NS)
    q = "{" + NS + "}"
    root = ET.Element(q + "alert")

    def add(parent: ET.Element, name: str, text: str) -> ET.Element:
        el = ET.SubElement(parent, q + name)
        el.text = text
        return el

    add(root, "identifier", ev.identifier)
    add(root, "sender", ev.sender)
    add(root, "sent", cap_time(ev.sent))
    add(root, "status", ev.status)
    add(root, "msgType", ev.msg_type)
    add(root, "scope", "Public")
    if ev.note:
        add(root, "note", ev.note)
    if ev.references:
        add(root, "references", " ".join(f"{s},{i},{cap_time(t)}" for s, i, t in ev.references))
    info = ET.SubElement(root, q + "info")
    add(info, "language", "zh-CN")
    add(info, "category", "Geo")
    add(info, "event", f"地质灾害{KIND_ZH.get(ev.hazard_kind, ev.hazard_kind)}预警")
    cancel = ev.msg_type == "Cancel" or ev.level == 0
    add(info, "responseType", "AllClear" if cancel else RESPONSE.get(ev.level, "Monitor"))
    level = 0 if cancel else ev.level
    add(info, "urgency", URGENCY[level])
    add(info, "severity", SEVERITY[level])
    add(info, "certainty", CERTAINTY[level])
    code = ET.SubElement(info, q + "eventCode")
    add(code, "valueName", "geowarn:hazard_kind")
    add(code, "value", ev.hazard_kind)
    add(info, "effective", cap_time(ev.sent))
    add(info, "expires", cap_time(ev.expires))
    add(info, "senderName", "GeoWarn")
    add(info, "headline", ev.headline)
    if ev.instruction:
        add(info, "instruction", ev.instruction)
    if ev.level:
        param = ET.SubElement(info, q + "parameter")
        add(param, "valueName", LEVEL_PARAM)
        add(param, "value", COLOUR_ZH[ev.level])
    area = ET.SubElement(info, q + "area")
    add(area, "areaDesc", ev.area_desc)
    for poly in _polygons(ev.area):
        add(area, "polygon", poly)
    if ev.county_code:
        geocode = ET.SubElement(area, q + "geocode")
        add(geocode, "valueName", CODE_NAME)
        add(geocode, "value", ev.county_code)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
