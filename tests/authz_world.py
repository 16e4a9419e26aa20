"""The authorization matrix's world, made by the real parts in one database: the same objects
in each of four places (a county of the users' own, another county of the province, a county
of another province, and no county at all), the principals who ask for them, and the makers
of fresh objects for the routes that change what they act on (an acknowledged alert cannot
be acknowledged again).

Counties: OWN 330110 (every county-scoped principal's), OTHER 331002 (same province: only
the province admin's), FOREIGN 320102 (another province: nobody's), and None (a site alert, a
device on no hazard point: the province's, see api/scope.py)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

from alerts.lifecycle.writes import LevelChange, apply_changes
from alerts.methods.levels import Level
from api import users
from devices import maintenance
from devices.registry import DeviceSpec, add_device
from geowarn import push_subscriptions
from geowarn.readings import write_readings
from notify import deliveries, people
from notify.cap_out import CapEvent, build
from notify.planner import PlannedDelivery

PASSWORD = "correct horse battery"
OWN, OTHER, FOREIGN = "330110", "331002", "320102"
COUNTIES: tuple[str | None, ...] = (OWN, OTHER, FOREIGN, None)
T0 = datetime(2026, 7, 1, 2, tzinfo=UTC)
# Full numbers that must never reach a role without "read_personal".
RESIDENT_PHONE, MONITOR_PHONE, SHELTER_PHONE = "13700001234", "13912345678", "13600009999"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
P256DH = "B" + "A" * 86
AUTH = "tBHItJI5svbpez7KI4CCXg"


def square(x: float) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": [[[x, 30.0], [x + 0.01, 30.0],
                                                [x + 0.01, 30.01], [x, 30.01], [x, 30.0]]]}


@dataclass
class Principal:
    """Who asks: a user by session token or by API key, or nobody (`role` None)."""
    name: str
    role: str | None
    counties: tuple[str, ...] = ()
    auth: str = "token"  # "token", "key", "cookie" or "none"
    username: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


# name: (role, counties, how it authenticates)
PRINCIPALS = {
    "admin": ("admin", ("330000",), "token"),
    "duty_officer": ("duty_officer", (OWN,), "token"),
    "monitor": ("monitor", (OWN,), "token"),
    "viewer": ("viewer", (OWN,), "token"),
    "api_key": ("viewer", (OWN,), "key"),  # a machine client (a CAP consumer's wall display)
    "duty_key": ("duty_officer", (OWN,), "key"),
    "duty_cookie": ("duty_officer", (OWN,), "cookie"),  # the console's session cookie
    "unauthenticated": (None, (), "none"),
}


def tag(county: str | None) -> str:
    return county or "NONE"


@dataclass
class World:
    conn: psycopg.Connection
    base: str = ""
    alerts: dict[str | None, int] = field(default_factory=dict)
    caps: dict[str | None, str] = field(default_factory=dict)
    drill_caps: dict[str | None, str] = field(default_factory=dict)
    reports: dict[str | None, int] = field(default_factory=dict)
    windows: dict[str | None, int] = field(default_factory=dict)
    alert_county: dict[int, str | None] = field(default_factory=dict)
    hazard_county: dict[str, str | None] = field(default_factory=dict)
    warning_county: dict[str, str | None] = field(default_factory=dict)
    principals: dict[str, Principal] = field(default_factory=dict)
    app: Any = None  # the served FastAPI app
    client: Any = None  # an httpx.Client on its server
    _n: itertools.count[int] = field(default_factory=itertools.count)

    def n(self) -> int:
        return next(self._n)

    # -- fixed objects -------------------------------------------------------------------
    def hazard(self, county: str | None) -> str | None:
        return None if county is None else f"HP-{county}"

    def device(self, county: str | None) -> str:
        return f"DEV-{tag(county)}"

    def seed(self) -> None:
        conn = self.conn
        for i, county in enumerate(COUNTIES):
            if county is not None:
                self.add_hazard(f"HP-{county}", county, 120.0 + i)
        conn.execute("INSERT INTO households (household_id, hazard_id, head, members, phone) "
                     f"SELECT 'HH-' || hazard_id, hazard_id, '张三丰', 4, '{RESIDENT_PHONE}' "
                     "FROM hazard_points")
        conn.execute("INSERT INTO shelters (shelter_id, name, lon, lat, capacity, contact_name, "
                     f"contact_phone) VALUES ('SH-1', '村文化礼堂', 120.02, 30.0, 50, '钱七', "
                     f"'{SHELTER_PHONE}')")
        for county in COUNTIES:
            alert = self.fresh_alert(county, f"FIXED-{tag(county)}")
            self.alerts[county] = alert
            self.caps[county] = self._deliver_and_cap(alert, county)
            self.drill_caps[county] = self.drill(county)
            add_device(conn, DeviceSpec(device_id=self.device(county), kind="crack_meter",
                                        hazard_id=self.hazard(county),
                                        reporting_interval_s=600))
            (cid,) = conn.execute("SELECT channel_id FROM channels WHERE device_id = %s",
                                  (self.device(county),)).fetchone() or (0,)
            write_readings(conn, [(cid, datetime.now(UTC) - timedelta(hours=h), 10.0 + h, 0)
                                  for h in range(6)])
            conn.execute("INSERT INTO dead_letters (received_at, topic, device_id, reason, "
                         "detail, payload, payload_size) VALUES (now(), %s, %s, 'bad_json', "
                         "'not JSON', 'x', 1)",
                         (f"gw/v1/{self.device(county)}/telemetry", self.device(county)))
            self.windows[county] = self.fresh_window(county)
            conn.execute("INSERT INTO regional_warnings (warning_id, issuer, level, valid_from, "
                         "valid_to, county_codes, source) VALUES (%s, 'issuer', 3, %s, %s, %s, "
                         "'geojson')", (f"RW-{tag(county)}", T0, T0 + timedelta(days=1),
                                        [county] if county else ["330000"]))
            # The province-wide one (None) concerns every county of the province.
            self.warning_county[f"RW-{tag(county)}"] = county
            if county is not None:
                row = conn.execute(
                    "INSERT INTO field_reports (hazard_id, reporter, kind, severity, "
                    "observed_at, received_at, photo, photo_type, photo_size) VALUES "
                    "(%s, 'seed', 'new_cracks', 'minor', %s, %s, %s, 'image/png', %s) "
                    "RETURNING report_id",
                    (self.hazard(county), T0, T0, PNG, len(PNG))).fetchone()
                assert row is not None
                self.reports[county] = int(row[0])
        for name, (role, counties, auth) in PRINCIPALS.items():
            self.principals[name] = self.make_principal(name, role, counties, auth)

    def add_hazard(self, hazard_id: str, county: str, x: float = 120.0) -> None:
        self.conn.execute(
            "INSERT INTO hazard_points (hazard_id, name, hazard_type, scale, county_code, "
            "geometry, min_lon, min_lat, max_lon, max_lat, households, people, monitors, "
            "responsible_name, responsible_phone) VALUES (%s, %s, 'landslide', 'medium', %s, "
            "%s, %s, 30.0, %s, 30.01, 1, 4, %s, '王建国', '13800001111')",
            (hazard_id, f"{hazard_id} 滑坡", county, json.dumps(square(x)), x, x + 0.01,
             json.dumps([{"name": "李四", "phone": MONITOR_PHONE}])))
        self.hazard_county[hazard_id] = county

    def _deliver_and_cap(self, alert: int, county: str | None) -> str:
        (event_id,) = self.conn.execute("SELECT min(event_id) FROM alert_events "
                                        "WHERE alert_id = %s", (alert,)).fetchone() or (0,)
        self._deliver(alert, event_id, county)
        return self._cap(alert, event_id, county)

    def drill(self, county: str | None) -> str:
        """A drill's alert in `county` (of an ended exercise, so that no other alert becomes
        one) and its CAP message; its identifier."""
        self.conn.execute("INSERT INTO exercises (name, ended_at) VALUES ('matrix-drill', "
                          "now()) ON CONFLICT DO NOTHING")
        alert = self.fresh_alert(county, f"DRILL{self.n()}-{tag(county)}")
        self.conn.execute("UPDATE alerts SET exercise = 'matrix-drill' WHERE alert_id = %s",
                          (alert,))
        (event_id,) = self.conn.execute("SELECT min(event_id) FROM alert_events "
                                        "WHERE alert_id = %s", (alert,)).fetchone() or (0,)
        return self._cap(alert, event_id, county)

    def _deliver(self, alert: int, event_id: int, county: str | None) -> None:
        deliveries.insert_planned(self.conn, event_id, alert, [PlannedDelivery(
            f"household:HH-{tag(county)}", "张三丰", "+86" + RESIDENT_PHONE, "zh",
            "resident_evacuate", "sms", "warning",
            f"【紧急撤离】安置点村文化礼堂（联系电话{SHELTER_PHONE}）", "SH-1")],
            valid_until=T0 + timedelta(hours=1), now=T0)

    def _cap(self, alert: int, event_id: int, county: str | None) -> str:
        identifier = f"geowarn-{alert}-{event_id}"
        xml = build(CapEvent(identifier, "geowarn@localhost", T0, "Alert", 4, "deformation",
                             "滑坡红色预警", "滑坡", None, county or "330000",
                             T0 + timedelta(hours=6)))
        self.conn.execute("INSERT INTO cap_feed (identifier, event_id, alert_id, msg_type, "
                          "sent, xml) VALUES (%s, %s, %s, 'Alert', %s, %s)",
                          (identifier, event_id, alert, T0, xml))
        return identifier

    # -- fresh objects, for routes that change them --------------------------------------
    def fresh_alert(self, county: str | None, name: str | None = None) -> int:
        """A new open red alert in `county` (on a new hazard point; a site alert for None)."""
        name = name or f"F{self.n()}-{tag(county)}"
        target_type: Literal["hazard", "site"]
        if county is None:
            target_type, target_id = "site", f"SITE-{name}"
        else:
            target_type, target_id = "hazard", f"HP-{county}"
            if not name.startswith("FIXED"):
                target_id = f"HP-{name}"
                self.add_hazard(target_id, county)
        apply_changes(self.conn, [LevelChange(target_type, target_id, "deformation",
                                              Level.RED, T0)], engine="test")
        row = self.conn.execute("SELECT alert_id FROM alerts WHERE target_id = %s",
                                (target_id,)).fetchone()
        assert row is not None
        self.alert_county[int(row[0])] = county
        return int(row[0])

    def fresh_window(self, county: str | None) -> int:
        start = datetime.now(UTC) + timedelta(days=1)
        return maintenance.add_window(self.conn, self.device(county), start,
                                      start + timedelta(hours=2), "antenna re-mount",
                                      actor="seed").window_id

    def fresh_subscription(self, principal: Principal) -> str:
        endpoint = f"https://push.example.net/send/fresh-{self.n()}"
        # Nobody's request names someone's subscription: it must still be refused (401).
        owner = principal.username or self.principals["admin"].username
        push_subscriptions.subscribe(self.conn, f"person-{owner}", endpoint, P256DH, AUTH)
        return endpoint

    def make_principal(self, name: str, role: str | None, counties: tuple[str, ...],
                       auth: str) -> Principal:
        """A new user with its own session token or API key (none for 'none')."""
        if role is None:
            return Principal(name, None, auth="none")
        username = f"{name}.{self.n()}"
        people.import_people(self.conn, [people.Contact(
            f"person-{username}", username, "+8613500000001", roles=("county_officer",),
            county_code=counties[0])])
        # A monitor is assigned to the hazard point of every county: what decides is scope.
        hazards = [h for h in (self.hazard(c) for c in COUNTIES) if h] \
            if role == "monitor" else []
        users.add_user(self.conn, username, PASSWORD, role, list(counties),
                       person_id=f"person-{username}", hazard_ids=hazards)
        if auth == "key":
            headers = {"X-API-Key": users.create_api_key(self.conn, username, "matrix")}
        else:
            token, _, _ = users.login(self.conn, username, PASSWORD, "matrix",
                                      session_hours=1)
            # The console's event stream authenticates by the cookie the login sets.
            headers = {"Cookie": f"geowarn_session={token}"} if auth == "cookie" else \
                {"Authorization": f"Bearer {token}"}
        return Principal(name, role, counties, auth, username, headers)

    def fresh_like(self, p: Principal) -> Principal:
        """Another user like `p` (for routes that end their caller's sessions)."""
        if p.role is None:
            return p
        return self.make_principal(p.name, p.role, p.counties, p.auth)
