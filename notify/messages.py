"""Message texts from template files (notify/templates/<language>/<name>.txt).

Templates are plain text with {placeholders}, editable without code; an operator may point
GEOWARN_NOTIFY_TEMPLATES_DIR at a copy. Chinese (zh) is the default, English (en) available;
a template missing in a language falls back to zh.

SMS budget: every SMS ends with its delivery tag (" #GW<id>", TAG_RESERVE characters at
most) so that the provider can be asked later whether it was sent. `render_sms` keeps a text
within `max_parts` parts (notify/segments.py) by shortening the longest free-text values
(names of the hazard point and shelter) with "…", never the instructions, numbers or level.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alerts.methods.levels import Level
from geowarn.errors import ConfigurationError
from notify import segments

SHIPPED = Path(__file__).parent / "templates"
LANGUAGES = ("zh", "en")
TAG_RESERVE = 12  # " #GW" + up to 8 base-36 digits
SHRINKABLE = ("hazard", "shelter", "place", "reason")
KIND_ZH = {"rainfall": "降雨", "deformation": "变形", "water_level": "水位",
           "water_quality": "水质", "air_quality": "空气质量", "combined": "综合研判",
           "maintenance": "设备运维", "data_quality": "数据质量"}
KIND_EN = {"rainfall": "rainfall", "deformation": "ground movement",
           "water_level": "water level", "water_quality": "water quality",
           "air_quality": "air quality", "combined": "combined assessment",
           "maintenance": "maintenance", "data_quality": "data quality"}


def level_words(level: int, language: str) -> str:
    lv = Level(level)
    return lv.chinese if language == "zh" else lv.english


def kind_words(kind: str, language: str) -> str:
    return (KIND_ZH if language == "zh" else KIND_EN).get(kind, kind)


def distance_words(metres: float, language: str) -> str:
    if metres < 1000:
        value = f"{round(metres / 10) * 10:.0f}"
        return f"{value}米" if language == "zh" else f"{value} m"
    km = f"{metres / 1000:.1f}"
    return f"{km}公里" if language == "zh" else f"{km} km"


def tag_of(delivery_id: int) -> str:
    """The short reference put at the end of a message: GW + the delivery id in base 36."""
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    n, out = delivery_id, ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return "GW" + out


def with_tag(body: str, delivery_id: int) -> str:
    return f"{body} #{tag_of(delivery_id)}"


@dataclass(frozen=True)
class Templates:
    directory: Path = SHIPPED

    def source(self, name: str, language: str) -> str:
        for lang in dict.fromkeys((language, "zh")):
            path = self.directory / lang / f"{name}.txt"
            if path.is_file():
                return path.read_text(encoding="utf-8").strip()
        raise ConfigurationError(f"no message template {name!r} in {self.directory.name}/"
                                 f"{language} or zh")

    def render(self, name: str, language: str, values: Mapping[str, object]) -> str:
        text = self.source(name, language)
        needed = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        missing = needed - set(values)
        if missing:
            raise ConfigurationError(f"template {language}/{name}.txt uses "
                                     f"{', '.join(sorted(missing))}, which the sender does "
                                     "not provide")
        return text.format_map({k: values[k] for k in needed})

    def render_sms(self, name: str, language: str, values: Mapping[str, object], *,
                   max_parts: int = 3) -> str:
        """Render and shorten free-text values until text + tag fits `max_parts` parts."""
        current = {k: str(v) for k, v in values.items()}
        while True:
            text = self.render(name, language, current)
            if segments.count(text + " " * TAG_RESERVE).parts <= max_parts:
                return text
            # Shorten the longest shrinkable value by one character (plus the ellipsis).
            candidates = [k for k in SHRINKABLE if k in current and len(current[k]) > 4]
            if not candidates:
                raise ConfigurationError(f"template {language}/{name}.txt does not fit "
                                         f"{max_parts} SMS parts even with short names")
            key = max(candidates, key=lambda k: len(current[k]))
            value = current[key].rstrip("…")
            current[key] = value[:-1] + "…"
