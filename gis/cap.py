"""Reading regional geohazard risk warnings from OASIS CAP 1.2 XML (pure, xml.etree), and the
CAP vocabulary GeoWarn both reads and writes (notify/cap_out.py writes with it, one layer up):
the namespace, the header every message has (CapHeader), the level words and severities, the
parameter and geocode names, and the "lat,lon" polygon text.

What is taken from a CAP <alert>:
- Only status "Actual" sets floors; Exercise/System/Test/Draft are refused with a message.
- msgType Alert makes warnings; Update makes warnings and supersedes the messages in
  <references>; Cancel ends the referenced ones at the Cancel's <sent> time.
- One warning per <info> of the first <language> seen (other languages repeat the same
  warning); its id is the alert identifier, or "identifier#n" for the n-th extra info.
- valid from = info <effective>, else alert <sent> (CAP's own default); valid to = <expires>,
  which is required here: a warning without an end would hold a floor for ever.
- issuer = info <senderName>, else alert <sender>.
- Level: a <parameter> named level/warningLevel/colour/预警级别/预警颜色 whose value is a
  colour (blue/yellow/orange/red, 蓝色/黄色/橙色/红色) or grade (IV/III/II/I) wins; otherwise
  <severity> Minor → blue, Moderate → yellow, Severe → orange, Extreme → red (the mapping
  China's CAP profile GB/T 35965.1 uses for the four colours); Unknown is refused.
- Area: <polygon> is "lat,lon" pairs (note the order), closed, >= 4 points; several polygons
  become one MultiPolygon. <geocode> with valueName ADCODE/GB2260/county_code/行政区划代码
  and a six-digit value gives administrative codes. <circle> is not supported and is reported.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from gis import geometry
from gis.geometry import GeometryError
from gis.model import LEVEL_BY_NAME, FieldError, RegionalWarning

NS = "urn:oasis:names:tc:emergency:cap:1.2"
_Q = "{" + NS + "}"
SEVERITY_LEVEL = {"Minor": 1, "Moderate": 2, "Severe": 3, "Extreme": 4}
COLOUR_ZH = {1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色"}
LEVEL_PARAM = "预警级别"  # the parameter we write the colour in (read: any of _LEVEL_PARAMS)
CODE_NAME = "行政区划代码"  # the geocode valueName we write (read: any of _CODE_NAMES)
_LEVEL_PARAMS = {"level", "warninglevel", "warning_level", "color", "colour",
                 "预警级别", "预警颜色"}
_LEVEL_WORDS = {**LEVEL_BY_NAME, "蓝色": 1, "黄色": 2, "橙色": 3, "红色": 4,
                "蓝": 1, "黄": 2, "橙": 3, "红": 4, "IV": 1, "III": 2, "II": 3, "I": 4}
_CODE_NAMES = {"adcode", "admin_code", "county_code", "gb2260", "gb/t 2260", CODE_NAME}
_CODE = re.compile(r"^[1-9][0-9]{5}$")


@dataclass(frozen=True)
class CapHeader:
    """What identifies any CAP message (CAP 1.2 §3.2.1)."""
    identifier: str
    sender: str
    sent: datetime
    msg_type: str  # Alert, Update, Cancel


@dataclass(frozen=True)
class CapMessage(CapHeader):
    warnings: tuple[RegionalWarning, ...]
    references: tuple[str, ...]  # identifiers this message updates or cancels
    notes: tuple[str, ...]  # things ignored, for the operator


def _text(el: ET.Element, name: str, *, required: bool = False, where: str = "alert") -> str:
    child = el.find(_Q + name)
    value = (child.text or "").strip() if child is not None else ""
    if required and not value:
        raise FieldError(f"CAP {where} lacks <{name}>")
    return value


def _time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError(f"CAP <{name}> {value!r} is not a dateTime") from None
    if parsed.tzinfo is None:
        raise FieldError(f"CAP <{name}> {value!r} lacks its ±hh:mm offset")
    return parsed


def parse(text: str | bytes) -> CapMessage:
    """One CAP 1.2 <alert>; FieldError/GeometryError say what is wrong with it."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise FieldError(f"not well-formed XML: {exc}") from None
    if root.tag != _Q + "alert":
        raise FieldError(f"root element is {root.tag!r}, not a CAP 1.2 <alert> "
                         f"(namespace {NS})")
    identifier = _text(root, "identifier", required=True)
    sender = _text(root, "sender", required=True)
    sent = _time(_text(root, "sent", required=True), "sent")
    status = _text(root, "status", required=True)
    msg_type = _text(root, "msgType", required=True)
    _text(root, "scope", required=True)
    if status != "Actual":
        raise FieldError(f"CAP status {status!r}: only 'Actual' warnings are imported")
    if msg_type not in ("Alert", "Update", "Cancel"):
        raise FieldError(f"CAP msgType {msg_type!r}: only Alert, Update and Cancel are used")
    references = tuple(_referenced_ids(_text(root, "references")))
    if msg_type in ("Update", "Cancel") and not references:
        raise FieldError(f"CAP {msg_type} without <references>")
    notes: list[str] = []
    warnings: list[RegionalWarning] = []
    if msg_type != "Cancel":
        infos = root.findall(_Q + "info")
        if not infos:
            raise FieldError("CAP alert has no <info>")
        language = _text(infos[0], "language") or "en-US"
        chosen = [i for i in infos if (_text(i, "language") or "en-US") == language]
        if len(chosen) < len(infos):
            notes.append(f"used the {language} <info> blocks; other languages skipped")
        for n, info in enumerate(chosen):
            wid = identifier if n == 0 else f"{identifier}#{n}"
            warnings.append(_warning(info, wid, sender, sent, notes, where=f"info {n}"))
    return CapMessage(identifier, sender, sent, msg_type, tuple(warnings), references,
                      tuple(notes))


def _referenced_ids(text: str) -> list[str]:
    # CAP 1.2 §3.2.1: space-separated "sender,identifier,sent" triples.
    ids = []
    for triple in text.split():
        parts = triple.split(",")
        if len(parts) != 3:
            raise FieldError(f"CAP <references> entry {triple!r} is not sender,identifier,sent")
        ids.append(parts[1])
    return ids


def _warning(info: ET.Element, wid: str, sender: str, sent: datetime, notes: list[str],
             *, where: str) -> RegionalWarning:
    level = _level(info, where)
    effective = _text(info, "effective")
    valid_from = _time(effective, "effective") if effective else sent
    expires = _text(info, "expires")
    if not expires:
        raise FieldError(f"CAP {where} has no <expires>: a warning needs an end time")
    valid_to = _time(expires, "expires")
    if valid_to <= valid_from:
        raise FieldError(f"CAP {where}: <expires> {expires} is not after the start "
                         f"{valid_from.isoformat()}")
    codes: list[str] = []
    polygons: list[Polygon] = []
    areas = info.findall(_Q + "area")
    if not areas:
        raise FieldError(f"CAP {where} has no <area>")
    for a, area in enumerate(areas):
        for p, poly in enumerate(area.findall(_Q + "polygon")):
            polygons.append(_polygon(poly.text or "", f"{where} area {a} polygon {p}"))
        for code in area.findall(_Q + "geocode"):
            name = _text(code, "valueName", where="geocode").lower()
            value = _text(code, "value", where="geocode")
            if name in _CODE_NAMES:
                if not _CODE.match(value):
                    raise FieldError(f"CAP {where} area {a}: geocode {value!r} is not a "
                                     "six-digit administrative code")
                codes.append(value)
            else:
                notes.append(f"{where} area {a}: geocode {name!r} ignored")
        if area.findall(_Q + "circle"):
            notes.append(f"{where} area {a}: <circle> is not supported and was ignored")
    geom: BaseGeometry | None = None
    if polygons:
        geom = polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)
    if geom is None and not codes:
        raise FieldError(f"CAP {where}: no usable area (needs a <polygon> or an "
                         "administrative-code <geocode>)")
    return RegionalWarning(
        warning_id=wid, issuer=_text(info, "senderName") or sender, level=level,
        valid_from=valid_from, valid_to=valid_to, county_codes=tuple(dict.fromkeys(codes)),
        geometry=geom, headline=_text(info, "headline") or _text(info, "event") or None,
        source="cap")


def _level(info: ET.Element, where: str) -> int:
    for param in info.findall(_Q + "parameter"):
        name = _text(param, "valueName", where="parameter").strip().lower()
        if name in _LEVEL_PARAMS:
            value = _text(param, "value", where="parameter").strip()
            level = _LEVEL_WORDS.get(value.lower(), _LEVEL_WORDS.get(value.upper()))
            if level is None:
                raise FieldError(f"CAP {where}: parameter {name} value {value!r} is not a "
                                 "colour (blue..red) or grade (IV..I)")
            return level
    severity = _text(info, "severity", required=True, where=where)
    if severity not in SEVERITY_LEVEL:
        raise FieldError(f"CAP {where}: severity {severity!r} gives no level "
                         "(add a 'level' parameter)")
    return SEVERITY_LEVEL[severity]


def polygon_text(p: Polygon) -> str:
    """A polygon as CAP writes it: "lat,lon" pairs (note the order), the ring closed."""
    return " ".join(f"{lat:.6f},{lon:.6f}" for lon, lat in p.exterior.coords)


def _polygon(text: str, where: str) -> Polygon:
    ring = []
    for pair in text.split():
        lat_s, sep, lon_s = pair.partition(",")
        try:
            if not sep:
                raise ValueError
            ring.append([float(lon_s), float(lat_s)])
        except ValueError:
            raise GeometryError(f"CAP {where}: {pair!r} is not a 'lat,lon' pair") from None
    try:
        geom, warnings = geometry.parse_area({"type": "Polygon", "coordinates": [ring]})
    except GeometryError as exc:
        raise GeometryError(f"CAP {where}: {exc}") from None
    del warnings  # CAP says nothing about winding, so re-orienting is not worth a note.
    assert isinstance(geom, Polygon)
    return geom
