"""`geowarn demo`: the whole pipeline on one machine, told as a story.

The demo sets up example GIS data and simulated devices, runs the real ingest gateway in this
process against a real broker and PostgreSQL, publishes a stream with faults in it, waits
until every message is committed, and then reads back what an operator would look at. It is
idempotent: GIS records are upserted, devices registered once, and every run publishes a
fresh stream ending now (new timestamps; native sequence numbers start from the clock so a
re-run within the gateway's duplicate-seq window is not mistaken for a firmware fault).

Where it runs (database, broker) is resolved by demo.cli; this module takes them as
arguments so the tests can point it at their own database and broker.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from demo.explore import explore_commands, explore_lines
from demo.report import (
    dead_letters_since,
    report_health,
    report_latest,
    report_rain,
    run_engine,
)
from devices.catalogue import load_catalogue
from devices.registry import DeviceSpec, add_device
from geowarn.errors import GeoWarnError
from geowarn.settings import get_settings
from gis import csv_io, geojson_io, store
from ingest.gateway import Gateway, GatewayConfig
from simulators.publisher import Publisher
from simulators.scenarios import typhoon_rain
from simulators.streams import (
    Faults,
    SimDevice,
    SimMessage,
    device_ids,
    encode_native,
    generate,
    make_devices,
    topic_for,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "gis" / "examples"
# (file, kind) in dependency order: households refer to hazard points.
GIS_FILES = (("hazards.geojson", "hazards"), ("hazards.csv", "hazards"),
             ("shelters.geojson", "shelters"), ("households.csv", "households"))
GEOHAZARD_KINDS = ("rain_gauge", "crack_meter", "gnss", "tilt_meter")
OTHER_KINDS = ("water_level", "water_quality", "air_quality")
# Water and environment stations sit on the river, well away from the slopes, so the GIS
# matching leaves them without a hazard point (they are sites, not hazard monitors).
RIVER_POINT = (120.03, 28.63)
SPARE_DEVICE = "DEMO-CRACKMETER-SPARE"  # registered, never reports: shows "silent" health
# A rain gauge under a scripted typhoon rainband on the landslide with the most people, so
# the warning engine has something to warn about.
STORM_DEVICE = "DEMO-RAINGAUGE-STORM"
STORM_HAZARD = "SYN-LS-001"
STORM_PEAK_MM_H, STORM_WIDTH_H, STORM_PEAK_AGO_H = 45.0, 1.0, 2.0
UNREGISTERED_DEVICE = "DEMO-UNREGISTERED-00000"
GATEWAY_NAME = "geowarn-demo"  # MQTT client id, and `gateway` in dead_letters/ingest_stats
log = logging.getLogger(__name__)


class DemoError(GeoWarnError):
    """The demo could not complete (e.g. the gateway did not commit the stream in time)."""


@dataclass(frozen=True)
class BrokerTarget:
    host: str
    port: int
    mqtt5: bool  # False for the in-process amqtt broker: MQTT 3.1.1, no "$" topics
    description: str


@dataclass(frozen=True)
class DemoOptions:
    devices_per_kind: int = 2
    hours: float = 12.0  # span of simulated history, ending now
    faults: Faults = field(default_factory=lambda: Faults(
        duplicate=0.03, out_of_order=0.01, gap=0.005, garbage=0.01))
    seed: int = 7
    timeout_s: float = 120.0


@dataclass(frozen=True)
class DemoResult:
    published: int
    faults: dict[str, int]
    readings_expected: int
    readings_stored: int
    duplicates_absorbed: int
    dead_letters: dict[str, int]
    health: dict[str, int]
    alerts_checked: bool
    engine_error: str | None = None  # the engine is installed but failed


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out, flush=True)


# --- setup -------------------------------------------------------------------------------------
def import_examples(conn: psycopg.Connection, out: TextIO) -> None:
    for name, kind in GIS_FILES:
        path = EXAMPLES / name
        text = path.read_text(encoding="utf-8-sig")
        parsed = (csv_io.read(text, kind) if path.suffix == ".csv"
                  else geojson_io.read(text, kind))
        report = store.import_records(conn, kind, parsed)
        if report.errors:
            raise DemoError(f"{path}: example data rejected: {report.errors[0]}")
        _say(out, f"  {name:<17} {kind:<10} {report.inserted} new, {report.updated} updated, "
                  f"{report.unchanged} unchanged")


def simulated_devices(options: DemoOptions) -> list[SimDevice]:
    """A few devices of each kind; in each kind every other one is a national-profile logger
    (kinds without a national code are all native)."""
    catalogue = load_catalogue()
    devices: list[SimDevice] = []
    for i, kind in enumerate(GEOHAZARD_KINDS + OTHER_KINDS):
        pairs = device_ids([kind], options.devices_per_kind, prefix="DEMO")
        devices += make_devices(pairs, "mixed", options.seed + i, catalogue)
    devices += make_devices([(STORM_DEVICE, "rain_gauge")], "native", options.seed, catalogue)
    return devices


def register_devices(conn: psycopg.Connection, devices: Sequence[SimDevice], out: TextIO
                     ) -> None:
    hazards = [h for h in store.load_hazards(conn) if h.status != "cancelled"]
    if not hazards:
        raise DemoError("no hazard points to place the geohazard devices on")
    existing = {r[0] for r in conn.execute("SELECT device_id FROM devices")}
    specs = []
    geo = [d for d in devices if d.kind.kind in GEOHAZARD_KINDS]
    storm_hazard = next((h for h in hazards if h.hazard_id == STORM_HAZARD), hazards[0])
    for i, d in enumerate(geo):
        # Inside a slope: the GIS matching below assigns the device to that hazard point.
        hazard = storm_hazard if d.device_id == STORM_DEVICE else hazards[i % len(hazards)]
        where = hazard.geometry.representative_point()
        specs.append(_spec(d, where.x, where.y))
    for j, d in enumerate(d for d in devices if d.kind.kind not in GEOHAZARD_KINDS):
        specs.append(_spec(d, RIVER_POINT[0] + 0.002 * j, RIVER_POINT[1]))
    spare = hazards[0].geometry.representative_point()
    specs.append(DeviceSpec(device_id=SPARE_DEVICE, kind="crack_meter", name="demo spare",
                            lon=spare.x, lat=spare.y))
    added = 0
    for spec in specs:
        if spec.device_id not in existing:
            add_device(conn, spec, actor="demo")
            added += 1
    profiles = Counter(s.profile for s in specs)
    _say(out, f"  {len(specs)} devices ({profiles['native']} native, {profiles['national']} "
              f"national loggers): {added} registered now, {len(specs) - added} already there")
    matches = store.match_devices(conn, 200.0)
    assigned = store.apply_device_matches(conn, matches)
    placed = sum(1 for s in specs if matches.get(s.device_id) is not None)
    _say(out, f"  GIS matching: {placed} devices lie on a hazard point "
              f"({assigned} newly assigned); river stations stay unassigned")


def _spec(d: SimDevice, lon: float, lat: float) -> DeviceSpec:
    sensors = (f"{d.kind.national_code}_1",) if d.profile == "national" else ()
    return DeviceSpec(device_id=d.device_id, kind=d.kind.kind, profile=d.profile,
                      name=f"demo {d.kind.kind.replace('_', ' ')}", lon=round(lon, 6),
                      lat=round(lat, 6), sensors=sensors)


# --- the stream --------------------------------------------------------------------------------
def build_stream(devices: Sequence[SimDevice], options: DemoOptions, now: datetime
                 ) -> list[SimMessage]:
    """Each kind's devices at their own reporting interval over the last `hours`, plus a
    few messages from a device nobody registered.

    Timestamps lie on a grid from a whole hour (every reporting interval divides an hour), so
    a re-run lands on the readings an earlier run stored and the store keeps one per time:
    re-running adds the new samples instead of a second, shifted copy of the history."""
    start = (now - timedelta(hours=options.hours)).replace(minute=0, second=0, microsecond=0)
    span = now - start
    # Sequence numbers from the clock in milliseconds: a run sends under 1,000 messages per
    # device and takes over a second, so a re-run never reuses a recent one.
    first_seq = int(now.timestamp() * 1000) % 2**31
    by_kind: dict[str, list[SimDevice]] = {}
    messages: list[SimMessage] = []
    for d in devices:
        d.seq = first_seq
        if d.device_id == STORM_DEVICE:
            messages += storm_messages(d, start, now, options.seed)
        else:
            by_kind.setdefault(d.kind.kind, []).append(d)
    for i, group in enumerate(by_kind.values()):
        interval = group[0].kind.reporting_interval_s
        count = int(span.total_seconds() // interval) + 1  # the last sample is <= now
        # One message per sample: all of a sample's channels travel together.
        messages += generate(group, start=start, messages_per_device=count,
                             readings_per_message=len(group[0].kind.channels),
                             faults=options.faults, seed=options.seed + i)
    stranger = make_devices([(UNREGISTERED_DEVICE, "crack_meter")], "native", options.seed)
    for m in generate(stranger, start=start, messages_per_device=3):
        messages.append(SimMessage(m.topic, m.payload, (), fault="unregistered"))
    return messages


def storm_messages(device: SimDevice, start: datetime, now: datetime, seed: int
                   ) -> list[SimMessage]:
    """A typhoon rainband over the storm gauge, peaking STORM_PEAK_AGO_H hours before now."""
    step = device.kind.reporting_interval_s
    n = int((now - start).total_seconds() // step) + 1
    peak = max(0, n - 1 - int(STORM_PEAK_AGO_H * 3600 // step))
    values = typhoon_rain(n, step, peak_index=peak, peak_mm_h=STORM_PEAK_MM_H,
                          width_h=STORM_WIDTH_H, seed=seed)
    out = []
    for i in range(n):
        ts = start + timedelta(seconds=step * i)
        items = [(ts, name, float(values[name][i])) for name in ("rain", "rain_total")]
        out.append(SimMessage(topic_for(device), encode_native(device, items),
                              tuple((device.device_id, ch, t, v) for t, ch, v in items)))
    return out


def publish(target: BrokerTarget, messages: Sequence[SimMessage]) -> int:
    settings = get_settings()
    publisher = Publisher(target.host, target.port, client_id="",
                          username=settings.mqtt_username,
                          password=settings.mqtt_password.get_secret_value()
                          if settings.mqtt_password else None)
    try:
        sent = publisher.publish_all((m.topic, m.payload) for m in messages
                                     if m.fault != "gap")
        if not publisher.wait_acked(60):
            raise DemoError("the broker did not acknowledge every published message in 60 s")
    finally:
        publisher.client.disconnect()
        publisher.client.loop_stop()
    return sent


def start_gateway(target: BrokerTarget, db_url: str) -> Gateway:
    # group=None: one gateway, no shared subscription (amqtt has none; nothing to share).
    config = GatewayConfig.from_settings(
        get_settings(), name=GATEWAY_NAME, group=None, host=target.host, port=target.port,
        mqtt5=target.mqtt5, stats_interval_s=0.0)  # counters saved after every batch
    gateway = Gateway(config, db_url=db_url)
    gateway.start()
    if not gateway.mqtt.subscribed.wait(15):
        stop_gateway(gateway, target)
        raise DemoError(f"the gateway could not subscribe at {target.description}")
    return gateway


def stop_gateway(gateway: Gateway, target: BrokerTarget) -> None:
    """Stop the gateway and end its persistent session: on a shared broker the session would
    otherwise go on collecting every device message for a week after the demo."""
    gateway.stop()
    if target.mqtt5:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=GATEWAY_NAME,
                             protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=GATEWAY_NAME,
                             protocol=mqtt.MQTTv311, clean_session=True)
    settings = get_settings()
    if settings.mqtt_username:
        client.username_pw_set(settings.mqtt_username, settings.mqtt_password.get_secret_value()
                               if settings.mqtt_password else None)
    try:
        if target.mqtt5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            client.connect(target.host, target.port, clean_start=True, properties=props)
        else:
            client.connect(target.host, target.port)
        client.loop(timeout=2.0)  # read CONNACK: the broker has dropped the old session
        client.disconnect()
    except OSError as exc:
        log.warning("could not end the demo gateway's session: %s", exc)


def _stored_before(db_url: str, devices: Sequence[SimDevice]) -> int:
    """Readings of the demo's devices already stored (by an earlier run) before this one."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM readings JOIN channels USING (channel_id) "
                           "WHERE device_id = ANY(%s)", ([d.device_id for d in devices],)
                           ).fetchone()
    return int(row[0]) if row else 0


def _duplicate_sources(faults: Counter[str], earlier: int) -> str:
    """Where this run's duplicates came from: only what happened (a first run has no earlier
    readings to collide with)."""
    sources = []
    if faults.get("duplicate"):
        sources.append(f"re-sent by the {faults['duplicate']} duplicated messages")
    if earlier:
        sources.append(f"stored by an earlier demo run, which left {earlier} readings")
    return ", or ".join(sources) or "nothing was sent twice"


# --- the story ---------------------------------------------------------------------------------
def run_demo(db_url: str, target: BrokerTarget, out: TextIO,
             options: DemoOptions = DemoOptions()) -> DemoResult:
    """Steps 2-6 of the demo (the caller resolved and migrated the database)."""
    run_started = datetime.now(UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        _say(out, "\n[2/6] Example GIS data and simulated devices")
        import_examples(conn, out)
        devices = simulated_devices(options)
        register_devices(conn, devices, out)
    streaming = [d for d in devices if target.mqtt5 or d.profile == "native"]
    if len(streaming) < len(devices):
        _say(out, f"  {len(devices) - len(streaming)} national loggers stay silent: the "
                  "in-process broker refuses the national profile's $ topics")

    _say(out, f"\n[3/6] Ingest gateway in this process, stream through {target.description}")
    earlier = _stored_before(db_url, devices)
    gateway = start_gateway(target, db_url)
    try:
        now = datetime.now(UTC)
        messages = build_stream(streaming, options, now)
        faults = Counter(m.fault for m in messages if m.fault)
        expected = sum(len(m.expected) for m in messages if m.fault not in ("gap", "duplicate"))
        started = time.perf_counter()
        sent = publish(target, messages)
        _say(out, f"  published {sent} messages from {len(streaming)} devices covering the last "
                  f"{options.hours:g} h in {time.perf_counter() - started:.1f} s")
        _say(out, f"  {STORM_DEVICE} on {STORM_HAZARD} is under a typhoon rainband that "
                  f"peaked at about {STORM_PEAK_MM_H:g} mm/h {STORM_PEAK_AGO_H:g} h ago")
        _say(out, "  injected faults: " + ", ".join(
            f"{n} {name.replace('_', ' ')}" for name, n in sorted(faults.items()))
            + " (gaps are never sent)")
        if not gateway.stats.wait_until("batches_committed_messages", sent, options.timeout_s):
            raise DemoError(
                f"the gateway committed {gateway.stats.count('batches_committed_messages')} of "
                f"{sent} messages within {options.timeout_s:.0f} s")
        _say(out, f"  all {sent} messages committed in {time.perf_counter() - started:.1f} s")
        stats = gateway.stats
        stored = stats.count("readings_stored")
        absorbed = stats.count("readings_duplicate")
    finally:
        stop_gateway(gateway, target)

    with psycopg.connect(db_url, autocommit=True) as conn:
        _say(out, "\n[4/6] What was stored")
        _say(out, f"  readings stored: {stored} new, of {expected} distinct readings in the "
                  "stream")
        _say(out, f"  duplicates absorbed: {absorbed} readings were already stored and kept "
                  f"once ({_duplicate_sources(faults, earlier)})")
        letters = dead_letters_since(conn, GATEWAY_NAME, run_started)
        _say(out, f"  dead letters: {sum(letters.values())} rejected messages or parts, by "
                  "reason:")
        for reason, n in letters.items():
            _say(out, f"    {reason:<24} {n}")
        health = report_health(conn, [d.device_id for d in devices] + [SPARE_DEVICE],
                               datetime.now(UTC), out)
        _say(out, "  latest values, one device per kind:")
        report_latest(conn, devices, out)
        _say(out, "  hourly rain (mm):")
        report_rain(conn, devices, datetime.now(UTC), out)

    _say(out, "\n[5/6] Warning engine")
    engine_error = None
    try:
        engine_ran = run_engine(db_url, out)
    except (psycopg.Error, GeoWarnError) as exc:
        # Everything above is stored and stays valid; say what failed and finish the tour.
        engine_ran, engine_error = False, f"{type(exc).__name__}: {exc}"
        _say(out, f"  the warning engine failed: {engine_error}")

    first = {d.kind.kind: d.device_id for d in reversed(devices)}
    _say(out, "\n[6/6] Explore further")
    commands = explore_commands(STORM_DEVICE, first["crack_meter"], first["gnss"], STORM_HAZARD)
    for line in explore_lines(commands, database_url_set=bool(get_settings().database_url)):
        _say(out, line)
    return DemoResult(published=sent, faults=dict(faults), readings_expected=expected,
                      readings_stored=stored, duplicates_absorbed=absorbed,
                      dead_letters=letters, health=health, alerts_checked=engine_ran,
                      engine_error=engine_error)
