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

The event type (the national profile's field): China's early-warning release system carries
the type of event as a code of GB/T 35561-2017 突发事件分类与编码 (a 2020 message of the
Henan meteorological bureau says <eventType>11B06</eventType> for a gale, 大风). OASIS CAP
1.2 has no such element, so the code goes in an <eventCode> whose valueName is that element's
name, `eventType`, next to our own `geowarn:hazard_kind` (kept: it says which method raised
the warning). Codes used (EVENT_TYPES below): a geohazard warning takes its hazard point's
type, 11D01 滑坡 (landslide), 11D02 泥石流 (debris flow), 11D03 山体崩塌 (collapse/rockfall),
11D04 地面塌陷 (ground_subsidence: at a hazard point this is the sudden collapse of the
ground; 11D06 地面沉降 is slow regional subsidence, not a GeoWarn point type), 11D05 地裂缝
(ground fissure), and 11D00 地质灾害 when the point is not known; a water-level (stage)
warning 11A01 洪水; water quality 12Q01 水域污染事件; air quality 12Q02 空气污染事件.
Maintenance and data-quality alerts are not emergencies in GB/T 35561's sense and get no code.
The standard's own text was not available to us (no copy in ../shared/reference, none found
in public material: only its catalogue pages). The codes are from its table as reproduced,
complete and in the standard's hierarchy (10000 突发事件, 11000 自然灾害, 11A00 水旱灾害 ...),
in the `accidenttype` dictionary of an emergency-broadcast platform (2018):
https://github.com/PayYouDont/yjgb_sb/blob/5d75b5a13a7369700f2da967a25a994b27377217/yjgb_sb.sql
and they agree with the independent sources found: the Henan message above
(https://github.com/marquisXuan/util/blob/d0fe0b7e5669865369dd1c976c18d943ff88522e/
src/test/java/org/yyx/xf/util/string/UtilJsonAndXmlTest.java), and the order of QWeather's
China warning types (https://dev.qweather.com/docs/api/warning/alert-events/: 1201 洪水 ...,
1241-1246 滑坡, 泥石流, 山体崩塌, 地面塌陷, 地裂缝, 地面沉降: the 11A01 ... and 11D01-11D06
orders). A deployment that holds the standard should check these rows against it.
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

EVENT_TYPE = "eventType"  # the eventCode valueName of the GB/T 35561 code (module docstring)
# GB/T 35561-2017 codes and names (module docstring for the source).
GEOHAZARD = ("11D00", "地质灾害")
EVENT_TYPES = {  # by hazard point type (gis/model.py HAZARD_TYPES)
    "landslide": ("11D01", "滑坡"), "debris_flow": ("11D02", "泥石流"),
    "collapse": ("11D03", "山体崩塌"), "ground_subsidence": ("11D04", "地面塌陷"),
    "ground_fissure": ("11D05", "地裂缝")}
KIND_EVENT_TYPES = {  # by alert kind, whatever the target
    "water_level": ("11A01", "洪水"), "water_quality": ("12Q01", "水域污染"),
    "air_quality": ("12Q02", "空气污染")}
NOT_EMERGENCIES = ("maintenance", "data_quality")  # no GB/T 35561 code
# CAP 1.2 §3.2.2 categories: Met includes flood; Env is pollution; a monitoring device is
# infrastructure.
CATEGORY = {"water_level": "Met", "water_quality": "Env", "air_quality": "Env",
            "maintenance": "Infra", "data_quality": "Infra"}


def event_type(hazard_kind: str, hazard_type: str = "") -> tuple[str, str] | None:
    """The GB/T 35561-2017 (code, name) of a warning, or None for a maintenance or
    data-quality alert; `hazard_type` is the hazard point's type ("" when not known)."""
    if hazard_kind in NOT_EMERGENCIES:
        return None
    if hazard_kind in KIND_EVENT_TYPES:
        return KIND_EVENT_TYPES[hazard_kind]
    return EVENT_TYPES.get(hazard_type, GEOHAZARD)


def event_words(hazard_kind: str, hazard_type: str = "") -> str:
    """The <event> text: 滑坡变形预警, 地质灾害降雨预警, 水位预警, 设备运维预警 ..."""
    kind = KIND_ZH.get(hazard_kind, hazard_kind)
    code = event_type(hazard_kind, hazard_type)
    if code is None or hazard_kind in KIND_EVENT_TYPES:
        return f"{kind}预警"
    return f"{code[1]}{kind}预警"


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
    hazard_type: str = ""  # the hazard point's type (gis/model.py), "" when not known


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
    add(info, "category", CATEGORY.get(ev.hazard_kind, "Geo"))
    add(info, "event", event_words(ev.hazard_kind, ev.hazard_type))
    cancel = ev.msg_type == "Cancel" or ev.level == 0
    add(info, "responseType", "AllClear" if cancel else RESPONSE.get(ev.level, "Monitor"))
    level = 0 if cancel else ev.level
    add(info, "urgency", URGENCY[level])
    add(info, "severity", SEVERITY[level])
    add(info, "certainty", CERTAINTY[level])
    national = event_type(ev.hazard_kind, ev.hazard_type)
    if national is not None:
        code = ET.SubElement(info, q + "eventCode")
        add(code, "valueName", EVENT_TYPE)
        add(code, "value", national[0])
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
