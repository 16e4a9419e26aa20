"""The people directory and the duty roster.

Directory people are contacts GeoWarn may notify: name, E.164 phone, language, roles and a
county scope (GB/T 2260 code; a city code covers its counties, a 9-digit township code lies
inside one county). The monitors (群测群防员) and responsible persons recorded on hazard
points are *linked*, not copied: they stay in hazard_points, are listed here with the point
they come from, and become the same recipient as a directory person with the same number.

The roster says who holds a duty role for a county between two times, so "the county duty
officer" of an event is whoever was on duty at the event's time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from geowarn.errors import InvalidInput, NotFound
from gis import geometry, store
from gis.model import FieldError
from gis.records import Problem
from notify.phones import PhoneError, mask, to_e164

ROLES = ("monitor", "responsible", "township_officer", "county_officer", "city_officer",
         "expert", "maintainer")
DUTY_ROLES = ("township_officer", "county_officer", "city_officer", "expert")
LANGUAGES = ("zh", "en")
MAX_CSV_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Contact:
    """A person GeoWarn can notify; `phone` is the full E.164 number (internal use only)."""

    person_id: str
    name: str
    phone: str | None
    language: str = "zh"
    roles: tuple[str, ...] = ()
    county_code: str = ""
    device_ids: tuple[str, ...] = ()
    source: str = "directory"  # or "hazard SYN-LS-001" for a linked monitor/responsible

    @property
    def masked_phone(self) -> str:
        return mask(self.phone)

    @property
    def recipient_id(self) -> str:
        """Deliveries' recipient id: person:<id> for the directory; linked contacts and
        households carry their own prefixed ids (hazard:<point>:monitor:<n>,
        household:<id>)."""
        return self.person_id if ":" in self.person_id else f"person:{self.person_id}"


@dataclass(frozen=True)
class DutyShift:
    role: str
    county_code: str
    person_id: str
    from_at: datetime
    to_at: datetime


@dataclass
class ImportResult:
    inserted: int = 0
    updated: int = 0
    errors: list[Problem] = field(default_factory=list)


def _rows(text: str, required: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    if len(text.encode()) > MAX_CSV_BYTES:
        raise InvalidInput(f"file is larger than {MAX_CSV_BYTES} bytes")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidInput(f"CSV header lacks column(s) {', '.join(missing)} "
                           f"(needs {', '.join(required)})")
    for n, row in enumerate(reader, start=2):
        yield n, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _code(value: str, what: str) -> str:
    if not (len(value) in (6, 9) and value.isdigit() and value[0] != "0"):
        raise FieldError(f"{what} {value!r} is not a 6-digit county or 9-digit township code")
    return value


def parse_people_csv(text: str) -> tuple[list[Contact], list[Problem]]:
    """Columns id,name,phone,language,roles,county_code[,devices]; roles and devices are
    ';'-separated. A bad line is reported and skipped; the others are kept."""
    people: list[Contact] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, row in _rows(text, ("id", "name", "phone", "roles", "county_code")):
        where = f"line {line}"
        try:
            pid = row["id"]
            if not pid or not pid[0].isalnum() or len(pid) > 64:
                raise FieldError(f"id {pid!r} must be 1-64 letters/digits/_.-")
            if pid in seen:
                raise FieldError(f"duplicate id {pid!r} (first on line {seen[pid]})")
            if not row["name"]:
                raise FieldError("missing name")
            roles = tuple(r.strip() for r in row["roles"].split(";") if r.strip())
            bad = [r for r in roles if r not in ROLES]
            if not roles or bad:
                raise FieldError(f"roles {row['roles']!r}: each must be one of "
                                 f"{', '.join(ROLES)}")
            language = row.get("language") or "zh"
            if language not in LANGUAGES:
                raise FieldError(f"language {language!r} is not zh or en")
            phone = to_e164(row["phone"]) if row["phone"] else None
            devices = tuple(d.strip() for d in (row.get("devices") or "").split(";")
                            if d.strip())
            people.append(Contact(pid, row["name"], phone, language, roles,
                                  _code(row["county_code"], "county_code"), devices))
            seen[pid] = line
        except (FieldError, PhoneError) as exc:
            problems.append(Problem(where, str(exc)))
    return people, problems


def import_people(conn: psycopg.Connection, people: Sequence[Contact]) -> ImportResult:
    result = ImportResult()
    with conn.transaction():
        for p in people:
            row = conn.execute(
                "INSERT INTO people (person_id, name, phone, language, roles, county_code, "
                "device_ids) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (person_id) DO UPDATE SET name = EXCLUDED.name, "
                "phone = EXCLUDED.phone, language = EXCLUDED.language, roles = EXCLUDED.roles, "
                "county_code = EXCLUDED.county_code, device_ids = EXCLUDED.device_ids, "
                "active = true, updated_at = now() RETURNING (xmax = 0)",
                (p.person_id, p.name, p.phone, p.language, list(p.roles), p.county_code,
                 list(p.device_ids))).fetchone()
            if row and row[0]:
                result.inserted += 1
            else:
                result.updated += 1
    return result


_SELECT = ("SELECT person_id, name, phone, language, roles, county_code, device_ids "
           "FROM people WHERE active")


def _contact(row: Sequence[object]) -> Contact:
    pid, name, phone, language, roles, county, devices = row
    return Contact(str(pid), str(name), phone if isinstance(phone, str) else None,
                   str(language), tuple(roles), str(county),  # type: ignore[arg-type]
                   tuple(devices))  # type: ignore[arg-type]


def directory(conn: psycopg.Connection) -> list[Contact]:
    return [_contact(r) for r in conn.execute(_SELECT + " ORDER BY person_id").fetchall()]


def get_person(conn: psycopg.Connection, person_id: str) -> Contact:
    row = conn.execute(_SELECT + " AND person_id = %s", (person_id,)).fetchone()
    if row is None:
        raise NotFound(f"person {person_id!r} is not in the directory")
    return _contact(row)


def by_phone(conn: psycopg.Connection, phone: str) -> Contact | None:
    row = conn.execute(_SELECT + " AND phone = %s ORDER BY person_id LIMIT 1",
                       (phone,)).fetchone()
    return None if row is None else _contact(row)


def hazard_contacts(conn: psycopg.Connection, hazard_ids: Sequence[str] | None = None,
                    known: Sequence[Contact] = ()) -> list[Contact]:
    """Monitors and responsible persons of hazard points, linked: a directory person with the
    same number stands for them (their id, language, roles); others get an id derived from
    the point ('hazard:SYN-LS-001:monitor:1')."""
    by_number = {c.phone: c for c in known if c.phone}
    out: list[Contact] = []
    for h in store.load_hazards(conn, hazard_ids):
        linked = [(f"hazard:{h.hazard_id}:monitor:{i + 1}", m, "monitor")
                  for i, m in enumerate(h.monitors)]
        if h.responsible is not None:
            linked.append((f"hazard:{h.hazard_id}:responsible", h.responsible, "responsible"))
        for rid, person, role in linked:
            try:
                phone = to_e164(person.phone) if person.phone else None
            except PhoneError:
                phone = None  # shown without a number; the listing says so
            if phone in by_number:
                c = by_number[phone]
                out.append(Contact(c.person_id, c.name, c.phone, c.language,
                                   tuple(dict.fromkeys((*c.roles, role))), c.county_code,
                                   c.device_ids, f"hazard {h.hazard_id} (directory)"))
            else:
                out.append(Contact(rid, person.name, phone, "zh", (role,), h.county_code,
                                   (), f"hazard {h.hazard_id}"))
    return out


def phone_of(conn: psycopg.Connection, recipient_id: str) -> str | None:
    """The current full number of a recipient (looked up at send time, never stored with
    the delivery); None when it has none or no longer exists."""
    kind, _, rest = recipient_id.partition(":")
    raw: object = None
    if kind == "person":
        row = conn.execute("SELECT phone FROM people WHERE person_id = %s AND active",
                           (rest,)).fetchone()
        raw = row[0] if row else None
    elif kind == "household":
        row = conn.execute("SELECT phone FROM households WHERE household_id = %s",
                           (rest,)).fetchone()
        raw = row[0] if row else None
    elif kind == "hazard":
        hazard_id, _, role = rest.partition(":")
        for c in hazard_contacts(conn, [hazard_id]):
            if c.person_id == recipient_id:
                return c.phone
        return None
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return to_e164(raw)
    except PhoneError:
        return None


def phones_of(conn: psycopg.Connection, recipient_ids: Sequence[str]) -> dict[str, str]:
    """`phone_of` for many recipients in a few queries (the sender's batch)."""
    by_kind: dict[str, list[str]] = {}
    for rid in set(recipient_ids):
        kind, _, rest = rid.partition(":")
        by_kind.setdefault(kind, []).append(rest)
    raw: dict[str, object] = {}
    if by_kind.get("person"):
        raw.update((f"person:{pid}", phone) for pid, phone in conn.execute(
            "SELECT person_id, phone FROM people WHERE active AND person_id = ANY(%s)",
            (by_kind["person"],)))
    if by_kind.get("household"):
        raw.update((f"household:{hid}", phone) for hid, phone in conn.execute(
            "SELECT household_id, phone FROM households WHERE household_id = ANY(%s)",
            (by_kind["household"],)))
    out: dict[str, str] = {}
    for rid, value in raw.items():
        if isinstance(value, str) and value:
            try:
                out[rid] = to_e164(value)
            except PhoneError:
                continue
    hazards = sorted({rest.partition(":")[0] for rest in by_kind.get("hazard", [])})
    if hazards:
        wanted = {f"hazard:{rest}" for rest in by_kind["hazard"]}
        out.update((c.person_id, c.phone) for c in hazard_contacts(conn, hazards)
                   if c.person_id in wanted and c.phone)
    return out


def everyone(conn: psycopg.Connection) -> list[Contact]:
    """The directory plus the linked hazard-point contacts not already in it."""
    people = directory(conn)
    ids = {p.person_id for p in people}
    linked = [c for c in hazard_contacts(conn, known=people) if c.person_id not in ids]
    return people + linked


# --- duty roster ----------------------------------------------------------------------------

def _time(value: str, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError(f"{what} {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise FieldError(f"{what} {value!r} has no UTC offset (write e.g. +08:00)")
    return parsed


def parse_roster_csv(text: str) -> tuple[list[DutyShift], list[Problem]]:
    """Columns role,county_code,person_id,from,to (ISO 8601 with offsets)."""
    shifts: list[DutyShift] = []
    problems: list[Problem] = []
    for line, row in _rows(text, ("role", "county_code", "person_id", "from", "to")):
        try:
            if row["role"] not in DUTY_ROLES:
                raise FieldError(f"role {row['role']!r} is not one of {', '.join(DUTY_ROLES)}")
            start, end = _time(row["from"], "from"), _time(row["to"], "to")
            if end <= start:
                raise FieldError(f"to {row['to']} is not after from {row['from']}")
            if not row["person_id"]:
                raise FieldError("missing person_id")
            shifts.append(DutyShift(row["role"], _code(row["county_code"], "county_code"),
                                    row["person_id"], start, end))
        except FieldError as exc:
            problems.append(Problem(f"line {line}", str(exc)))
    return shifts, problems


def import_roster(conn: psycopg.Connection, shifts: Sequence[DutyShift]) -> ImportResult:
    result = ImportResult()
    known = {r[0] for r in conn.execute("SELECT person_id FROM people").fetchall()}
    with conn.transaction():
        for n, s in enumerate(shifts):
            if s.person_id not in known:
                result.errors.append(Problem(f"shift {n + 1}", f"person {s.person_id!r} is "
                                             "not in the directory (import people first)"))
                continue
            cur = conn.execute(
                "INSERT INTO duty_roster (role, county_code, person_id, from_at, to_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (role, county_code, person_id, "
                "from_at) DO UPDATE SET to_at = EXCLUDED.to_at RETURNING (xmax = 0)",
                (s.role, s.county_code, s.person_id, s.from_at, s.to_at)).fetchone()
            if cur and cur[0]:
                result.inserted += 1
            else:
                result.updated += 1
    return result


def roster(conn: psycopg.Connection) -> list[DutyShift]:
    rows = conn.execute("SELECT role, county_code, person_id, from_at, to_at FROM duty_roster "
                        "ORDER BY from_at, role, county_code, person_id").fetchall()
    return [DutyShift(*r) for r in rows]


def scope_covers(scope: str, county_code: str) -> bool:
    """A duty scope covers a county: the county itself, its city or province, or a township
    (9 digits) inside it."""
    if len(scope) == 9:
        return scope[:6] == county_code
    return geometry.code_covers(scope, county_code)


def on_duty(conn: psycopg.Connection, county_code: str, at: datetime,
            roles: Sequence[str] = DUTY_ROLES) -> list[tuple[str, Contact]]:
    """(role, person) on duty for `county_code` at `at`, people in the directory only."""
    if at.tzinfo is None:
        raise InvalidInput("duty time needs a UTC offset")
    rows = conn.execute(
        "SELECT d.role, d.county_code, p.person_id, p.name, p.phone, p.language, p.roles, "
        "p.county_code, p.device_ids FROM duty_roster d JOIN people p USING (person_id) "
        "WHERE p.active AND d.role = ANY(%s) AND d.from_at <= %s AND %s < d.to_at "
        "ORDER BY d.role, p.person_id", (list(roles), at, at)).fetchall()
    found = []
    for role, scope, *person in rows:
        if scope_covers(scope, county_code):
            found.append((str(role), _contact(person)))
    return found
