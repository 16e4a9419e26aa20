"""Pure parts of notify/: SMS segments, message fitting, shelter allocation, routing,
phone numbers, pacing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from geowarn.errors import ConfigurationError
from gis import csv_io, geojson_io
from gis.model import HazardPoint, Household, Person, Shelter
from notify import messages, segments
from notify.allocation import allocate
from notify.pacing import TokenBucket
from notify.phones import PhoneError, mask, to_e164
from notify.routing import RoutingTable, load_routing

EXAMPLES = Path(__file__).resolve().parent.parent / "gis" / "examples"


def test_segments_gsm_and_ucs2_boundaries() -> None:
    assert segments.count("a" * 160) == segments.SegmentCount("GSM-7", 160, 1, 160)
    assert segments.count("a" * 161).parts == 2
    assert segments.count("a" * 306).parts == 2 and segments.count("a" * 307).parts == 3
    assert segments.count("{" * 80).units == 160  # extension characters take two septets
    assert segments.count("中" * 70) == segments.SegmentCount("UCS-2", 70, 1, 70)
    assert segments.count("中" * 71).parts == 2
    assert segments.count("中" * 134).parts == 2 and segments.count("中" * 135).parts == 3
    # One Chinese character makes all of it UCS-2.
    assert segments.count("a" * 69 + "中").parts == 1
    assert segments.count("a" * 70 + "中").parts == 2
    assert segments.count("😀" * 35).units == 70  # outside the BMP: two code units


def _longest_example_names() -> tuple[str, str, str]:
    hazards = geojson_io.read((EXAMPLES / "hazards.geojson").read_text(), "hazards").records
    csv_hazards = csv_io.read((EXAMPLES / "hazards.csv").read_text(), "hazards").records
    shelters = geojson_io.read((EXAMPLES / "shelters.geojson").read_text(), "shelters").records
    names = [h.name for h in (*hazards, *csv_hazards) if isinstance(h, HazardPoint)]
    shelter = max((s for s in shelters if isinstance(s, Shelter)), key=lambda s: len(s.name))
    phone = shelter.contact.phone if shelter.contact else "12336"
    return max(names, key=len), shelter.name, phone or "12336"


@pytest.mark.parametrize("language", ["zh", "en"])
def test_evacuation_sms_fits_three_parts_for_the_longest_example_names(language: str) -> None:
    hazard, shelter, phone = _longest_example_names()
    values = {"hazard": hazard, "place": "331122", "level": messages.level_words(4, language),
              "shelter": shelter, "distance": messages.distance_words(12345, language),
              "shelter_phone": "+86" + phone, "hotline": "0578-12345678"}
    text = messages.Templates().render_sms("resident_evacuate", language, values)
    assert hazard in text and shelter in text  # they fit without shortening
    full = messages.with_tag(text, 99_999_999)
    count = segments.count(full)
    assert count.parts <= 3
    assert count.encoding == ("UCS-2" if language == "zh" or any(ord(c) > 127 for c in full)
                              else "GSM-7")


def test_overlong_names_are_shortened_not_the_instructions() -> None:
    values = {"hazard": "很长的隐患点名称" * 12, "place": "331122",
              "level": messages.level_words(4, "zh"), "shelter": "非常长的安置点名称" * 10,
              "distance": "1.2公里", "shelter_phone": "+8613700000001", "hotline": "12336"}
    text = messages.Templates().render_sms("resident_evacuate", "zh", values)
    assert segments.count(messages.with_tag(text, 10**9)).parts <= 3
    assert "立即撤离" in text and "+8613700000001" in text and "…" in text


def test_template_missing_a_value_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / "x.txt").write_text("{nobody_provides}")
    with pytest.raises(ConfigurationError, match="nobody_provides"):
        messages.Templates(tmp_path).render("x", "zh", {})
    assert messages.Templates().source("test", "fr") == messages.Templates().source("test",
                                                                                    "zh")


def _shelter(sid: str, capacity: int, occupancy: int = 0) -> Shelter:
    return Shelter(sid, sid, 120.0, 28.0, capacity, occupancy, Person("k", "1"))


@pytest.mark.parametrize("seed", range(30))
def test_allocation_never_overfills_and_reports_the_rest(seed: int) -> None:
    rng = random.Random(seed)
    households = [Household(f"H{i:03d}", "HP", f"h{i}", rng.randint(1, 8))
                  for i in range(rng.randint(0, 150))]
    shelters = [(_shelter(f"S{j}", rng.randint(1, 200), rng.randint(0, 60)),
                 rng.uniform(10, 5000)) for j in range(rng.randint(0, 4))]
    result = allocate(households, shelters)
    free = {s.shelter_id: s.free for s, _ in shelters}
    members = {h.household_id: h.members for h in households}
    load: dict[str, int] = {}
    for p in result.placements:
        load[p.shelter.shelter_id] = load.get(p.shelter.shelter_id, 0) + members[p.household_id]
    assert all(load[s] <= free[s] for s in load)
    placed = {p.household_id for p in result.placements}
    unplaced = {h.household_id for h in result.unplaced}
    assert placed | unplaced == set(members) and not placed & unplaced
    # Nobody is left out while a shelter still has room for them.
    for h in result.unplaced:
        assert all(free[s] - load.get(s, 0) < h.members for s in free)
    # Order of the input does not matter.
    assert allocate(list(reversed(households)), list(reversed(shelters))) == result


def test_allocation_fills_the_nearest_first() -> None:
    hh = [Household(f"H{i}", "HP", "h", 2) for i in range(5)]
    near, far = _shelter("near", 4), _shelter("far", 100)
    result = allocate(hh, [(far, 900.0), (near, 100.0)])
    assert result.assigned_people == {"near": 4, "far": 6}


def test_routing_defaults_and_county_overrides(tmp_path: Path) -> None:
    table = RoutingTable()
    assert table.warning("331122", 1).audiences == ("monitor",)
    assert "residents_evacuate" in table.warning("331122", 4).audiences
    assert table.warning("331122", 4).voice_audiences == ("monitor", "residents_evacuate")
    assert table.next_tier("331122", 3, 1) == "city_officer"
    assert table.next_tier("331122", 3, 2) is None
    assert table.next_tier("331122", 1, 1) == "township_officer"
    path = tmp_path / "routing.json"
    path.write_text(json.dumps({"counties": {"331100": {"orange": ["monitor",
                                                                   "county_officer"]}},
                                "escalate_after_min": {"orange": 5}}))
    custom = load_routing(path)
    assert custom.warning("331122", 3).audiences == ("monitor", "county_officer")  # city code
    assert custom.warning("330185", 3) == table.warning("330185", 3)  # other city: default
    assert custom.escalate_after_min[3] == 5.0
    path.write_text(json.dumps({"levels": {"purple": ["monitor"]}}))
    with pytest.raises(ConfigurationError, match="purple"):
        load_routing(path)
    path.write_text(json.dumps({"levels": {"red": ["everyone"]}}))
    with pytest.raises(ConfigurationError, match="everyone"):
        load_routing(path)


@pytest.mark.parametrize(("raw", "e164"), [
    ("13800000005", "+8613800000005"), ("+86 138-0000-0005", "+8613800000005"),
    ("008613800000005", "+8613800000005"), ("0578-1234567", "+865781234567"),
    ("+1 (415) 555-0100", "+14155550100")])
def test_phone_numbers_become_e164(raw: str, e164: str) -> None:
    assert to_e164(raw) == e164


@pytest.mark.parametrize("raw", ["", "12", "+0123456789", "call me", "+86123456789012345"])
def test_bad_phone_numbers_are_refused_masked(raw: str) -> None:
    with pytest.raises(PhoneError) as err:
        to_e164(raw)
    assert "123456789" not in str(err.value)


def test_mask_keeps_three_and_four() -> None:
    assert mask("+8613812345678") == "+86138****5678"
    assert mask(None) == "-"


def test_token_bucket_paces_to_the_rate() -> None:
    t = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        t[0] += s

    bucket = TokenBucket(2.0, burst=2, clock=lambda: t[0], sleep=sleep)
    for _ in range(6):
        bucket.acquire()
    assert waits == pytest.approx([0.5, 0.5, 0.5, 0.5])  # 2 at once, then 2 per second
    assert t[0] == pytest.approx(2.0)


def test_log_filter_masks_numbers_in_foreign_records() -> None:
    import logging

    from notify.logmask import PhoneMaskFilter, mask_numbers

    assert mask_numbers("GET /Messages.json?To=%2B8613900000001&From=%2B8610690000001") == \
        "GET /Messages.json?To=+86139****0001&From=+86106****0001"
    assert mask_numbers("call 13800000005 now, order 20261201123456") == \
        "call 138****0005 now, order 20261201123456"
    record = logging.LogRecord("urllib3", logging.DEBUG, "x", 1, "GET %s",
                               ("?To=%2B8613900000001",), None)
    assert PhoneMaskFilter().filter(record) and "13900000001" not in record.getMessage()
