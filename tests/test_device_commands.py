"""Device commands through a real Mosquitto: a fake device answers one command, the reply
closes it; a command nobody answers times out."""

from __future__ import annotations

import json
import queue
import threading
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest

from devices import commands, registry
from devices.messages import CommandReply
from devices.registry import DeviceSpec
from geowarn.errors import InvalidInput, NotFound

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _client(port: int, client_id: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    connected = threading.Event()
    c.on_connect = lambda client, userdata, flags, rc, props: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(10)
    return c


def _subscribe(c: mqtt.Client, topic: str) -> None:
    done = threading.Event()
    c.on_subscribe = lambda client, userdata, mid, rcs, props: done.set()
    c.subscribe(topic, qos=1)
    assert done.wait(10)


@pytest.mark.parametrize(("name", "params", "message"), [
    ("selfdestruct", {}, "unknown command 'selfdestruct'"),
    ("set_interval", {"sample_s": 60}, "upload_s"),
    ("set_interval", {"sample_s": 600, "upload_s": 60}, "shorter than sample_s"),
    ("high_frequency", {"on": "yes"}, "'on' must be true or false"),
    ("reboot", {"now": True}, "unknown parameter"),
    ("sync_time", {"server_time": "2026-01-01T00:00:00Z"}, "takes no parameters"),
])
def test_bad_commands_are_refused(conn, name, params, message):
    registry.add_device(conn, DeviceSpec("D1", kind="crack_meter"))
    with pytest.raises(InvalidInput, match=message):
        commands.queue_command(conn, "D1", name, params, "tester")
    with pytest.raises(NotFound):
        commands.queue_command(conn, "nope", "reboot", {}, "tester")
    assert conn.execute("SELECT count(*) FROM device_commands").fetchone() == (0,)


def test_reply_closes_command_and_silence_times_out(conn, broker):
    registry.add_device(conn, DeviceSpec("DEV-7", kind="crack_meter"))
    answered = commands.queue_command(conn, "DEV-7", "reboot", {}, "op", 60, now=NOW)
    ignored = commands.queue_command(conn, "DEV-7", "set_interval",
                                     {"sample_s": 60, "upload_s": 300}, "op", 60,
                                     now=NOW + timedelta(seconds=1))

    # The fake device answers reboot only.
    device = _client(broker.port, "DEV-7")
    received: queue.Queue[tuple[str, dict]] = queue.Queue()

    def on_device_message(client, userdata, msg):
        doc = json.loads(msg.payload)
        received.put((msg.topic, doc))
        if doc["name"] == "reboot":
            client.publish(f"gw/v1/DEV-7/reply/{doc['id']}",
                           json.dumps({"id": doc["id"], "result": "ok"}), qos=1)

    device.on_message = on_device_message
    _subscribe(device, "gw/v1/DEV-7/cmd/+")

    gateway = _client(broker.port, "gw-test")
    replies: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    gateway.on_message = lambda client, userdata, msg: replies.put(msg)
    _subscribe(gateway, "gw/v1/+/reply/+")

    def publish(topic: str, payload: bytes, qos: int) -> None:
        info = gateway.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(mqtt.error_string(info.rc))

    sent = commands.dispatch_pending(conn, publish, now=NOW + timedelta(seconds=2))
    assert sent == [answered, ignored]
    assert commands.dispatch_pending(conn, publish, now=NOW + timedelta(seconds=3)) == []
    topics = sorted(received.get(timeout=10)[0] for _ in range(2))
    assert topics == sorted([f"gw/v1/DEV-7/cmd/{answered}", f"gw/v1/DEV-7/cmd/{ignored}"])

    msg = replies.get(timeout=10)
    doc = json.loads(msg.payload)
    outcome = commands.record_reply(conn, CommandReply(doc["id"], doc["result"] == "ok",
                                                       device_id=msg.topic.split("/")[2]))
    assert outcome == "succeeded"
    assert commands.get_command(conn, answered).state == "succeeded"
    assert commands.get_command(conn, ignored).state == "sent"

    assert commands.expire(conn, NOW + timedelta(seconds=59)) == []
    assert commands.expire(conn, NOW + timedelta(seconds=61)) == [ignored]
    assert commands.get_command(conn, ignored).state == "timed_out"
    assert commands.record_reply(conn, CommandReply(ignored, True, device_id="DEV-7")) == "late"
    assert commands.get_command(conn, ignored).state == "timed_out"
    assert commands.record_reply(conn, CommandReply("f" * 32, True)) == "unknown"
    assert [c.state for c in commands.list_commands(conn, "DEV-7")] == ["timed_out",
                                                                        "succeeded"]
    for c in (device, gateway):
        c.loop_stop()
        c.disconnect()


def test_failed_publish_keeps_command_queued_and_retire_cancels(conn):
    registry.add_device(conn, DeviceSpec("D2", kind="rain_gauge"))
    cid = commands.queue_command(conn, "D2", "sync_time", {}, "op", now=NOW)

    def broken(topic: str, payload: bytes, qos: int) -> None:
        raise ConnectionError("broker gone")

    with pytest.raises(ConnectionError):
        commands.dispatch_pending(conn, broken, now=NOW)
    assert commands.get_command(conn, cid).state == "queued"

    seen: list[dict] = []
    commands.dispatch_pending(conn, lambda t, p, q: seen.append(json.loads(p)), now=NOW)
    assert seen[0]["params"]["server_time"].startswith("2026-06-01T12:00:00")
    assert commands.record_reply(conn, CommandReply(cid, True, device_id="OTHER")) == \
        "wrong_device"
    assert commands.record_reply(conn, CommandReply(cid, False, detail="no rtc")) == "failed"
    other = commands.queue_command(conn, "D2", "reboot", {}, "op", now=NOW)
    registry.retire_device(conn, "D2")
    assert commands.get_command(conn, other).state == "cancelled"
    with pytest.raises(InvalidInput, match="retired"):
        commands.queue_command(conn, "D2", "reboot", {}, "op")


def test_national_logger_command_round_trip(conn):
    from devices.national_commands import parse_national_reply

    registry.add_device(conn, DeviceSpec("NAT-9", profile="national", sensors=("L3_YL_1",)))
    cid = commands.queue_command(conn, "NAT-9", "set_interval",
                                 {"sample_s": 300, "upload_s": 900, "sensor_id": "L3_YL_1"},
                                 "op", now=NOW)
    out: list[tuple[str, bytes, int]] = []
    assert commands.dispatch_pending(conn, lambda t, p, q: out.append((t, p, q)), now=NOW) \
        == [cid]
    topic, payload, qos = out[0]
    assert (topic, qos) == (f"$creq/NAT-9/{cid}", 1)
    assert payload.decode().startswith("$cmd=setsensortime&sensor_id=L3_YL_1&sample_intv=300")
    reply = parse_national_reply("$dr/NAT-9", f"$cmd=setsensortime&result=succ&msgid={cid}"
                                 .encode())
    assert commands.record_reply(conn, reply) == "succeeded"
