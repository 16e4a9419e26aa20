"""`geowarn demo`: the story told end to end through the real parts.

The sample county is imported (demo/county.py), the story's eight days of device data are
published through a real broker into the real ingest gateway running in this process, and
the warning engine and the notifier then live through the stored data in data time
(demo/story.py); what they did is read back and printed (demo/narrate.py). The caller
(demo/cli.py) has resolved the database and broker and started the database afresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alerts.lifecycle.writes import AlertEvent
from demo import county, narrate, story
from geowarn.errors import GeoWarnError
from geowarn.settings import get_settings
from ingest.gateway import Gateway, GatewayConfig
from notify.channels.file import FileChannel
from notify.notifier import Notifier
from simulators.publisher import Publisher
from simulators.streams import SimMessage

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
    seed: int = 7
    timeout_s: float = 120.0


@dataclass
class DemoResult:
    published: int = 0
    readings_stored: int = 0
    events: list[AlertEvent] = field(default_factory=list)
    messages: list[narrate.Sent] = field(default_factory=list)
    open_alerts: int = 0
    notifications_file: Path | None = None


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out, flush=True)


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


def shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_story(db_url: str, target: BrokerTarget, out: TextIO, notifications: Path,
              options: DemoOptions = DemoOptions()) -> DemoResult:  # noqa: B008
    """Steps 2-5 of the demo (the caller started the database afresh and migrated it)."""
    result = DemoResult(notifications_file=notifications)
    clock = story.StoryClock.before(datetime.now(UTC))
    with psycopg.connect(db_url, autocommit=True) as conn:
        _say(out, "\n[2/6] The sample county")
        county.import_county(conn, out, roster_from=clock.start - county.ROSTER_MARGIN,
                             roster_to=clock.end + county.ROSTER_AFTER)
        county.register_devices(conn, county.DEVICES, out)
        county.set_rules(conn, out)
        names = narrate.hazard_names(conn)

    _say(out, f"\n[3/6] Eight days of device data, {narrate.cst(clock.start)} to "
              f"{narrate.cst(clock.end)} CST (UTC+8), through {target.description}")
    msgs = story.story_messages(clock, options.seed)
    started = time.perf_counter()
    gateway = start_gateway(target, db_url)
    try:
        sent = publish(target, msgs)
        if not gateway.stats.wait_until("batches_committed_messages", sent, options.timeout_s):
            raise DemoError(
                f"the gateway committed {gateway.stats.count('batches_committed_messages')} of "
                f"{sent} messages within {options.timeout_s:.0f} s")
        result.published, result.readings_stored = sent, gateway.stats.count("readings_stored")
    finally:
        stop_gateway(gateway, target)
    _say(out, f"  {sent} messages published and {result.readings_stored} readings stored by "
              f"the ingest gateway in {time.perf_counter() - started:.1f} s:")
    _say(out, "    DEMO-CM-01 on 岭头村滑坡: steady creep, then accelerating (tertiary creep) "
              "from day 3")
    _say(out, f"    DEMO-RG-01 in 后坑泥石流沟: a typhoon rainband, heaviest around "
              f"{narrate.cst(clock.end - story.TYPHOON_START_BEFORE_END + story.TYPHOON_PEAK)}")
    _say(out, "    DEMO-CM-03, DEMO-RG-04: ordinary readings")

    _say(out, "\n[4/6] The warning engine and the notifier live through it in data time "
              f"({story.STEP.total_seconds() / 3600:g} h of data a step; every sample judged "
              "at its own time)")
    notifications.parent.mkdir(parents=True, exist_ok=True)
    notifications.unlink(missing_ok=True)
    channel = FileChannel(notifications)
    notifier_clock = story.MovableClock(clock.start)
    notifier = Notifier(db_url, {"file": channel, "sms": channel, "voice": channel},
                        name="demo-notifier", clock=notifier_clock,
                        hotline=get_settings().notify_hotline)
    started = time.perf_counter()
    try:
        timeline = narrate.Timeline(names, out)
        replayed = story.replay(db_url, clock, notifier, notifier_clock, on_step=timeline.add,
                                on_ack=timeline.acknowledged)
        timeline.close()
    finally:
        notifier.close()
    result.events = replayed.events
    _say(out, f"  {replayed.engine_steps} engine steps and {replayed.notifier_moments} notifier "
              f"rounds in {time.perf_counter() - started:.1f} s")

    with psycopg.connect(db_url, autocommit=True) as conn:
        _say(out, "\n[5/6] The messages that went out")
        result.messages = narrate.sent_messages(conn, notifications)
        narrate.report_messages(result.messages, notifications, out,
                                shown=shown_path(notifications))
        _say(out, "\n  At the end of the story:")
        result.open_alerts = len(narrate.report_open_alerts(conn, names, out))
    return result
