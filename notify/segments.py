"""How many SMS parts a text costs (pure; 3GPP TS 23.038 / 23.040).

A text made only of the GSM 7-bit default alphabet fits 160 characters in one SMS and 153 per
part when split (7 bytes go to the concatenation header); characters of the extension table
(^{}\\[~]|€ and form feed) take two septets. Any other character, so any Chinese one, makes
the whole message UCS-2: 70 characters in one SMS, 67 per part, counted in UTF-16 code units
(a character outside the Basic Multilingual Plane, such as an emoji, takes two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENSION = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SegmentCount:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int
    per_part: int  # the budget per part at this length


def count(text: str) -> SegmentCount:
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in text):
        units = sum(2 if ch in _GSM_EXTENSION else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units <= single:
        return SegmentCount(encoding, units, 1 if units else 0, single)
    return SegmentCount(encoding, units, math.ceil(units / multi), multi)
